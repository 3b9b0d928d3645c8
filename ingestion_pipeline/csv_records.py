"""CSV files as batches of records (SPEC section 1: comma, double quote, header row).

Every record becomes a JSON object of its non-empty cells (an empty cell is an
absent value), so the rest of the pipeline treats CSV and JSON the same way. A
non-standard column becomes a top-level key, which the parser turns into a property.

Fast path, vectorised (numpy + polars + DuckDB): a newline ends a record when an
even number of quotes precede it; a record is well formed (RFC 4180) when every
opening quote starts a field and every closing quote ends one; commas outside
quotes count its fields; polars parses the well-formed records; DuckDB builds the
JSON objects. Error path, from the first malformed quote on: Python's csv module
line by line, so a stray quote costs its own record and nothing after it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from .formats import LINE_SCHEMA, RAW_PREVIEW_CHARS, UTF8_BOM, DecodedReader, FileRejected
from .settings import Settings
from .streams import FeedSpec

QUOTE, COMMA, NL, CR = ord('"'), ord(","), ord("\n"), ord("\r")
BATCH_SCHEMA = LINE_SCHEMA | {"json": pl.String}
MAX_SLOW_PASSES = 8  # per buffer; past that the rest of the buffer stays on the error path
MALFORMED_MESSAGE = 'unterminated or misplaced double quote (a " inside a field must be doubled: "")'


def _reject(line: int, raw: str, rule: str, message: str) -> tuple:
    return (line, raw[:RAW_PREVIEW_CHARS], rule, message, None)


class CsvRecords:
    """Reads one CSV file; `batches()` yields frames of line, raw, error, message, json."""

    def __init__(self, reader: DecodedReader, settings: Settings, path: str, feed: FeedSpec):
        self.reader = reader
        self.settings = settings
        self.limit = settings.max_record_bytes
        self.path = path
        self.feed = feed
        self.header: list[str] | None = None
        self.con = duckdb.connect()

    # -- header -----------------------------------------------------------------

    def _set_header(self, line: int, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8").removeprefix("\ufeff").rstrip("\r")
        except UnicodeDecodeError:
            raise FileRejected("invalid_header", f"{self.path}: line {line}: the header row is not valid UTF-8") from None
        try:
            rows = list(csv.reader(io.StringIO(text), strict=True))
        except csv.Error as exc:
            why = f"the header row is not valid CSV ({exc})"
            if "\r" in text:
                why = "lines end with CR only; CSV lines must end with LF or CRLF"
            raise FileRejected("invalid_header", f"{self.path}: line {line}: {why}") from None
        names = [n.strip() for n in rows[0]] if len(rows) == 1 else []
        if not names or not any(names):
            raise FileRejected("invalid_header", f"{self.path}: line {line}: the header row is not valid CSV")
        # An unnamed column (a trailing comma from a spreadsheet export): its cells,
        # if any, become the property `column_<n>`.
        names = [n or f"column_{i}" for i, n in enumerate(names, 1)]
        seen: dict[str, int] = {}
        for i, name in enumerate(names, 1):
            if name in seen:
                raise FileRejected(
                    "duplicate_column",
                    f"{self.path}: line {line}: column '{name}' appears twice in the header (columns {seen[name]} and {i})",
                )
            seen[name] = i
        missing = [c for c in self.feed.required_columns if c not in seen]
        if missing:
            raise FileRejected(
                "missing_column",
                f"{self.path}: required column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(c) for c in missing)} missing from the CSV header (columns: {', '.join(names)})",
            )
        self.header = names

    # -- reading ----------------------------------------------------------------

    def batches(self, head: bytes = b"") -> Iterator[pl.DataFrame]:
        pending = head.removeprefix(UTF8_BOM)
        line_no = 1
        eof = False
        try:
            while not eof:
                chunk = self.reader.read(self.settings.batch_bytes)
                eof = not chunk
                data = pending + chunk if pending else chunk
                if not data:
                    break
                consumed, out = self._process(data, line_no, eof)
                line_no += data.count(b"\n", 0, consumed)
                pending = data[consumed:]
                yield from out
        finally:
            self.con.close()

    def _process(self, data: bytes, line_no: int, eof: bool) -> tuple[int, list[pl.DataFrame]]:
        """The complete records of `data` (which starts at a record boundary, on
        line `line_no`); returns (bytes consumed, frames)."""
        out: list[pl.DataFrame] = []
        pos, passes, n = 0, 0, len(data)
        while pos < n:
            arr = np.frombuffer(data, dtype=np.uint8, offset=pos)
            base_line = line_no + data.count(b"\n", 0, pos)
            nl = np.flatnonzero(arr == NL)
            qpos = np.flatnonzero(arr == QUOTE)
            ends = nl[(np.searchsorted(qpos, nl) & 1) == 0].astype(np.int64)  # newlines that end a record
            if eof and len(qpos) % 2 == 0 and (len(ends) == 0 or ends[-1] != len(arr) - 1):
                ends = np.append(ends, len(arr))  # the last record has no newline
            starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)[: len(ends)]
            first_bad = self._first_malformed_quote(arr, qpos, eof)
            if first_bad is not None:
                keep = int(np.searchsorted(ends, first_bad))  # records before the malformed one
                starts, ends = starts[:keep], ends[:keep]
            if self.header is None:
                if len(starts) == 0:
                    if first_bad is None and not eof and len(arr) <= self.limit:
                        return pos, out  # the header row is not complete yet
                    why = "the header row is not valid CSV"
                    if NL not in arr[: self.limit] and CR in arr[: self.limit]:
                        why = "lines end with CR only; CSV lines must end with LF or CRLF"
                    raise FileRejected("invalid_header", f"{self.path}: line 1: {why}")
                self._set_header(base_line, bytes(arr[starts[0] : ends[0]]))
                if len(starts) == 1:
                    pos += min(len(arr), int(ends[0]) + 1)
                    continue
                starts, ends = starts[1:], ends[1:]
            if len(starts):
                out.append(self._fast_records(arr, starts, ends, base_line + np.searchsorted(nl, starts)))
            done = min(len(arr), int(ends[-1]) + 1) if len(ends) else 0
            rest = len(arr) - done
            if first_bad is None and rest == 0:
                return n, out
            if first_bad is None and not eof and rest <= self.limit:
                return pos + done, out  # an incomplete record: wait for the next read
            # Error path: from the first record that is not well formed, line by line.
            passes += 1
            # Back to the fast path right after the malformed record (or, for an
            # unterminated quote, right after its first line).
            stop_at = pos + (first_bad if first_bad is not None else done) if passes < MAX_SLOW_PASSES else None
            first_line = base_line + int(np.count_nonzero(nl < done))
            rows, used = self._slow_records(data, pos + done, first_line, eof, stop_at)
            if rows:
                out.append(self._rows_frame(rows))
            if used == 0:
                return pos + done, out
            pos += done + used
        return pos, out

    @staticmethod
    def _first_malformed_quote(arr: np.ndarray, qpos: np.ndarray, eof: bool) -> int | None:
        """Offset of the first quote that neither opens nor closes a field (RFC 4180)."""
        if not len(qpos):
            return None
        n = len(arr)
        ordinal = np.arange(len(qpos))
        prev = np.where(qpos > 0, arr[np.maximum(qpos - 1, 0)], NL)
        nxt = np.where(qpos + 1 < n, arr[np.minimum(qpos + 1, n - 1)], NL if eof else COMMA)
        opening = (ordinal & 1) == 0
        prev_is_quote = np.concatenate(([False], qpos[1:] == qpos[:-1] + 1))
        ok_open = (prev == COMMA) | (prev == NL) | prev_is_quote
        after_cr = np.where(qpos + 2 < n, arr[np.minimum(qpos + 2, n - 1)], NL)  # CR only as part of CRLF
        ok_close = (nxt == COMMA) | (nxt == NL) | ((nxt == CR) & (after_cr == NL)) | (nxt == QUOTE)
        bad = np.flatnonzero(np.where(opening, ~ok_open, ~ok_close))
        return int(qpos[bad[0]]) if len(bad) else None

    def _fast_records(self, arr: np.ndarray, starts: np.ndarray, ends: np.ndarray, lines: np.ndarray) -> pl.DataFrame:
        width = len(self.header)
        ends = ends - ((ends > starts) & (arr[np.maximum(ends - 1, 0)] == CR))  # CRLF
        lengths = ends - starts
        # Fields: commas outside quotes, per record.
        commas = np.flatnonzero(arr == COMMA)
        qpos = np.flatnonzero(arr == QUOTE)
        top = commas[(np.searchsorted(qpos, commas) & 1) == 0]
        rec_of = np.searchsorted(ends, top, side="left")
        in_rec = (rec_of < len(starts)) & (top >= starts[np.minimum(rec_of, len(starts) - 1)])
        fields = np.bincount(rec_of[in_rec], minlength=len(starts)) + 1
        # Raw text of every record: the records are contiguous in the buffer, so
        # one offsets array over it (zero copy); each value keeps its line end.
        offsets = np.concatenate((starts, [min(int(ends[-1]) + 1, len(arr))])).astype(np.int64)
        spans = pa.Array.from_buffers(
            pa.large_binary(), len(starts), [None, pa.py_buffer(offsets - offsets[0]), pa.py_buffer(arr[offsets[0] : offsets[-1]])]
        )
        frame = pl.DataFrame({"line": lines.astype(np.int64), "bytes": pl.from_arrow(spans), "fields": fields, "len": lengths})
        try:
            text = frame["bytes"].cast(pl.String)
            lossy = pl.lit(None, pl.String)
        except pl.exceptions.ComputeError:  # error path: find the records that are not UTF-8
            raw = frame["bytes"].to_list()
            decoded = [_decode(b) for b in raw]
            text = pl.Series(decoded, dtype=pl.String)
            lossy = pl.Series([b.decode("utf-8", "replace") if d is None else None for d, b in zip(decoded, raw)], dtype=pl.String)
            lossy = lossy.str.strip_suffix("\n").str.strip_suffix("\r")
        text = text.str.strip_suffix("\n").str.strip_suffix("\r")
        frame = frame.with_columns(raw=text, lossy=lossy).drop("bytes")
        frame = frame.filter(pl.col("raw").is_null() | (pl.col("raw").str.strip_chars().str.len_bytes() > 0))
        frame = frame.with_columns(
            error=pl.when(pl.col("len") > self.limit)
            .then(pl.lit("record_too_large"))
            .when(pl.col("raw").is_null())
            .then(pl.lit("invalid_utf8"))
            .when(pl.col("fields") != width)
            .then(pl.lit("wrong_field_count")),
            message=pl.when(pl.col("len") > self.limit)
            .then(pl.format("record of {} bytes exceeds the limit of {} bytes (INGEST_MAX_RECORD_BYTES)", "len", pl.lit(self.limit)))
            .when(pl.col("raw").is_null())
            .then(pl.lit("line is not valid UTF-8"))
            .when(pl.col("fields") != width)
            .then(pl.format("row has {} fields but the header has {}", "fields", pl.lit(width))),
        )
        good = frame.filter(pl.col("error").is_null())
        bad = frame.filter(pl.col("error").is_not_null()).select(
            "line", pl.coalesce("raw", "lossy").str.slice(0, RAW_PREVIEW_CHARS), "error", "message", json=pl.lit(None, pl.String)
        )
        if good.is_empty():
            return bad.cast(BATCH_SCHEMA)
        try:
            cells = pl.read_csv(
                io.BytesIO(_join_lines(good["raw"])),
                has_header=False,
                new_columns=[f"c{i}" for i in range(width)],
                schema={f"c{i}": pl.String for i in range(width)},
                quote_char='"',
                raise_if_empty=False,
            )
        except pl.exceptions.PolarsError:
            cells = None
        if cells is None or cells.height != good.height:
            # polars reads these records differently from the fast path's
            # boundaries: parse each record on its own (error path).
            rows = [
                (line, raw, None, None, fields)
                if fields is not None and len(fields) == width
                else _reject(line, raw, "malformed_csv", MALFORMED_MESSAGE)
                for line, raw in good.select("line", "raw").iter_rows()
                for fields in [_parse_one(raw)]
            ]
            return pl.concat([self._rows_frame(rows), bad.cast(BATCH_SCHEMA)]).sort("line")
        return pl.concat([self._with_json(good.select("line", "raw", "error", "message"), cells), bad]).cast(BATCH_SCHEMA)

    def _with_json(self, records: pl.DataFrame, cells: pl.DataFrame) -> pl.DataFrame:
        """Adds `json`: the row's non-empty cells as a JSON object of strings. The
        properties column (if any) is embedded as JSON when its cell is JSON; a
        feed with a properties object always gets one (`{}` without the column)."""
        props = self.feed.properties_field
        props_src = props.source if props is not None else None
        parts = []
        for i, name in enumerate(self.header):
            cell = pl.col(f"c{i}")
            if name == props_src:
                continue
            encoded = pl.struct(cell.alias(name)).struct.json_encode()
            parts.append(pl.when(cell.is_not_null() & (cell != "")).then(encoded.str.slice(1, encoded.str.len_chars() - 2)))
        if props_src is not None:
            value = pl.lit("{}")
            if props_src in self.header:
                col = f"c{self.header.index(props_src)}"
                is_json = self.con.sql(f"SELECT coalesce(json_valid({col}), false) AS ok FROM cells").pl()["ok"]
                cells = cells.with_columns(_is_json=is_json)
                cell = pl.col(col)
                encoded = pl.struct(cell.alias("v")).struct.json_encode()  # {"v":"..."}
                value = (
                    pl.when(cell.is_null() | (cell == ""))
                    .then(pl.lit("{}"))
                    .when("_is_json")
                    .then(cell)
                    .otherwise(encoded.str.slice(5, encoded.str.len_chars() - 6))
                )
            parts.append(pl.concat_str(pl.lit(json.dumps(props_src) + ":"), value))
        doc = pl.concat_str(pl.lit("{"), pl.concat_str(parts, separator=",", ignore_nulls=True), pl.lit("}"))
        return pl.concat([records, cells], how="horizontal").select(*records.columns, json=doc)

    def _rows_frame(self, rows: list[tuple]) -> pl.DataFrame:
        """Error-path records: (line, raw, error, message, fields | None)."""
        width = len(self.header)
        frame = pl.DataFrame(
            [r[:4] for r in rows], schema={"line": pl.Int64, "raw": pl.String, "error": pl.String, "message": pl.String}, orient="row"
        )
        good_idx = [i for i, r in enumerate(rows) if r[4] is not None]
        if not good_idx:
            return frame.with_columns(json=pl.lit(None, pl.String)).cast(BATCH_SCHEMA)
        cells = pl.DataFrame([rows[i][4] for i in good_idx], schema={f"c{i}": pl.String for i in range(width)}, orient="row")
        good = self._with_json(frame.filter(pl.col("error").is_null()), cells)
        bad = frame.filter(pl.col("error").is_not_null()).with_columns(json=pl.lit(None, pl.String))
        return pl.concat([good, bad]).sort("line").cast(BATCH_SCHEMA)

    def _slow_records(self, data: bytes, start: int, first_line: int, eof: bool, stop_at: int | None) -> tuple[list[tuple], int]:
        """Line by line with Python's csv module, from byte `start`. Returns the
        records and the bytes used; stops at the first record boundary after
        `stop_at` (or at the end of the complete lines)."""
        width = len(self.header)
        pieces = data[start:].split(b"\n")
        complete = len(pieces) if eof else len(pieces) - 1
        if eof and pieces[-1] == b"":
            complete -= 1
        rows: list[tuple] = []
        i = used = 0  # used: bytes of pieces[:i], newlines included
        while i < complete:
            if stop_at is not None and start + used > stop_at:
                break
            line = first_line + i
            text = _decode(pieces[i])
            if text is None:
                rows.append(_reject(line, pieces[i].decode("utf-8", "replace"), "invalid_utf8", "line is not valid UTF-8"))
                used += len(pieces[i]) + 1
                i += 1
                continue
            text = text.rstrip("\r")
            if not text.strip():
                used += len(pieces[i]) + 1
                i += 1
                continue
            parts, j, size, quotes = [text], i, len(text), text.count('"')
            while quotes % 2 and j + 1 < complete and size <= self.limit:
                nxt = _decode(pieces[j + 1])
                if nxt is None:
                    break
                j += 1
                nxt = nxt.rstrip("\r")
                parts.append(nxt)
                size += len(nxt) + 1
                quotes += nxt.count('"')
            if quotes % 2 and j + 1 >= complete and not eof and size <= self.limit:
                break  # the record continues in the next read
            record = "\n".join(parts)
            fields = _parse_one(record) if j > i else None
            if fields is not None and len(fields) == width:
                rows.append((line, record, None, None, fields))
                used += sum(len(p) + 1 for p in pieces[i : j + 1])
                i = j + 1
                continue
            if len(text.encode()) > self.limit:
                rows.append(
                    _reject(
                        line,
                        text,
                        "record_too_large",
                        f"record of {len(text.encode())} bytes exceeds the limit of {self.limit} bytes (INGEST_MAX_RECORD_BYTES)",
                    )
                )
            else:
                fields = _parse_one(text)
                if fields is None:
                    rows.append(_reject(line, text, "malformed_csv", MALFORMED_MESSAGE))
                elif len(fields) != width:
                    rows.append(_reject(line, text, "wrong_field_count", f"row has {len(fields)} fields but the header has {width}"))
                else:
                    rows.append((line, text, None, None, fields))
            used += len(pieces[i]) + 1
            i += 1
        return rows, used


def _parse_one(text: str) -> list[str] | None:
    """The fields of exactly one CSV record, or None when it is not one record."""
    try:
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def _decode(b: bytes) -> str | None:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _join_lines(raw: pl.Series) -> bytes:
    return (raw + "\n").str.join("").item().encode() if raw.len() else b""


def iter_csv_records(reader: DecodedReader, settings: Settings, path: str, feed: FeedSpec, head: bytes = b"") -> Iterator[pl.DataFrame]:
    yield from CsvRecords(reader, settings, path, feed).batches(head)
