"""Deterministic dedupe and merge (SPEC section 2.4).

A record's version is (landed_at, source file, line). Every function here is a pure
function of its input rows, so the tables do not depend on the order runs happen in.
Keys are one column or several (crm_leads: email + account).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

VERSION = ["_landed_at", "_source_file", "_source_line"]

# Key hashes and buckets: every staged and committed record carries `_key_hash`, a
# 63-bit hash of its key, and `_bucket` = `_key_hash` mod BUCKETS. Every version of
# a key shares both: a key's versions are found by scanning one integer column, an
# entity table is partitioned by bucket (a merge rewrites the buckets it touches),
# and a large merge works a range of buckets at a time (bounded memory).
BUCKETS = 64
BUCKET_SEED = 0x1D


ROWS_PER_PASS = 300_000


def bucket_passes(rows: int) -> list[range]:
    """Contiguous ranges of buckets, each merged in one pass: about ROWS_PER_PASS
    rows a pass (bounded memory), and one pass for small inputs (few queries)."""
    passes = min(BUCKETS, max(1, -(-rows // ROWS_PER_PASS)))
    bounds = [BUCKETS * i // passes for i in range(passes + 1)]
    return [range(lo, hi) for lo, hi in zip(bounds, bounds[1:])]


def key_hash(key: str | Sequence[str]) -> pl.Expr:
    """A key's hash: polars' string hash, which is stable within one polars release
    (pinned in pyproject.toml; test_merge.test_key_hash_is_stable fails if an
    upgrade changes it), halved to fit a signed 64-bit column (Delta has no
    unsigned integers)."""
    keys = _keys(key)
    text = pl.col(keys[0]) if len(keys) == 1 else pl.concat_str([pl.col(k).fill_null("") for k in keys], separator="\x1f")
    return (text.hash(seed=BUCKET_SEED) // 2).cast(pl.Int64).alias("_key_hash")


def bucket_of(hash_: pl.Expr) -> pl.Expr:
    return (hash_ % BUCKETS).cast(pl.Int16).alias("_bucket")


def bucket(key: str | Sequence[str]) -> pl.Expr:
    """The bucket (0..BUCKETS-1) of a key."""
    return bucket_of(key_hash(key))


def key_columns(key: str | Sequence[str]) -> dict[str, pl.Expr]:
    """`_key_hash` and `_bucket` of a key, as columns to add."""
    return {"_key_hash": key_hash(key), "_bucket": bucket(key)}


def _keys(key: str | Sequence[str]) -> list[str]:
    return [key] if isinstance(key, str) else list(key)


def dedupe_within_file(records: pl.FrameType, key: str | Sequence[str]) -> pl.FrameType:
    """Events: within one file the first occurrence of an event_id is kept
    (lines are unique within a file, so exactly one row per event_id survives)."""
    return records.filter(pl.col("_source_line") == pl.col("_source_line").min().over(_keys(key)))


def current_events(batches: pl.LazyFrame, key: str | Sequence[str]) -> pl.LazyFrame:
    """One row per event_id: the most recently landed file's copy wins."""
    keys = _keys(key)
    k = pl.struct(keys) if len(keys) > 1 else pl.col(keys[0])
    repeated = k.is_duplicated()
    # Only keys seen more than once need the version sort (usually a few).
    newest = batches.filter(repeated).sort([*keys, *VERSION]).filter(k.is_last_distinct())
    return pl.concat([batches.filter(~repeated), newest]).sort(keys)


def current_entities(records: pl.LazyFrame, cells: pl.LazyFrame, key: str | Sequence[str]) -> pl.LazyFrame:
    """Upsert: each top-level field takes its newest non-null value (a feed that
    does not carry a field, like group/ for domains, leaves it unchanged);
    properties merge key by key, newest value per key wins, an explicit JSON null
    removes the key. Lineage columns are the newest record's.

    `cells` holds (keys, _landed_at, _source_file, _source_line, prop, value, _pos)
    with `prop` JSON-encoded, `value` JSON text and `_pos` the position in its object.
    """
    keys = _keys(key)
    # Underscore columns are lineage (the version) or storage (stage, hash, bucket).
    fields = [
        c for c in records.collect_schema().names() if c not in keys and not c.startswith("_") and c not in ("properties", "landing_date")
    ]
    latest = (
        records.sort([*keys, *VERSION])
        .group_by(keys, maintain_order=True)
        .agg(
            *[pl.col(c).drop_nulls().last() for c in fields],
            *[pl.col(c).last() for c in VERSION],
            first_seen_at=pl.col("_landed_at").min(),
            updated_at=pl.col("_landed_at").max(),
        )
    )
    merged_props = (
        cells.sort([*keys, "prop", *VERSION, "_pos"])
        .unique(subset=[*keys, "prop"], keep="last", maintain_order=True)
        .filter(pl.col("value") != "null")
        .group_by(keys)
        .agg(properties=pl.format("{}:{}", "prop", "value").sort_by(pl.col("prop")).str.join(","))
        .select(*keys, properties=pl.concat_str(pl.lit("{"), "properties", pl.lit("}")))
    )
    return latest.join(merged_props, on=keys, how="left").with_columns(pl.col("properties").fill_null("{}")).sort(keys)


def current_memberships(memberships: pl.LazyFrame) -> pl.LazyFrame:
    """group/: one account per contact, the newest membership wins."""
    return (
        memberships.sort(["contact_id", *VERSION])
        .unique(subset="contact_id", keep="last", maintain_order=True)
        .select("contact_id", "account_id")
    )
