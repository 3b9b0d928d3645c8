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

from .streams import StreamSpec

NON_STANDARD_NUMBER = r"(?:^|[\[:,]\s*)-?(?:NaN|Infinity)\s*(?:[,\]}]|$)"


def _select_list(spec: StreamSpec) -> str:
    cols = ["line", "raw", "error", "message"]
    for f in spec.fields:
        path = f"'$.\"{f.source}\"'"
        if f.kind == "properties":
            cols.append(f"json_extract(raw, {path})::VARCHAR AS {f.name}")
        else:
            cols.append(f"json_extract_string(raw, {path}) AS {f.name}")
        cols.append(f"json_type(raw, {path}) AS {f.name}__type")
    if spec.discriminator:
        cols.append(f"json_extract_string(raw, '$.\"{spec.discriminator[0]}\"') AS _discriminator")
    known = ", ".join(f"'{k}'" for k in spec.known_keys)
    cols.append(f"list_filter(json_keys(raw), lambda k: k NOT IN ({known})) AS drift")
    return ", ".join(cols)


def _strict_json_error(raw: str) -> str | None:
    """Error path: confirm that a suspicious line really uses NaN/Infinity."""

    def reject(constant: str):
        raise ValueError(f"{constant} is not valid JSON")

    try:
        json.loads(raw, parse_constant=reject)
    except ValueError as exc:
        return str(exc)
    return None


class JsonParser:
    """Parses batches of raw records for one stream; holds one DuckDB connection."""

    def __init__(self, spec: StreamSpec):
        self.spec = spec
        self.con = duckdb.connect()
        self.con.execute("SET threads TO 2")
        self._select = _select_list(spec)

    def close(self) -> None:
        self.con.close()

    def parse(self, lines: pl.DataFrame) -> pl.DataFrame:
        """Adds the stream's fields (text + JSON type) to each record; records that
        are not JSON objects get `error` = invalid_json / not_an_object."""
        con = self.con
        checked = con.sql(
            "SELECT line, raw, error, message, CASE WHEN error IS NULL THEN json_valid(raw) END AS valid FROM lines"
        ).pl()
        checked = checked.with_columns(
            is_object=pl.col("valid") & pl.col("raw").str.strip_chars_start().str.starts_with("{"),
            suspicious=pl.col("valid") & pl.col("raw").str.contains(NON_STANDARD_NUMBER),
        )
        if checked["suspicious"].any():
            strict = {
                line: err
                for line, raw in checked.filter("suspicious").select("line", "raw").iter_rows()
                if (err := _strict_json_error(raw)) is not None
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
        objects = checked.filter(pl.col("error").is_null()).select("line", "raw", "error", "message")  # noqa: F841 (DuckDB reads it)
        failed = checked.filter(pl.col("error").is_not_null()).select("line", "raw", "error", "message")
        parsed = con.sql(f"SELECT {self._select} FROM objects").pl()
        parsed = self._merge_drift(parsed)
        return pl.concat([parsed, failed], how="diagonal_relaxed").sort("line")

    def _merge_drift(self, parsed: pl.DataFrame) -> pl.DataFrame:
        """Unknown top-level fields are kept: merged into the record's properties
        (a key present in the properties object wins)."""
        props = self.spec.properties_field.name
        drifted = parsed.filter((pl.col("drift").list.len() > 0) & (pl.col(f"{props}__type") == "OBJECT"))
        if drifted.is_empty():
            return parsed
        merged = self.con.sql(
            f"""
            WITH cells AS (
              SELECT d.line, e.key, e.value, 0 AS pri FROM drifted d, json_each(d.raw) e WHERE list_contains(d.drift, e.key)
              UNION ALL
              SELECT d.line, e.key, e.value, 1 AS pri FROM drifted d, json_each(d.{props}) e
            )
            SELECT line, json_group_object(key, value)::VARCHAR AS merged
            FROM (SELECT line, key, arg_max(value, pri) AS value FROM cells GROUP BY line, key)
            GROUP BY line
            """
        ).pl()
        return (
            parsed.join(merged, on="line", how="left")
            .with_columns(pl.coalesce("merged", props).alias(props))
            .drop("merged")
        )

    def write_property_cells(self, records: Path, out: Path, key: str) -> None:
        """One row per (record, property key), streamed from the records file to
        `out`: key, version columns, `prop` (JSON-encoded key), `value` (JSON text;
        `null` marks a removed key)."""
        src = str(records).replace("'", "''")
        dst = str(out).replace("'", "''")
        self.con.execute(
            f"COPY (SELECT r.{key}, r._landed_at, r._source_file, r._source_line, "
            f"to_json(e.key)::VARCHAR AS prop, e.value::VARCHAR AS value "
            f"FROM read_parquet('{src}') r, json_each(r.properties) e) "
            f"TO '{dst}' (FORMAT parquet, COMPRESSION zstd)"
        )
