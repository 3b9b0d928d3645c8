"""Deterministic dedupe and merge (SPEC section 2.4).

A record's version is (landed_at, source file, line). Every function here is a pure
function of its input rows, so the tables do not depend on the order runs happen in.
"""

from __future__ import annotations

import polars as pl

VERSION = ["_landed_at", "_source_file", "_source_line"]


def dedupe_within_file(records: pl.FrameType, key: str) -> pl.FrameType:
    """Events: within one file the first occurrence of an event_id is kept
    (lines are unique within a file, so exactly one row per event_id survives)."""
    return records.filter(pl.col("_source_line") == pl.col("_source_line").min().over(key))


def current_events(batches: pl.LazyFrame, key: str) -> pl.LazyFrame:
    """One row per event_id: the most recently landed file's copy wins."""
    return batches.sort([key, *VERSION]).unique(subset=key, keep="last", maintain_order=True).sort(key)


def current_entities(records: pl.LazyFrame, cells: pl.LazyFrame, key: str) -> pl.LazyFrame:
    """Upsert: top-level fields from the newest record; properties merged key by key,
    newest value per key wins, an explicit JSON null removes the key.

    `cells` holds (key, _landed_at, _source_file, _source_line, prop, value) with
    `prop` JSON-encoded and `value` JSON text.
    """
    latest = records.sort([key, *VERSION]).unique(subset=key, keep="last", maintain_order=True)
    seen = records.group_by(key).agg(
        first_seen_at=pl.col("_landed_at").min(), updated_at=pl.col("_landed_at").max()
    )
    merged_props = (
        cells.sort([key, "prop", *VERSION])
        .unique(subset=[key, "prop"], keep="last", maintain_order=True)
        .filter(pl.col("value") != "null")
        .group_by(key)
        .agg(
            properties=pl.format("{}:{}", "prop", "value").sort_by(pl.col("prop")).str.join(",")
        )
        .select(key, properties=pl.concat_str(pl.lit("{"), "properties", pl.lit("}")))
    )
    return (
        latest.drop("properties", strict=False)
        .join(merged_props, on=key, how="left")
        .join(seen, on=key, how="left")
        .with_columns(pl.col("properties").fill_null("{}"))
        .sort(key)
    )
