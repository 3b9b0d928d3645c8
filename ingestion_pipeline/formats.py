"""The format registry: detect a landed file's format by name, decode it (gzip with a
size cap) and yield bounded batches of raw records, each with its line number.

A batch is a polars frame: `line` (1-based line, or record position in a JSON
document), `raw` (the record's text) and `error` / `message` for records that fail
before JSON parsing (invalid UTF-8, over the record-size limit).
"""

from __future__ import annotations

import hashlib
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import duckdb
import isal.igzip
import numpy as np
import polars as pl
import pyarrow as pa
from isal.igzip_lib import IsalError

from .settings import Settings
from .streams import FeedSpec

COMPRESSION_SUFFIXES = (".gz", ".gzip")
RAW_PREVIEW_CHARS = 2000
UTF8_BOM = b"\xef\xbb\xbf"
LINE_SCHEMA = {"line": pl.Int64, "raw": pl.String, "error": pl.String, "message": pl.String}


class FileRejected(Exception):
    """The whole file cannot be read; `rule` is a stable code, `message` says why."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class FileFormat:
    name: str  # "jsonl", "json" or "csv"
    compressed: bool

    @property
    def label(self) -> str:
        return self.name + (".gz" if self.compressed else "")


EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}


def detect_format(path: str) -> FileFormat:
    name = path.rsplit("/", 1)[-1].lower()
    compressed = name.endswith(COMPRESSION_SUFFIXES)
    if compressed:
        name = name[: name.rfind(".")]
    for ext, fmt in EXTENSIONS.items():
        if name.endswith(ext):
            return FileFormat(fmt, compressed)
    accepted = ", ".join(list(EXTENSIONS) + [e + ".gz" for e in EXTENSIONS])
    raise FileRejected("unsupported_format", f"{path}: unsupported file extension; accepted: {accepted} (or .gzip)")


class HashingReader(io.RawIOBase):
    """Passes bytes through while computing their sha256 (the file's content hash)."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.sha256.update(data)
        return n

    def drain(self) -> None:
        """Hash whatever the decoder did not need to read."""
        while chunk := self._raw.read(1 << 20):
            self.sha256.update(chunk)


class DecodedReader:
    """The decoded bytes of a landed file, with the decoded-size cap enforced."""

    def __init__(self, raw: BinaryIO, fmt: FileFormat, settings: Settings, path: str):
        self.hashing = HashingReader(raw)
        buffered = io.BufferedReader(self.hashing, buffer_size=1 << 20)
        self._stream = isal.igzip.IGzipFile(fileobj=buffered, mode="rb") if fmt.compressed else buffered
        self._limit = settings.max_decoded_bytes
        self._path = path
        self._compressed = fmt.compressed
        self.decoded = 0

    def read(self, n: int) -> bytes:
        try:
            data = self._stream.read(n)
        except (EOFError, OSError, zlib.error, IsalError) as exc:
            raise FileRejected(
                "corrupt_gzip", f"{self._path}: gzip stream is corrupt or truncated after {self.decoded} decoded bytes ({exc})"
            ) from exc
        self.decoded += len(data)
        if self.decoded > self._limit:
            raise FileRejected(
                "decoded_size_limit",
                f"{self._path}: decoded size exceeds the limit of {self._limit} bytes (INGEST_MAX_DECODED_BYTES); file refused",
            )
        return data

    def sha256(self) -> str:
        self.hashing.drain()
        return self.hashing.sha256.hexdigest()


def _lines_frame(first_line: int, data: bytes, ends: np.ndarray, max_record_bytes: int) -> pl.DataFrame:
    """Split `data` at the newline offsets `ends` (each line keeps its newline)."""
    offsets = np.concatenate(([0], ends + 1)).astype(np.int64)
    n = len(ends)
    binary = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    lengths = np.diff(offsets) - 1
    frame = pl.DataFrame({"line": np.arange(first_line, first_line + n, dtype=np.int64), "bytes": pl.from_arrow(binary), "len": lengths})
    try:
        text = frame["bytes"].cast(pl.String)
    except pl.exceptions.ComputeError:
        # Error path: at least one line is not UTF-8; decode line by line to find it.
        raw = frame["bytes"].to_list()
        decoded = [_decode_or_none(b) for b in raw]
        text = pl.Series(decoded, dtype=pl.String)
        # The raw text of a line that is not UTF-8, with U+FFFD for the bad bytes.
        lossy = [b[: RAW_PREVIEW_CHARS * 4].decode("utf-8", "replace") if d is None else None for d, b in zip(decoded, raw)]
        frame = frame.with_columns(lossy=pl.Series(lossy, dtype=pl.String))
    else:
        frame = frame.with_columns(lossy=pl.lit(None, pl.String))
    frame = frame.with_columns(text=text).drop("bytes")
    too_large = pl.col("len") > max_record_bytes
    bad_utf8 = pl.col("text").is_null()
    return frame.select(
        "line",
        raw=pl.when(bad_utf8)
        .then(pl.col("lossy"))
        .otherwise(pl.col("text").str.slice(0, pl.when(too_large).then(RAW_PREVIEW_CHARS).otherwise(None)))
        .str.strip_suffix("\n")
        .str.strip_suffix("\r"),
        error=pl.when(too_large).then(pl.lit("record_too_large")).when(bad_utf8).then(pl.lit("invalid_utf8")),
        message=pl.when(too_large)
        .then(pl.format("record of {} bytes exceeds the limit of {} bytes (INGEST_MAX_RECORD_BYTES)", "len", pl.lit(max_record_bytes)))
        .when(bad_utf8)
        .then(pl.lit("line is not valid UTF-8")),
    ).filter(pl.col("error").is_not_null() | (pl.col("raw").str.strip_chars().str.len_bytes() > 0))


def _decode_or_none(b: bytes) -> str | None:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


def iter_line_batches(reader: DecodedReader, settings: Settings, head: bytes = b"") -> Iterator[pl.DataFrame]:
    """JSON lines: batches of at most ~settings.batch_bytes of complete lines.

    A line longer than the record limit is never held whole: it is skipped up to its
    newline and reported as `record_too_large` with a preview of its start.
    """
    line_no = 1
    pending = head
    oversize_preview: bytes | None = None  # start of a line being skipped
    oversize_len = 0
    eof = False
    while not eof:
        chunk = reader.read(settings.batch_bytes)
        eof = not chunk
        buf = pending + chunk if pending else chunk
        pending = b""
        if eof and (buf or oversize_preview is not None) and not buf.endswith(b"\n"):
            buf += b"\n"
        if oversize_preview is not None:
            nl = buf.find(b"\n")
            if nl < 0:
                oversize_len += len(buf)
                continue
            oversize_len += nl
            yield pl.DataFrame(
                {
                    "line": [line_no],
                    "raw": [oversize_preview[:RAW_PREVIEW_CHARS].decode("utf-8", "replace")],
                    "error": ["record_too_large"],
                    "message": [
                        f"record of at least {oversize_len} bytes exceeds the limit of "
                        f"{settings.max_record_bytes} bytes (INGEST_MAX_RECORD_BYTES)"
                    ],
                },
                schema=LINE_SCHEMA,
            )
            line_no += 1
            oversize_preview = None
            buf = buf[nl + 1 :]
        if not buf:
            continue
        arr = np.frombuffer(buf, dtype=np.uint8)
        ends = np.flatnonzero(arr == 10)
        last = int(ends[-1]) + 1 if len(ends) else 0
        tail = buf[last:]
        if len(tail) > settings.max_record_bytes:
            oversize_preview, oversize_len = tail[:RAW_PREVIEW_CHARS], len(tail)
        else:
            pending = tail
        if len(ends):
            yield _lines_frame(line_no, buf[:last], ends, settings.max_record_bytes)
            line_no += len(ends)


def iter_document_records(doc: bytes, path: str, accepted: tuple[str, ...], max_record_bytes: int) -> pl.DataFrame | None:
    """Records of a `.json` document (an array, or the upload payload
    {"stream": ..., "data": [...]}), or None when the text is JSON lines instead."""
    text = _decode_or_none(doc)
    stripped = doc.lstrip()
    if text is None or stripped[:1] not in (b"[", b"{"):
        return None
    con = duckdb.connect()
    try:
        if not con.execute("SELECT json_valid(?)", [text]).fetchall()[0][0]:
            return None
        kind, declared, data_type = con.execute(
            "SELECT json_type(j), CASE WHEN json_type(j) = 'OBJECT' THEN json_extract_string(j, '$.stream') END,"
            " CASE WHEN json_type(j) = 'OBJECT' THEN json_type(j, '$.data') END FROM (SELECT ?::JSON AS j)",
            [text],
        ).fetchall()[0]
        if kind == "OBJECT":
            if data_type is None:
                return None  # a single JSON object: one line of JSON lines
            if data_type != "ARRAY":
                raise FileRejected("invalid_document", f"{path}: field 'data' of the JSON document must be an array")
            if declared is not None and declared not in accepted:
                raise FileRejected(
                    "stream_mismatch",
                    f"{path}: document declares stream '{declared}' but landed under the '{path.partition('/')[0]}/' "
                    f"folder, which takes '{accepted[0]}' records",
                )
            path_expr = "$.data"
        else:
            path_expr = "$"
        records = con.sql(
            "SELECT (rowid + 1)::BIGINT AS line, value::VARCHAR AS raw FROM json_each(?::JSON, ?) ORDER BY rowid",
            params=[text, path_expr],
        ).pl()
    finally:
        con.close()
    size = pl.col("raw").str.len_bytes()
    too_large = size > max_record_bytes
    return records.select(
        "line",
        raw=pl.when(too_large).then(pl.col("raw").str.slice(0, RAW_PREVIEW_CHARS)).otherwise("raw"),
        error=pl.when(too_large).then(pl.lit("record_too_large")),
        message=pl.when(too_large).then(
            pl.format("record of {} bytes exceeds the limit of {} bytes (INGEST_MAX_RECORD_BYTES)", size, pl.lit(max_record_bytes))
        ),
    ).cast(LINE_SCHEMA)


SNIFF_BYTES = 8192
# UTF-32 first: its little-endian mark starts with UTF-16's.
OTHER_ENCODING_BOMS = (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", b"\xff\xfe", b"\xfe\xff")


def _sniff(head: bytes, path: str) -> None:
    """Whole-file rejections decided by the first bytes: other encodings, binary."""
    if head.startswith(OTHER_ENCODING_BOMS):
        raise FileRejected("unsupported_encoding", f"{path}: file is UTF-16 or UTF-32 encoded (byte-order mark); only UTF-8 is accepted")
    nul = head.find(b"\x00", 0, SNIFF_BYTES)
    if nul >= 0:
        raise FileRejected(
            "binary_file",
            f"{path}: file is not text (NUL byte at offset {nul}); expected UTF-8 JSON or CSV (UTF-16 text also looks like this)",
        )


def iter_records(reader: DecodedReader, fmt: FileFormat, settings: Settings, path: str, feed: FeedSpec) -> Iterator[pl.DataFrame]:
    """Batches of raw records of a file, whatever its format. A leading UTF-8
    byte-order mark is not part of the first record."""
    head = reader.read(SNIFF_BYTES)
    _sniff(head, path)
    if fmt.name == "csv":
        from .csv_records import iter_csv_records

        yield from iter_csv_records(reader, settings, path, feed, head=head)
        return
    head = head.removeprefix(UTF8_BOM)
    if fmt.name == "json":
        # Read in batches so the decoded-size cap stops a gzip bomb early.
        parts, size = [head], len(head)
        while size <= settings.max_document_bytes:
            more = reader.read(min(settings.batch_bytes, settings.max_document_bytes + 1 - size))
            if not more:
                break
            parts.append(more)
            size += len(more)
        head = b"".join(parts)
        del parts
        if len(head) <= settings.max_document_bytes:
            # The declared stream may name the stream or the folder (`identify`).
            records = iter_document_records(head, path, (feed.stream.name, feed.folder), settings.max_record_bytes)
            if records is not None:
                yield records
                return
    yield from iter_line_batches(reader, settings, head=head)
