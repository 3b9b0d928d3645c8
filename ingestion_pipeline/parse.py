"""Parse raw record text as JSON and pull out a stream's fields.

Polars has no type for an arbitrary JSON object, so the JSON work (validity, field
extraction with the JSON type of each value, unknown keys, property objects kept as
JSON text) runs in DuckDB's vectorised JSON functions; everything after is polars.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl

from .streams import FeedSpec, StreamSpec, as_feed

# What DuckDB's JSON reader accepts beyond strict JSON: NaN / Infinity in any case
# and trailing commas. A record matching this is checked by Python's json module.
NON_STANDARD_JSON = r"(?i)(?:^|[\[:,]\s*)[-+]?(?:nan|inf(?:inity)?)\s*(?:[,\]}]|$)|,\s*[\]}]"


def _select_list(feed: FeedSpec) -> str:
    """Extraction from `doc` (the record as a JSON object): each field's text and
    JSON type, the discriminator, and `drift` (top-level keys that are not fields)."""
    cols = []
    for f in feed.fields:
        path = f"'$.\"{f.source}\"'"
        if f.kind == "properties":
            cols.append(f"json_extract(doc, {path})::VARCHAR AS {f.name}")
        else:
            cols.append(f"json_extract_string(doc, {path}) AS {f.name}")
        cols.append(f"json_type(doc, {path}) AS {f.name}__type")
    if feed.extras_are_properties:
        # Legacy feeds: the properties are the record's other top-level keys.
        cols.append(f"'{{}}' AS {feed.properties_column}, 'OBJECT' AS {feed.properties_column}__type")
    if feed.discriminator:
        cols.append(f"json_extract_string(doc, '$.\"{feed.discriminator[0]}\"') AS _discriminator")
    repeated = ["len(json_keys(doc)) <> len(list_distinct(json_keys(doc)))"]
    if feed.properties_field is not None:
        path = f"'$.\"{feed.properties_field.source}\"'"
        repeated.append(
            f"(json_type(doc, {path}) = 'OBJECT' AND len(json_keys(doc, {path})) <> len(list_distinct(json_keys(doc, {path}))))"
        )
    # Exact but costly, so only for records that polars flagged as candidates.
    cols.append(f"CASE WHEN _maybe_repeated THEN coalesce({' OR '.join(repeated)}, false) ELSE false END AS _repeated_keys")
    known = ", ".join("'" + k.replace("'", "''") + "'" for k in feed.known_keys)
    cols.append(f"list_filter(json_keys(doc), lambda k: k NOT IN ({known})) AS drift")
    return ", ".join(cols)


def _json_error(doc: str | None) -> str | None:
    """Error path: why a record is not strict JSON (RFC 8259), with the column;
    None when it is. Also the judge of records DuckDB accepts but JSON does not
    (NaN, Infinity, trailing commas)."""

    def reject(constant: str):
        raise ValueError(f"{constant} is not valid JSON")

    if doc is None:
        return None
    try:
        json.loads(doc, parse_constant=reject)
    except RecursionError:
        return "nested too deeply"
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at column {exc.colno}"
    except ValueError as exc:
        return str(exc)
    return None


def _last_key_wins(doc: str) -> str:
    """Error path: a record with a repeated key, rewritten so that the last
    occurrence of each key wins (as in JavaScript and Python)."""
    return json.dumps(json.loads(doc), ensure_ascii=False, separators=(",", ":"))


class JsonParser:
    """Parses batches of raw records for one feed; holds one DuckDB connection.

    A batch has `line`, `raw` (the record's text as landed), `error`/`message`
    (set when the record already failed) and optionally `json`: the record as a
    JSON object when `raw` is not JSON itself (a CSV row)."""

    def __init__(self, spec: FeedSpec | StreamSpec):
        self.feed = as_feed(spec)
        self.con = duckdb.connect()
        self.con.execute("SET threads TO 2")
        self._select = _select_list(self.feed)

    def close(self) -> None:
        self.con.close()

    def parse(self, lines: pl.DataFrame) -> pl.DataFrame:
        """Adds the stream's fields (text + JSON type) to each record; records that
        are not JSON objects get `error` = invalid_json / not_an_object.

        DuckDB computes new columns only; they are stacked next to the input
        (DuckDB keeps row order), so the record text is never copied back."""
        con = self.con
        lines = lines.with_columns(doc=pl.col("json") if "json" in lines.columns else pl.col("raw")).drop("json", strict=False)
        docs = lines.select("doc", "error")  # noqa: F841 (DuckDB reads it)
        valid = con.sql("SELECT CASE WHEN error IS NULL THEN json_valid(doc) END AS valid FROM docs").pl()
        checked = pl.concat([lines, valid], how="horizontal").with_columns(
            is_object=pl.col("valid") & pl.col("doc").str.strip_chars_start().str.starts_with("{"),
            suspicious=pl.col("valid") & pl.col("doc").str.contains(NON_STANDARD_JSON),
        )
        if checked["suspicious"].any():
            strict = {
                line: err
                for line, doc in checked.filter("suspicious").select("line", "doc").iter_rows()
                if (err := _json_error(doc)) is not None
            }
            bad = pl.col("line").is_in(list(strict))
            checked = checked.with_columns(valid=pl.col("valid") & ~bad, is_object=pl.col("is_object") & ~bad)
        checked = checked.with_columns(
            error=pl.when(pl.col("error").is_not_null())
            .then("error")
            .when(~pl.col("valid"))
            .then(pl.lit("invalid_json"))
            .when(~pl.col("is_object"))
            .then(pl.lit("not_an_object")),
            message=pl.when(pl.col("error").is_not_null())
            .then("message")
            .when(~pl.col("valid"))
            .then(pl.lit("record is not valid JSON"))
            .when(~pl.col("is_object"))
            .then(pl.lit("record is valid JSON but not an object")),
        )
        invalid = checked.filter(pl.col("error") == "invalid_json")
        if invalid.height:  # error path: say where the JSON breaks
            why = pl.DataFrame(
                {"line": invalid["line"], "why": [_json_error(d) for d in invalid["doc"]]},
                schema={"line": pl.Int64, "why": pl.String},
            )
            checked = (
                checked.join(why, on="line", how="left", maintain_order="left")
                .with_columns(message=pl.coalesce(pl.format("{}: {}", "message", "why"), "message"))
                .drop("why")
            )
        # A record can repeat a key only if some key's quoted name occurs twice.
        maybe = pl.any_horizontal(pl.col("doc").str.count_matches(json.dumps(k), literal=True) > 1 for k in self.feed.known_keys)
        objects = checked.filter(pl.col("error").is_null()).select("line", "raw", "error", "message", "doc", _maybe_repeated=maybe)
        failed = checked.filter(pl.col("error").is_not_null()).select("line", "raw", "error", "message")
        parsed = self._extract(objects)
        parsed = parsed.with_columns(
            _repeated_keys=pl.col("_repeated_keys") | (pl.col("drift").list.len() > pl.col("drift").list.n_unique())
        )
        if parsed["_repeated_keys"].any():
            # Error path: a key repeated in one object; the last occurrence wins
            # (as in JavaScript and Python), so those records are rewritten.
            repeated = parsed.filter("_repeated_keys")
            rewritten = repeated.select(
                "line", "raw", "error", "message",
                doc=pl.Series([_last_key_wins(d) for d in repeated["doc"]], dtype=pl.String),
                _maybe_repeated=pl.lit(False),
            )
            parsed = pl.concat([parsed.filter(~pl.col("_repeated_keys")), self._extract(rewritten)]).sort("line")
        parsed = self._merge_drift(parsed.drop("_repeated_keys")).drop("doc", "_maybe_repeated")
        return pl.concat([parsed, failed], how="diagonal_relaxed").sort("line")

    def _extract(self, objects: pl.DataFrame) -> pl.DataFrame:
        docs = objects.select("doc", "_maybe_repeated")  # noqa: F841 (DuckDB reads it)
        return pl.concat([objects, self.con.sql(f"SELECT {self._select} FROM docs").pl()], how="horizontal")

    def _merge_drift(self, parsed: pl.DataFrame) -> pl.DataFrame:
        """Unknown top-level fields are kept: merged into the record's properties
        (a key present in the properties object wins)."""
        props = self.feed.properties_column
        drifted = parsed.filter((pl.col("drift").list.len() > 0) & (pl.col(f"{props}__type") == "OBJECT"))
        if drifted.is_empty():
            return parsed
        # Fast path: drop the known keys from the record (a JSON merge patch with
        # nulls), then lay the properties object over the rest. Exact unless the
        # properties hold a null (a patch would drop it) or share a key with the
        # unknown fields (a patch would merge nested objects): those take the slow path.
        drop_known = json.dumps(dict.fromkeys(self.feed.known_keys))
        merged = self.con.sql(
            f"""
            SELECT line, CASE WHEN NOT contains({props}, 'null') AND NOT list_has_any(drift, json_keys({props}))
              THEN json_merge_patch(json_merge_patch(doc, $drop), {props})::VARCHAR END AS merged
            FROM drifted
            """,
            params={"drop": drop_known},
        ).pl()
        slow = drifted.join(merged.filter(pl.col("merged").is_null()), on="line", how="semi")
        if slow.height:
            exact = self.con.sql(
                f"""
                WITH cells AS (
                  SELECT d.line, e.key, e.value, 0 AS pri FROM slow d, json_each(d.doc) e WHERE list_contains(d.drift, e.key)
                  UNION ALL
                  SELECT d.line, e.key, e.value, 1 AS pri FROM slow d, json_each(d.{props}) e
                )
                SELECT line, json_group_object(key, value)::VARCHAR AS merged
                FROM (SELECT line, key, arg_max(value, pri) AS value FROM cells GROUP BY line, key)
                GROUP BY line
                """
            ).pl()
            merged = pl.concat([merged.filter(pl.col("merged").is_not_null()), exact])
        return (
            parsed.join(merged, on="line", how="left")
            .with_columns(pl.coalesce("merged", props).alias(props))
            .drop("merged")
        )

    def write_property_cells(self, records: Path, out: Path, keys: tuple[str, ...]) -> None:
        """One row per (record, property key), streamed from the records file to
        `out`: the record's keys, version columns, `prop` (JSON-encoded key),
        `value` (JSON text; `null` marks a removed key), `_pos` (position in
        the object, so a key repeated in one object resolves to its last copy)
        and the record's `_bucket`, in the records' order (sorted by bucket)."""
        src = str(records).replace("'", "''")
        dst = str(out).replace("'", "''")
        key_cols = ", ".join(f"r.{k}" for k in keys)
        self.con.execute(
            f"COPY (SELECT {key_cols}, r._landed_at, r._source_file, r._source_line, "
            f"to_json(e.key)::VARCHAR AS prop, e.value::VARCHAR AS value, e.id::BIGINT AS _pos, r._bucket "
            f"FROM read_parquet('{src}') r, json_each(r.properties) e) "
            f"TO '{dst}' (FORMAT parquet, COMPRESSION zstd)"
        )
