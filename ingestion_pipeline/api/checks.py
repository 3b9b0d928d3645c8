"""What the API checks before anything lands, with the pipeline's own reader, parser
and validator, so a payload accepted here reads the same way when it is ingested:

- upload-json: the whole payload, every record (any invalid record refuses it);
- confirm-upload: the gzip header and the first records of the upload (refused
  only when none of them is valid: the pipeline rejects bad records one by one)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

import polars as pl

from ..formats import DecodedReader, FileFormat, FileRejected, iter_document_records, iter_records
from ..parse import JsonParser
from ..settings import Settings
from ..streams import FEEDS, STREAMS
from ..validate import Validator
from .errors import ApiError
from .keys import API_STREAMS

MAX_REPORTED_ERRORS = 100
GZIP_MAGIC = b"\x1f\x8b"
SAMPLE_BYTES = 1024 * 1024  # decoded bytes of an upload checked at confirmation
SAMPLE_LINES = 1000


def check_records(stream: str, lines: pl.DataFrame, landed_at: datetime) -> tuple[int, pl.DataFrame]:
    """(number of valid records, rejects sorted by line) of raw records of a stream."""
    parser = JsonParser(STREAMS[stream])
    try:
        parsed = parser.parse(lines)
    finally:
        parser.close()
    valid, rejects = Validator(STREAMS[stream]).validate(parsed, landed_at)
    return valid.height, rejects.sort("line", nulls_last=False)


def _reject(message: str, error_code: str = "invalid_payload") -> ApiError:
    return ApiError(422, error_code, message)


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def check_json_upload(body: bytes, settings: Settings) -> tuple[str, int]:
    """(stream, record count) of a valid upload-json body; ApiError 422 otherwise."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _reject(f"request body is not valid UTF-8 (byte {exc.start})", "invalid_json") from None
    try:
        payload = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise _reject(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "invalid_json") from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise _reject(f"request body is not valid JSON: {reason}", "invalid_json") from None
    accepted = ", ".join(API_STREAMS)
    if not isinstance(payload, dict):
        raise _reject('request body must be a JSON object {"stream": ..., "data": [...]}')
    stream = payload.get("stream")
    if "stream" not in payload:
        raise _reject(f"field 'stream' is required: one of {accepted}")
    if not isinstance(stream, str) or stream not in API_STREAMS:
        shown = json.dumps(stream)[:100]
        raise _reject(f"field 'stream' must be one of {accepted}, got {shown}", "unknown_stream")
    data = payload.get("data")
    if not isinstance(data, list):
        raise _reject("field 'data' is required and must be an array of records")
    if not data:
        raise _reject("field 'data' is empty: send at least one record", "empty_data")
    try:
        # The document as the pipeline will read the landed file.
        records = iter_document_records(body, f"{stream}/upload.json", (stream,), settings.max_record_bytes)
    except FileRejected as exc:
        raise _reject(exc.message.split(": ", 1)[-1], exc.rule) from None
    if records is None or records.height != len(data):
        raise _reject("request body is not a JSON document the pipeline can read")
    valid, rejects = check_records(stream, records, datetime.now(UTC))
    if rejects.height:
        errors = [
            {"index": line - 1, "field": field, "rule": rule, "message": message}
            for line, field, rule, message in rejects.head(MAX_REPORTED_ERRORS).select("line", "field", "rule", "message").iter_rows()
        ]
        raise ApiError(
            422,
            "invalid_records",
            f"{rejects.height} of {len(data)} record(s) are invalid for stream '{stream}'; nothing was written"
            + (f" (first {MAX_REPORTED_ERRORS} listed)" if rejects.height > MAX_REPORTED_ERRORS else ""),
            errors=errors,
            error_count=rejects.height,
        )
    return stream, valid


@dataclass(frozen=True)
class SampleCheck:
    records: int  # records checked
    valid: int
    first_error: str | None


def describe_reject(line, field, rule, message) -> str:
    where = f"line {line}" if line is not None else "file"
    if field:
        where += f", field '{field}'"
    return f"{where}: {rule}: {message}"


def check_upload_sample(raw: BinaryIO, file_key: str, stream: str, settings: Settings) -> SampleCheck:
    """Checks a gzip JSON lines upload from its first bytes: gzip magic, then the
    first records (up to SAMPLE_BYTES decoded / SAMPLE_LINES lines) must decode,
    and at least one of them must be valid. ApiError 422 otherwise."""
    magic = raw.read(2)
    if magic != GZIP_MAGIC:
        raise _reject(
            f"{file_key}: the upload is not gzip-compressed (it starts with {magic.hex() or 'nothing'}, not 1f8b); "
            "compress the JSON lines file with gzip and upload it again",
            "not_gzip",
        )
    reader = DecodedReader(_Prefixed(magic, raw), FileFormat("jsonl", compressed=True), settings, file_key)
    limit = max(SAMPLE_BYTES, settings.max_record_bytes + 1)
    buf = bytearray()
    eof = False
    try:
        while len(buf) <= limit:
            chunk = reader.read(limit + 1 - len(buf))
            if not chunk:
                eof = True
                break
            buf += chunk
        if not eof:
            cut = buf.rfind(b"\n")
            if cut < 0:
                raise FileRejected(
                    "record_too_large",
                    f"{file_key}: line 1 is longer than {limit} bytes, over the record limit of "
                    f"{settings.max_record_bytes} bytes (INGEST_MAX_RECORD_BYTES)",
                )
            del buf[cut + 1 :]
        fmt = FileFormat("jsonl", compressed=False)
        sample = DecodedReader(io.BytesIO(bytes(buf)), fmt, settings, file_key)
        frames = list(iter_records(sample, fmt, settings, file_key, FEEDS[stream]))
    except FileRejected as exc:
        raise _reject(exc.message, exc.rule) from None
    lines = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    if lines.is_empty():
        raise _reject(f"{file_key}: the upload has no records (an empty JSON lines file)", "empty_file")
    lines = lines.sort("line").head(SAMPLE_LINES)
    valid, rejects = check_records(stream, lines, datetime.now(UTC))
    first = describe_reject(*rejects.row(0)[:4]) if rejects.height else None
    if valid == 0:
        errors = [
            {"line": line, "field": field, "rule": rule, "message": message}
            for line, field, rule, message in rejects.head(MAX_REPORTED_ERRORS).select("line", "field", "rule", "message").iter_rows()
        ]
        raise ApiError(
            422,
            "invalid_records",
            f"{file_key}: none of the first {lines.height} record(s) is a valid '{stream}' record; first error: {first}",
            errors=errors,
            error_count=rejects.height,
        )
    return SampleCheck(records=lines.height, valid=valid, first_error=first)


class _Prefixed(io.RawIOBase):
    """A stream with bytes already read from it put back in front."""

    def __init__(self, head: bytes, raw: BinaryIO):
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._raw.read(n)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)
