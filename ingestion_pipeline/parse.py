"""Parse raw record text as JSON and pull out a stream's fields.

Polars has no type for an arbitrary JSON object, so the JSON work (validity, field
extraction with the JSON type of each value, unknown keys, property objects kept as
JSON text) runs in DuckDB's vectorised JSON functions; everything after is polars.

Per batch, one lean DuckDB query (the fast path) returns each record's validity
and the JSON text of every field (one list-form extraction: one parse); polars
derives the field texts and JSON types from those. A record the fast path cannot
vouch for (other keys than the fields, a key repeated, an escaped string, a
number whose JSON type its text does not show, a field's quoted name inside a
value) takes the general query, which extracts as the contract says. Records
that fail or need the error paths are fixed in place, by row position: rows never
move, and nothing is re-sorted unless the input was not in line order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from .streams import FeedSpec, StreamSpec, as_feed

# What DuckDB's JSON reader accepts beyond strict JSON: NaN / Infinity in any case
# and trailing commas. A record matching this is checked by Python's json module.
NON_STANDARD_JSON = r"(?i)(?:^|[\[:,]\s*)[-+]?(?:nan|inf(?:inity)?)\s*(?:[,\]}]|$)|,\s*[\]}]"
# Cheap prefilters (literal-led, so fast): a record NON_STANDARD_JSON matches
# holds `nan`/`inf` in some case, or a trailing comma (the pattern's second half).
NAN_OR_INF = r"(?i)nan|inf"
TRAILING_COMMA = r",\s*[\]}]"
# DuckDB splits a polars frame's scan by chunk: rows per chunk, so both threads work.
SCAN_CHUNK_ROWS = 16384


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _path(key: str) -> str:
    return _sql_str(f'$."{key}"')


def _field_columns(feed: FeedSpec) -> list[str]:
    """The output columns the extraction adds, in order (before `drift`)."""
    cols = []
    for f in feed.fields:
        cols += [f.name, f"{f.name}__type"]
    if feed.extras_are_properties:
        cols += [feed.properties_column, f"{feed.properties_column}__type"]
    if feed.discriminator:
        cols.append("_discriminator")
    return cols + ["drift"]


def _extract_sql(feed: FeedSpec) -> str:
    """The general query over `docs` (doc, error): `_valid` (DuckDB's json_valid,
    null for records that already failed), each field's text and JSON type, the
    discriminator, `drift` (top-level keys that are not fields) and the parts of
    the repeated-key rule that need the parsed record.

    The rule: a record is rewritten (last key wins) when an unknown key repeats
    (`_drift_dup`), or when some known key's quoted name occurs twice in its text
    and a key repeats at the top level or in the properties object. `_dup_hint`
    is that second part without the text count, which polars does for the hinted
    records only. A known key repeats when the record has more known-key
    occurrences than known keys present.

    Field values come from list-form paths, so the record is parsed once for all
    texts and once for all types. `json_extract_string` of an object or array is
    its JSON text, as `json_extract(...)::VARCHAR` is; other properties values
    (rare: an invalid type) take the exact `json_extract` route."""
    keys = list(dict.fromkeys(feed.known_keys))
    paths = "[" + ", ".join(_path(k) for k in keys) + "]"
    at = {k: i for i, k in enumerate(keys, 1)}
    cols = []
    for f in feed.fields:
        i = at[f.source]
        if f.kind == "properties":
            cols.append(
                f"CASE WHEN _t[{i}] IN ('OBJECT', 'ARRAY') THEN _s[{i}] "
                f"WHEN _t[{i}] IS NOT NULL THEN json_extract(doc, {_path(f.source)})::VARCHAR END AS {f.name}"
            )
        else:
            cols.append(f"_s[{i}] AS {f.name}")
        cols.append(f"_t[{i}] AS {f.name}__type")
    if feed.extras_are_properties:
        # Legacy feeds: the properties are the record's other top-level keys.
        props = feed.properties_column
        cols.append(f"CASE WHEN error IS NULL AND _valid IS NOT FALSE THEN '{{}}' END AS {props}")
        cols.append(f"CASE WHEN error IS NULL AND _valid IS NOT FALSE THEN 'OBJECT' END AS {props}__type")
    if feed.discriminator:
        cols.append(f"_s[{at[feed.discriminator[0]]}] AS _discriminator")
    known = ", ".join(_sql_str(k) for k in feed.known_keys)
    cols.append(f"list_filter(_k[1], lambda k: k NOT IN ({known})) AS drift")
    present = " + ".join(f"(_t[{i}] IS NOT NULL)::INTEGER" for i in at.values())
    hints = [f"len(_k[1]) - len(drift) > {present}"]
    key_paths = "['$']"
    if feed.properties_field is not None:
        key_paths = f"['$', {_path(feed.properties_field.source)}]"
        hints.append("(len(_k[2]) > 1 AND len(_k[2]) <> len(list_distinct(_k[2])))")
    return f"""
        WITH v AS (SELECT doc, error, CASE WHEN error IS NULL THEN json_valid(doc) END AS _valid FROM docs),
        x AS (
          SELECT doc, error, _valid,
            CASE WHEN _valid THEN json_extract_string(doc, {paths}) END AS _s,
            CASE WHEN _valid THEN json_type(doc, {paths}) END AS _t,
            CASE WHEN _valid THEN json_keys(doc, {key_paths}) END AS _k
          FROM v
        ),
        y AS (SELECT _valid, _t, _k, {", ".join(cols)} FROM x)
        SELECT _valid, {", ".join(_field_columns(feed))},
          coalesce(len(drift) > 1 AND len(drift) <> len(list_distinct(drift)), false) AS _drift_dup,
          coalesce({" OR ".join(hints)}, false) AS _dup_hint
        FROM y
    """


def _fast_sql(keys: list[str]) -> str:
    """Fast path over `docs` (doc, error): `_valid` and the JSON text of each key's
    value (`_r1`...; null when absent, `null` for a JSON null), all from one
    list-form extraction."""
    paths = "[" + ", ".join(_path(k) for k in keys) + "]"
    values = ", ".join(f"_r[{i}]::VARCHAR AS _r{i}" for i in range(1, len(keys) + 1))
    return f"""
        WITH v AS (SELECT doc, CASE WHEN error IS NULL THEN json_valid(doc) END AS _valid FROM docs)
        SELECT _valid, {values} FROM (SELECT _valid, CASE WHEN _valid THEN json_extract(doc, {paths}) END AS _r FROM v)
    """


class _FastPath:
    """Turns the fast query's `_r<i>` (JSON text of known key i, as DuckDB writes
    it) into the extraction's columns, and says which records must take the
    general query instead (`_slow`).

    json_extract_string is that JSON text itself for a number, a boolean, an object
    or an array, null for a JSON null and the unquoted string for a string (plain
    when its JSON text has no backslash). json_type follows from the first
    character, and for a number from its text: an integer that reads back from its
    text is unsigned when positive, signed when negative (zero is left to DuckDB:
    `-0` is written `0` but typed BIGINT; so are reals and numbers past 64 bits).

    A record stays on the fast path only when its keys are exactly the fields
    present (no drift, no key repeated) and no known key's quoted name can occur
    twice in it. Each occurrence of `"key"` in valid JSON is a whole string or the
    end of one after an escaped quote: here the key itself, or inside a field's
    value, which holds one only if it is that string, a string with a backslash,
    or an object or array whose JSON text holds it. So the repeated-key check has
    nothing to find, and the properties need no merge.

    The record's keys are exactly the fields present when its length is that of
    those fields written as DuckDB writes them (`{"key":value,...}`): writing never
    lengthens a value (strings, integers, objects without reals), and anything else
    (another key, a repeat, whitespace, an escape) only adds. DuckDB counts the
    keys of the records this cannot vouch for."""

    def __init__(self, feed: FeedSpec, keys: list[str]):
        self.feed = feed
        self.keys = keys
        self.props = feed.properties_field.source if feed.properties_field is not None else None
        self.quoted = [json.dumps(k) for k in feed.known_keys]
        self.names = [k for k in keys if not any(o != k and o in k for o in keys)]

    def columns(self, fast: pl.DataFrame, docs: pl.Series, con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
        """`fast` (the fast query's result) and `docs` (the records) -> `_valid`, the
        extraction's columns (see _field_columns) and `_slow`."""
        n = fast.height
        valid = fast["_valid"].fill_null(False)
        raw = {k: fast[f"_r{i}"] for i, k in enumerate(self.keys, 1)}
        text, jtype, slow = {}, {}, []
        for k, r in raw.items():
            text[k], jtype[k], unsure = self._value(k, r)
            slow += unsure
        # Fields present, and the length of `{"key":value,...}` less one.
        present, written = pl.select(
            pl.sum_horizontal(r.is_not_null() for r in raw.values()).alias("present"),
            pl.sum_horizontal(r.str.len_bytes() + len(json.dumps(k)) + 2 for k, r in raw.items()).alias("written"),
        )
        exact = docs.str.len_bytes() == written + 1 + (present == 0)
        if self.props is not None:  # a real may be written longer than it was given
            exact = exact & ~raw[self.props].str.contains(".", literal=True).fill_null(False)
        rows = np.flatnonzero((valid & ~exact.fill_null(False)).to_numpy())
        if len(rows):
            counted = docs.gather(rows).to_frame("doc")  # noqa: F841 (DuckDB reads it)
            counts = con.sql("SELECT len(json_keys(doc)) AS n FROM counted").pl()["n"]
            slow.append(pl.Series(np.zeros(n, dtype=bool)).scatter(rows, counts != present.gather(rows)))
        # Rare, so found on the whole batch first: a string with a backslash.
        rows = np.flatnonzero((valid & docs.str.contains("\\", literal=True)).fill_null(False).to_numpy())
        if len(rows):
            escaped = pl.select(
                pl.any_horizontal(
                    r.gather(rows).str.starts_with('"') & r.gather(rows).str.contains("\\", literal=True) for r in raw.values()
                )
            )
            slow.append(pl.Series(np.zeros(n, dtype=bool)).scatter(rows, escaped.to_series().fill_null(False)))
        cols = {}
        for f in self.feed.fields:
            cols[f.name] = raw[f.source] if f.kind == "properties" else text[f.source]
            cols[f"{f.name}__type"] = jtype[f.source]
        if self.feed.discriminator:
            cols["_discriminator"] = text[self.feed.discriminator[0]]
        cols["drift"] = pl.select(pl.when(valid).then(pl.lit([], dtype=pl.List(pl.String)))).to_series()
        slow = pl.select(pl.any_horizontal(slow).fill_null(False)).to_series() if slow else pl.repeat(False, n, eager=True)
        return pl.DataFrame({"_valid": fast["_valid"], **{c: v.alias(c) for c, v in cols.items()}, "_slow": slow})

    def _value(self, key: str, r: pl.Series) -> tuple[pl.Series, pl.Series, list[pl.Series]]:
        """One key's text, JSON type and reasons to leave the fast path. A column of
        one JSON type (the usual case) costs a couple of passes."""
        string = r.str.starts_with('"')
        if string.fill_null(True).all():
            unsure = [string & r.is_in(self.quoted)] if self._may_be_quoted_key(r) else []
            return r.str.strip_chars('"'), _constant("VARCHAR", r), unsure
        obj = r.str.starts_with("{")
        if key == self.props and obj.fill_null(True).all():
            unsure = [r.str.contains_any(self.quoted)] if self._holds_quoted_key(r) else []
            return r, _constant("OBJECT", r), unsure
        number = r.str.to_integer(strict=False)
        if key != self.props and ((number > 0).fill_null(False) | r.is_null()).all():
            return r, _constant("UBIGINT", r), []
        frame = pl.DataFrame({"r": r, "s": string, "o": obj, "n": number})
        col = pl.col("r")
        nested = pl.col("o") | col.str.starts_with("[")
        jtype = (
            pl.when(pl.col("s"))
            .then(pl.lit("VARCHAR"))
            .when(pl.col("o"))
            .then(pl.lit("OBJECT"))
            .when(col.str.starts_with("["))
            .then(pl.lit("ARRAY"))
            .when(col.is_in(["true", "false"]))
            .then(pl.lit("BOOLEAN"))
            .when(col == "null")
            .then(pl.lit("NULL"))
            .when(pl.col("n") > 0)
            .then(pl.lit("UBIGINT"))
            .when(pl.col("n") < 0)
            .then(pl.lit("BIGINT"))
        )
        value = pl.when(pl.col("s")).then(col.str.strip_chars('"')).when(col != "null").then(col)
        unsure = (col.is_not_null() & jtype.is_null()) | (pl.col("s") & col.is_in(self.quoted))
        unsure = unsure | (nested & col.str.contains_any(self.quoted) if key == self.props else nested)
        out = frame.select(value.alias("text"), jtype.alias("type"), unsure.alias("unsure"))
        return out["text"], out["type"], [out["unsure"]]

    def _may_be_quoted_key(self, r: pl.Series) -> bool:
        lengths = {len(q) for q in self.quoted}
        return bool(r.str.len_bytes().is_in(list(lengths)).any())

    def _holds_quoted_key(self, r: pl.Series) -> bool:
        """Whether some text of `r` may hold a known key's quoted name: each name
        holds one of `self.names` (the names that hold no other)."""
        whole = r.str.join("\n").item()
        return whole is not None and any(name in whole for name in self.names)


def _constant(value: str, like: pl.Series) -> pl.Series:
    """`value` where `like` is not null."""
    if not like.has_nulls():
        return pl.repeat(value, len(like), eager=True)
    return pl.select(pl.when(like.is_not_null()).then(pl.lit(value))).to_series()


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


def _replace_rows(frame: pl.DataFrame, rows: np.ndarray, new: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its rows at positions `rows` replaced by the rows of `new` (same
    columns, in that order); every other row stays where it is."""
    take = np.arange(frame.height, dtype=np.int64)
    take[rows] = np.arange(frame.height, frame.height + len(rows), dtype=np.int64)
    return pl.concat([frame, new.select(frame.columns)], how="vertical")[take]


def _chunked(frame: pl.DataFrame) -> pl.DataFrame:
    """The same rows in chunks of SCAN_CHUNK_ROWS, so DuckDB scans them in parallel."""
    if frame.height <= SCAN_CHUNK_ROWS:
        return frame
    return pl.concat([frame.slice(o, SCAN_CHUNK_ROWS) for o in range(0, frame.height, SCAN_CHUNK_ROWS)], rechunk=False)


class JsonParser:
    """Parses batches of raw records for one feed; holds one DuckDB connection.

    A batch has `line`, `raw` (the record's text as landed), `error`/`message`
    (set when the record already failed) and optionally `json`: the record as a
    JSON object when `raw` is not JSON itself (a CSV row)."""

    def __init__(self, spec: FeedSpec | StreamSpec):
        self.feed = as_feed(spec)
        self.con = duckdb.connect()
        self.con.execute("SET threads TO 2")
        self._sql = _extract_sql(self.feed)
        self._columns = _field_columns(self.feed)
        keys = list(dict.fromkeys(self.feed.known_keys))
        # The fast path's proofs hold for keys that JSON writes as they are; a
        # legacy feed's records all carry other keys (their properties).
        self._fast = not self.feed.extras_are_properties and all(re.fullmatch(r"\w+", k, re.ASCII) for k in keys)
        if self._fast:
            self._fast_sql = _fast_sql(keys)
            self._fast_path = _FastPath(self.feed, keys)
        # A record can repeat a key only if some key's quoted name occurs twice.
        self._maybe_repeated = pl.any_horizontal(
            pl.col("doc").str.count_matches(json.dumps(k), literal=True) > 1 for k in self.feed.known_keys
        )

    def close(self) -> None:
        self.con.close()

    def parse(self, lines: pl.DataFrame) -> pl.DataFrame:
        """Adds the stream's fields (text + JSON type) to each record; records that
        are not JSON objects get `error` = invalid_json / not_an_object.

        DuckDB computes new columns only; they are stacked next to the input
        (DuckDB keeps row order), so the record text is never copied back. Rows
        keep their places; the result is sorted by `line` only if the input was not."""
        doc = pl.col("json") if "json" in lines.columns else pl.col("raw")
        frame = lines.select("line", "raw", "error", "message", doc.alias("doc"))
        docs = _chunked(frame.select("doc", "error"))
        if self._fast:
            fast = self._fast_path.columns(self.con.sql(self._fast_sql).pl(), frame["doc"], self.con)
            extracted = fast.with_columns(_drift_dup=pl.lit(False), _dup_hint=pl.lit(False))
        else:
            extracted = self._extract(docs).with_columns(_slow=pl.lit(False))
        frame = pl.concat([frame, extracted], how="horizontal")
        docs = frame["doc"]
        duck_valid = frame["_valid"]  # DuckDB's view; null for records that already failed
        valid = duck_valid
        doc_ = pl.col("doc")
        starts, candidate = frame.select(
            doc_.str.starts_with("{"),
            # Not strict JSON although DuckDB reads it: NON_STANDARD_JSON picks the
            # candidates (run on the few records a cheap prefilter finds), Python judges.
            (valid & (doc_.str.contains(NAN_OR_INF) | doc_.str.contains(TRAILING_COMMA))).fill_null(False),
        )
        padded = np.flatnonzero((valid & ~starts).fill_null(False).to_numpy())
        if len(padded):  # leading whitespace, or not an object
            starts = starts.scatter(padded, docs.gather(padded).str.strip_chars_start().str.starts_with("{"))
        is_object = valid & starts
        if candidate.any():
            rows = np.flatnonzero(candidate.to_numpy())
            rows = rows[docs.gather(rows).str.contains(NON_STANDARD_JSON).to_numpy()]
            strict = [_json_error(d) is not None for d in docs.gather(rows)]
            if any(strict):
                bad = np.zeros(frame.height, dtype=bool)
                bad[rows[np.array(strict)]] = True
                not_bad = pl.Series(~bad)
                valid, is_object = valid & not_bad, is_object & not_bad
        frame = frame.with_columns(_valid=valid, _object=is_object).with_columns(
            error=pl.when(pl.col("error").is_not_null())
            .then("error")
            .when(~pl.col("_valid"))
            .then(pl.lit("invalid_json"))
            .when(~pl.col("_object"))
            .then(pl.lit("not_an_object")),
            message=pl.when(pl.col("error").is_not_null())
            .then("message")
            .when(~pl.col("_valid"))
            .then(pl.lit("record is not valid JSON"))
            .when(~pl.col("_object"))
            .then(pl.lit("record is valid JSON but not an object")),
        )
        error = frame["error"]
        invalid = np.flatnonzero((error == "invalid_json").fill_null(False).to_numpy())
        if len(invalid):  # error path: say where the JSON breaks
            why = pl.Series([_json_error(d) for d in docs.gather(invalid)], dtype=pl.String)
            message = frame["message"].gather(invalid)
            at = pl.select(pl.coalesce(pl.format("{}: {}", pl.lit(message), pl.lit(why)), pl.lit(message))).to_series()
            frame = frame.with_columns(frame["message"].scatter(invalid, at))
        ok = error.is_null()
        slow = np.flatnonzero((ok & frame["_slow"]).to_numpy())
        if len(slow):
            # Records the fast path cannot vouch for: the general query.
            again = frame[slow].select("line", "raw", "error", "message", "doc")
            again = pl.concat([again, self._extract(again.select("doc", "error"))], how="horizontal")
            frame = _replace_rows(frame.select(again.columns), slow, again)
        if (duck_valid & ~ok).any():
            # DuckDB read these but they failed here (not an object, not strict
            # JSON): a failed record has no fields.
            frame = frame.with_columns(pl.when(ok).then(pl.col(c)).alias(c) for c in self._columns)
        repeated = (ok & frame["_drift_dup"]).to_numpy().copy()
        hinted = np.flatnonzero((ok & frame["_dup_hint"]).to_numpy())
        if len(hinted):
            # Exact but costly, so only for records whose keys say a key repeats.
            maybe = frame[hinted].select(self._maybe_repeated).to_series().fill_null(False).to_numpy()
            repeated[hinted[maybe]] = True
        if repeated.any():
            # Error path: a key repeated in one object; the last occurrence wins
            # (as in JavaScript and Python), so those records are rewritten.
            rows = np.flatnonzero(repeated)
            again = frame[rows].select(
                "line", "raw", "error", "message", doc=pl.Series([_last_key_wins(d) for d in frame["doc"].gather(rows)], dtype=pl.String)
            )
            again = pl.concat([again, self._extract(again.select("doc", "error"))], how="horizontal")
            frame = _replace_rows(frame.select(again.columns), rows, again)
        frame = self._merge_drift(frame)
        out = frame.select("line", "raw", "error", "message", *self._columns)
        if not out["line"].is_sorted():
            out = out.sort("line", maintain_order=True)
        return out

    def _extract(self, docs: pl.DataFrame) -> pl.DataFrame:
        """The general query (see _extract_sql) over `docs` (doc, error)."""
        return self.con.sql(self._sql).pl()

    def _merge_drift(self, parsed: pl.DataFrame) -> pl.DataFrame:
        """Unknown top-level fields are kept: merged into the record's properties
        (a key present in the properties object wins)."""
        props = self.feed.properties_column
        has_drift = pl.col("error").is_null() & (pl.col("drift").list.len() > 0) & (pl.col(f"{props}__type") == "OBJECT")
        rows = np.flatnonzero(parsed.select(has_drift.fill_null(False)).to_series().to_numpy())
        if not len(rows):
            return parsed
        drifted = parsed[rows].select("doc", "drift", props, _row=pl.int_range(len(rows), dtype=pl.Int64))
        # Fast path: drop the known keys from the record (a JSON merge patch with
        # nulls), then lay the properties object over the rest. Exact unless the
        # properties hold a null (a patch would drop it) or share a key with the
        # unknown fields (a patch would merge nested objects): those take the slow path.
        drop_known = json.dumps(dict.fromkeys(self.feed.known_keys))
        merged = self.con.sql(
            f"""
            SELECT _row, CASE WHEN NOT contains({props}, 'null') AND NOT list_has_any(drift, json_keys({props}))
              THEN json_merge_patch(json_merge_patch(doc, $drop), {props})::VARCHAR END AS merged
            FROM drifted
            """,
            params={"drop": drop_known},
        ).pl()["merged"]
        slow = np.flatnonzero(merged.is_null().to_numpy())
        if len(slow):
            # Exact path, in the fast path's key order: the unknown fields in record
            # order, then the other properties in theirs; the properties' value wins.
            slow_rows = drifted[slow]  # noqa: F841 (DuckDB reads it)
            exact = self.con.sql(
                f"""
                WITH cells AS (
                  SELECT d._row, e.key, e.value, 0 AS pri, e.id AS pos FROM slow_rows d, json_each(d.doc) e WHERE list_contains(d.drift, e.key)
                  UNION ALL
                  SELECT d._row, e.key, e.value, 1 AS pri, e.id AS pos FROM slow_rows d, json_each(d.{props}) e
                )
                SELECT _row, ('{{' || string_agg(to_json(key) || ':' || coalesce(to_json(value), 'null'), ',' ORDER BY place) || '}}')::JSON::VARCHAR
                  AS merged  -- json_group_object(key, value), in order
                FROM (SELECT _row, key, arg_max(value, [pri, pos]) AS value, min([pri, pos]) AS place FROM cells GROUP BY _row, key)
                GROUP BY _row
                """
            ).pl()
            merged = merged.scatter(exact["_row"].to_numpy(), exact["merged"])
        values = parsed[rows].select(pl.coalesce(merged, props).alias(props))[props]
        return parsed.with_columns(parsed[props].scatter(rows, values))

    def write_property_cells(self, records: Path, out: Path, keys: tuple[str, ...]) -> None:
        """One row per (record, property key), streamed from the records file to
        `out`: the record's keys, version columns, `prop` (JSON-encoded key),
        `value` (JSON text; `null` marks a removed key), `_pos` (position in
        the object, so a key repeated in one object resolves to its last copy)
        and the record's batch columns (stage, landing day, key hash, bucket), in the
        records' order (sorted by bucket)."""
        src = str(records).replace("'", "''")
        dst = str(out).replace("'", "''")
        key_cols = ", ".join(f"r.{k}" for k in keys)
        self.con.execute(
            f"COPY (SELECT {key_cols}, r._landed_at, r._source_file, r._source_line, "
            f"to_json(e.key)::VARCHAR AS prop, e.value::VARCHAR AS value, e.id::BIGINT AS _pos, r._stage_id, r.landing_date, r._key_hash, r._bucket "
            f"FROM read_parquet('{src}') r, json_each(r.properties) e) "
            f"TO '{dst}' (FORMAT parquet, COMPRESSION zstd)"
        )
