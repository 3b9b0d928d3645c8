"""The bad-input corpus: landed files built in Python, each with its expected outcome.

Every case is one file, landed alone at LANDED_AT in a fresh landing folder and
warehouse. The expectations follow SPEC.md sections 1-3:

- `status` and `counts` = (rows_read, rows_loaded, rows_rejected, rows_duplicate)
  of the file's `ingested_files` row;
- `first_error`: a prefix of that row's `first_error` (`line N, field 'f': rule: ...`
  for a record, `file: rule: ...` for a whole-file rejection), None when no error;
- `rejects`: the file's `rejected_records` rows as (line, field, rule), in line order
  (line None for a whole-file rejection);
- `keys`: the keys of the file's good records, i.e. exactly the rows of the stream's
  current-state table (the warehouse is fresh);
- `values`: extra (SQL, rows) checks on the tables.

Usage: python -m ingestion_pipeline_tests.corpus.cases OUTDIR
writes every file under OUTDIR/<landing path> and the expectations to
OUTDIR/_expected.json (a name the pipeline ignores).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

MIB = 1024 * 1024
LANDED_AT = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
DAY = date(2026, 11, 20)

# landing folder -> (stream, current-state table, SQL of the key of a row)
FOLDERS = {
    "contact": ("contact", "contacts", "contact_id"),
    "identify": ("contact", "contacts", "contact_id"),
    "account": ("account", "accounts", "account_id"),
    "group": ("account", "accounts", "account_id"),
    "contact_event": ("contact_event", "contact_events", "event_id"),
    # track/: event_id is a derived hash; name the event by contact and event text.
    "track": ("contact_event", "contact_events", "contact_id || '|' || event"),
    "account_event": ("account_event", "account_events", "event_id"),
    "crm": ("crm", "crm_leads", "email || '|' || account"),
}


@dataclass(frozen=True)
class Case:
    id: str
    path: str  # landing path; its top folder is the feed
    data: bytes | Callable[[], bytes]
    status: str
    counts: tuple[int, int, int, int]  # rows_read, rows_loaded, rows_rejected, rows_duplicate
    first_error: str | None  # prefix of ingested_files.first_error
    rejects: tuple[tuple[int | None, str | None, str], ...] = ()
    keys: tuple[str, ...] = ()
    settings: tuple[tuple[str, int], ...] = ()  # Settings overrides
    values: tuple[tuple[str, list], ...] = ()  # (SQL, expected rows)
    error_contains: str = ""  # substring of first_error
    bug: str | None = None  # a known contradiction of the contract: xfail(strict)

    @property
    def folder(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def stream(self) -> str:
        return FOLDERS[self.folder][0]

    @property
    def table(self) -> str:
        return FOLDERS[self.folder][1]

    @property
    def key_sql(self) -> str:
        return FOLDERS[self.folder][2]

    def content(self) -> bytes:
        return self.data() if callable(self.data) else self.data


# -- building blocks --------------------------------------------------------------


def line(record) -> bytes:
    if isinstance(record, bytes):
        return record
    if isinstance(record, str):
        return record.encode()
    return json.dumps(record, ensure_ascii=False).encode()


def jl(*records, eol: bytes = b"\n", final_newline: bool = True) -> bytes:
    """JSON lines: dicts are dumped, str/bytes are taken verbatim."""
    body = eol.join(line(r) for r in records)
    return body + eol if final_newline else body


def csv_text(*rows: str, eol: str = "\n") -> bytes:
    return (eol.join(rows) + eol).encode()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def c(cid, email=None, props=None, **extra) -> dict:
    """A contact record (API shape)."""
    return {
        "contact_id": cid,
        "email": email if email is not None else f"{str(cid).lower()}@example.com",
        "contact_properties": props if props is not None else {},
        **extra,
    }


def ev(eid, cid="c1", name="login", ts="2026-11-20T10:00:00Z", props=None, **extra) -> dict:
    """A contact_event record (API shape)."""
    return {
        "event_id": eid,
        "contact_id": cid,
        "event": name,
        "event_timestamp": ts,
        "event_properties": props if props is not None else {},
        **extra,
    }


def without(record: dict, *keys: str) -> dict:
    return {k: v for k, v in record.items() if k not in keys}


def contacts(n: int, prefix: str = "c") -> bytes:
    return jl(*(c(f"{prefix}{i}", props={"i": i, "pad": "x" * 40}) for i in range(1, n + 1)))


@functools.cache
def gzip_bomb(decoded_bytes: int = 200 * MIB, prefix: bytes = b"") -> bytes:
    """`prefix`, then `decoded_bytes` of spaces and newlines, gzipped 1 MiB at a time
    (the decoded text is never held whole: the result is about 0.2% of its size)."""
    chunk = (b" " * 1023 + b"\n") * 1024
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(prefix)
        for _ in range(decoded_bytes // len(chunk)):
            f.write(chunk)
    return out.getvalue()


def csv_gzip_bomb() -> bytes:
    return gzip_bomb(prefix=b"contact_id,email\nc1,c1@example.com\n")


def json_gzip_bomb() -> bytes:
    return gzip_bomb(prefix=b'{"stream": "contact", "data": [')


def _truncated_gzip() -> bytes:
    data = gz(contacts(3000))
    return data[: len(data) // 2]


def _bad_crc_gzip() -> bytes:
    data = bytearray(gz(contacts(3)))
    data[-8] ^= 0xFF  # first byte of the CRC32 in the trailer
    return bytes(data)


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _deep_objects(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


# Reference document 001, section 3.3: a double quote that is not escaped.
TRACK_UNESCAPED = '{"event_text":"signed up", "event_timestamp":1234567890, "contact_key":"abc1234", "key": "val"ue"}'
TRACK_ESCAPED = '{"event_text":"signed up", "event_timestamp":1234567890, "contact_key":"abc1234", "key": "val\\"ue"}'
TRACK_OTHER = (
    '{"event_text":"added a friend", "event_timestamp":1234567890, "contact_key":"paul@madkudu.com", "some_other_event_field":"some_value"}'
)

FILE = None  # the field of a whole-file rejection
REJECTED_WHOLE = (0, 0, 0, 0)


def whole(case_id: str, path: str, data, rule: str, **kw) -> Case:
    """A file refused as a whole: nothing read, one rejected_records row without a line."""
    return Case(case_id, path, data, "rejected", REJECTED_WHOLE, f"file: {rule}: ", ((None, FILE, rule),), **kw)


# -- the corpus -------------------------------------------------------------------

CASES: list[Case] = [
    # ---------------------------------------------------------------- JSON parsing
    Case(
        "jsonl_malformed_json",
        "contact/malformed.jsonl",
        jl(
            c("c1"),
            "{not json",
            '{"contact_id": "c3", "email": "c3@example.com"',  # truncated
            "{'contact_id': 'c4', 'email': 'c4@example.com', 'contact_properties': {}}",  # single quotes
            '{"contact_id": "c5", /* comment */ "email": "c5@example.com", "contact_properties": {}}',
            '{"contact_id": "c6", "email": "c6@example.com", "contact_properties": {}} trailing',
            '{"contact_id": "c7", "email": "c7@example.com", "contact_properties": {}}{"contact_id": "c8"}',
            '{"contact_id": "c8", "email": "c8@example.com", "contact_properties": {"x": "tab\there"}}',  # raw control char
            '{"contact_id": c9, "email": "c9@example.com", "contact_properties": {}}',  # unquoted value
            c("c10"),
        ),
        "partially_loaded",
        (10, 2, 8, 0),
        "line 2: invalid_json: record is not valid JSON",
        tuple((n, None, "invalid_json") for n in range(2, 10)),
        keys=("c1", "c10"),
    ),
    Case(
        "jsonl_trailing_commas",
        "contact/trailing_commas.jsonl",
        jl(
            c("c1"),
            '{"contact_id": "c2", "email": "c2@example.com", "contact_properties": {},}',
            '{"contact_id": "c3", "email": "c3@example.com", "contact_properties": {"tags": ["a",]}}',
            c("c4"),
        ),
        "partially_loaded",
        (4, 2, 2, 0),
        "line 2: invalid_json: record is not valid JSON",
        ((2, None, "invalid_json"), (3, None, "invalid_json")),
        keys=("c1", "c4"),
    ),
    Case(
        "track_unescaped_quote_reference_3_3",
        "track/validation.json",
        jl(TRACK_ESCAPED, TRACK_UNESCAPED, TRACK_OTHER),
        "partially_loaded",
        (3, 2, 1, 0),
        "line 2: invalid_json: record is not valid JSON",
        ((2, None, "invalid_json"),),
        keys=("abc1234|signed up", "paul@madkudu.com|added a friend"),
        values=(
            (
                "select contact_id, properties, _source_line from contact_events order by contact_id",
                [("abc1234", '{"key":"val\\"ue"}', 1), ("paul@madkudu.com", '{"some_other_event_field":"some_value"}', 3)],
            ),
            ("select raw from rejected_records", [(TRACK_UNESCAPED,)]),
        ),
    ),
    Case(
        "jsonl_not_an_object",
        "contact/scalars.jsonl",
        jl(c("c1"), "[1, 2]", '"hello"', "42", "null", "true", json.dumps([c("c7")]), c("c8")),
        "partially_loaded",
        (8, 2, 6, 0),
        "line 2: not_an_object: ",
        tuple((n, None, "not_an_object") for n in range(2, 8)),
        keys=("c1", "c8"),
    ),
    Case(
        "jsonl_nan_and_infinity",
        "contact/nan.jsonl",
        jl(
            '{"contact_id": "c1", "email": "c1@example.com", "contact_properties": {"score": NaN}}',
            '{"contact_id": "c2", "email": "c2@example.com", "contact_properties": {"score": Infinity}}',
            '{"contact_id": "c3", "email": "c3@example.com", "contact_properties": {"score": -Infinity}}',
            # The words inside strings are fine.
            c("c5", props={"note": "ratio: NaN, Infinity]", "x": "NaN"}),
            '{"contact_id": "c6", "email": "c6@example.com", "contact_properties": {"NaN": -1.5}}',
        ),
        "partially_loaded",
        (5, 2, 3, 0),
        "line 1: invalid_json: record is not valid JSON",
        tuple((n, None, "invalid_json") for n in range(1, 4)),
        keys=("c5", "c6"),
        values=(
            (
                "select contact_id, properties from contacts order by 1",
                [("c5", '{"note":"ratio: NaN, Infinity]","x":"NaN"}'), ("c6", '{"NaN":-1.5}')],
            ),
        ),
    ),
    Case(
        "jsonl_lowercase_nan_and_inf",
        "contact/lower_nan.jsonl",
        jl(
            c("c1"),
            '{"contact_id": "c2", "email": "c2@example.com", "contact_properties": {"score": nan}}',
            '{"contact_id": "c3", "email": "c3@example.com", "contact_properties": {"score": -inf}}',
            '{"contact_id": "c4", "email": "c4@example.com", "contact_properties": {"score": inf}}',
            '{"contact_id": "c5", "email": "c5@example.com", "contact_properties": {"score": -infinity}}',
            c("c6"),
        ),
        "partially_loaded",
        (6, 2, 4, 0),
        "line 2: invalid_json: record is not valid JSON",
        tuple((n, None, "invalid_json") for n in range(2, 6)),
        keys=("c1", "c6"),
    ),
    Case(
        "json_array_with_a_nan_element",
        "contact/nan_array.json",
        b"["
        + line(c("c1"))
        + b', {"contact_id": "c2", "email": "c2@example.com", "contact_properties": {"s": NaN}}, '
        + line(c("c3"))
        + b"]",
        "partially_loaded",
        (3, 2, 1, 0),
        "line 2: invalid_json: ",
        ((2, None, "invalid_json"),),
        keys=("c1", "c3"),
    ),
    Case(
        "jsonl_nul_byte_after_the_first_8_kb",
        "contact/late_nul.jsonl",
        contacts(100) + b'{"contact_id": "bad\x00", "email": "z@example.com", "contact_properties": {}}\n' + jl(c("last")),
        "partially_loaded",
        (102, 101, 1, 0),
        "line 101: invalid_json: ",
        ((101, None, "invalid_json"),),
        keys=tuple(sorted([f"c{i}" for i in range(1, 101)] + ["last"])),
    ),
    Case(
        "event_nan_timestamp",
        "contact_event/nan.jsonl",
        jl(
            ev("e1"),
            '{"event_id": "e2", "contact_id": "c1", "event": "login", "event_timestamp": NaN, "event_properties": {}}',
            '{"event_id": "e3", "contact_id": "c1", "event": "login", "event_timestamp": Infinity, "event_properties": {}}',
        ),
        "partially_loaded",
        (3, 1, 2, 0),
        "line 2: invalid_json: ",
        ((2, None, "invalid_json"), (3, None, "invalid_json")),
        keys=("e1",),
    ),
    Case(
        "jsonl_duplicate_keys_last_wins",
        "contact/dupkeys.jsonl",
        jl(
            '{"contact_id": "c1", "email": "first@example.com", "email": "last@example.com", "contact_properties": {"a": 1, "a": 2}}',
            '{"contact_id": "c2", "email": 12, "email": "ok@example.com", "contact_properties": {}}',
            '{"contact_id": "c3", "email": "ok@example.com", "email": 12, "contact_properties": {}}',
            '{"contact_id": "null", "contact_id": "c4", "email": "c4@example.com", "contact_properties": {}}',
            '{"contact_id": "c5", "email": "c5@example.com", "contact_properties": {"a": 1}, "contact_properties": "oops"}',
            '{"contact_id": "c6", "contact_id": "undefined", "email": "c6@example.com", "contact_properties": {}}',
        ),
        "partially_loaded",
        (6, 3, 3, 0),
        "line 3, field 'email': invalid_type: ",
        ((3, "email", "invalid_type"), (5, "contact_properties", "invalid_type"), (6, "contact_id", "junk_identifier")),
        keys=("c1", "c2", "c4"),
        values=(
            (
                "select contact_id, email, properties from contacts order by 1",
                [("c1", "last@example.com", '{"a":2}'), ("c2", "ok@example.com", "{}"), ("c4", "c4@example.com", "{}")],
            ),
        ),
    ),
    Case(
        "jsonl_deep_nesting_in_properties",
        "contact/deep.jsonl",
        jl(
            c("c1"),
            '{"contact_id": "c2", "email": "c2@example.com", "contact_properties": {"a": ' + _deep(5000) + "}}",
            '{"contact_id": "c3", "email": "c3@example.com", "contact_properties": ' + _deep_objects(5000) + "}",
            c("c4"),
        ),
        # Valid JSON: property values are kept as given (SPEC 2.4), however deep.
        "loaded",
        (4, 4, 0, 0),
        None,
        keys=("c1", "c2", "c3", "c4"),
        values=(
            (
                "select contact_id, length(properties), left(properties, 10) from contacts where contact_id in ('c2', 'c3') order by 1",
                [("c2", 10006, '{"a":[[[[['), ("c3", 30001, '{"a":{"a":')],
            ),
        ),
    ),
    Case(
        "jsonl_blank_lines_keep_physical_line_numbers",
        "contact/gaps.jsonl",
        jl(c("c1"), "", "   ", "\t", "{broken", c("c6")),
        "partially_loaded",
        (3, 2, 1, 0),
        "line 5: invalid_json: ",
        ((5, None, "invalid_json"),),
        keys=("c1", "c6"),
        values=(("select contact_id, _source_line from contacts order by 1", [("c1", 1), ("c6", 6)]),),
    ),
    Case(
        "jsonl_bom_crlf_and_no_final_newline",
        "contact/bom_crlf.ndjson",
        b"\xef\xbb\xbf" + jl(c("c1"), c("c2"), c("c3"), eol=b"\r\n", final_newline=False),
        "loaded",
        (3, 3, 0, 0),
        None,
        keys=("c1", "c2", "c3"),
        values=(
            (
                "select contact_id, email, _source_line from contacts order by 1",
                [("c1", "c1@example.com", 1), ("c2", "c2@example.com", 2), ("c3", "c3@example.com", 3)],
            ),
        ),
    ),
    # ------------------------------------------------------- gzip and whole files
    whole("gzip_truncated_midstream", "contact/truncated.jsonl.gz", _truncated_gzip(), "corrupt_gzip"),
    whole("gzip_missing_trailer", "contact/no_trailer.jsonl.gz", gz(contacts(3))[:-4], "corrupt_gzip"),
    whole("gzip_bad_crc", "contact/bad_crc.jsonl.gz", _bad_crc_gzip(), "corrupt_gzip"),
    whole("gz_that_is_not_gzip", "contact/plain.jsonl.gz", contacts(3), "corrupt_gzip"),
    whole("gzip_ext_random_bytes_after_magic", "contact/garbage.csv.gzip", b"\x1f\x8b\x08\x00" + b"garbage" * 20, "corrupt_gzip"),
    whole(
        "gzip_bomb",
        "contact/bomb.jsonl.gz",
        gzip_bomb,
        "decoded_size_limit",
        settings=(("max_decoded_bytes", 50 * MIB),),
        error_contains="exceeds the limit of 52428800 bytes",
    ),
    whole(
        "gzip_bomb_csv_after_a_good_header",
        "contact/bomb.csv.gz",
        csv_gzip_bomb,
        "decoded_size_limit",
        settings=(("max_decoded_bytes", 50 * MIB),),
    ),
    whole(
        "gzip_bomb_json_document",
        "contact/bomb.json.gz",
        json_gzip_bomb,
        "decoded_size_limit",
        settings=(("max_decoded_bytes", 50 * MIB),),
    ),
    Case(
        "gzip_multi_member_loads_every_member",
        "contact/multi.jsonl.gz",
        gz(jl(c("c1"), c("c2"))) + gz(jl(c("c3"))),
        "loaded",
        (3, 3, 0, 0),
        None,
        keys=("c1", "c2", "c3"),
    ),
    Case(
        "gzip_dot_gzip_with_a_bad_line",
        "contact/ok.jsonl.gzip",
        gz(jl(c("c1"), "oops", c("c3"))),
        "partially_loaded",
        (3, 2, 1, 0),
        "line 2: invalid_json: ",
        ((2, None, "invalid_json"),),
        keys=("c1", "c3"),
    ),
    whole("empty_file", "contact/empty.jsonl", b"", "empty_file"),
    whole("empty_gzip", "contact/empty.jsonl.gz", gz(b""), "empty_file"),
    whole("whitespace_only_file", "contact/blank.ndjson", b"   \n\n\t \r\n  \n", "empty_file"),
    whole("binary_garbage_png", "contact/picture.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8, "binary_file"),
    whole("binary_nul_after_a_good_line", "contact/nul.jsonl", jl(c("c1")) + b'{"contact_id": "c2\x00"}\n', "binary_file"),
    whole(
        "utf16_with_bom",
        "contact/utf16.jsonl",
        jl(c("c1"), c("c2")).decode().encode("utf-16"),
        "unsupported_encoding",
    ),
    whole("utf16_without_bom", "contact/utf16le.jsonl", jl(c("c1"), c("c2")).decode().encode("utf-16-le"), "binary_file"),
    whole(
        "utf16_csv_with_bom",
        "contact/excel.csv",
        "contact_id,email\r\nc1,c1@example.com\r\n".encode("utf-16"),
        "unsupported_encoding",
    ),
    whole("utf32_le_with_bom", "contact/utf32le.jsonl", jl(c("c1")).decode().encode("utf-32"), "unsupported_encoding"),
    whole(
        "utf32_be_with_bom",
        "contact/utf32be.jsonl",
        b"\x00\x00\xfe\xff" + jl(c("c1")).decode().encode("utf-32-be"),
        "unsupported_encoding",
    ),
    whole("ext_txt", "contact/notes.txt", jl(c("c1")), "unsupported_format"),
    whole("ext_xml", "contact/export.xml", b'<?xml version="1.0"?><contacts><contact id="c1"/></contacts>\n', "unsupported_format"),
    whole("ext_parquet", "contact/export.parquet", b"PAR1\x15\x04\x15\x10\x15\x14L\x15\x02\x15\x00\x12\x00\x00PAR1", "unsupported_format"),
    whole("ext_zip", "contact/export.jsonl.zip", b"PK\x03\x04" + b"\x00" * 26, "unsupported_format"),
    whole("no_extension", "contact/2026/11/20/export", jl(c("c1")), "unsupported_format"),
    whole(
        "csv_semicolon_delimited",
        "contact/excel_eu.csv",
        csv_text("contact_id;email", "c1;c1@example.com"),
        "missing_column",
    ),
    Case(
        "csv_unterminated_quote_on_the_last_line",
        "contact/unterminated_last.csv",
        csv_text("contact_id,email,note", "c1,c1@example.com,ok", 'c2,c2@example.com,"never closed'),
        "partially_loaded",
        (2, 1, 1, 0),
        "line 3: malformed_csv: ",
        ((3, None, "malformed_csv"),),
        keys=("c1",),
    ),
    Case(
        "csv_stray_quotes_and_multiline_fields_across_small_batches",
        "contact/small_batches.csv",
        csv_text(
            "contact_id,email,h",
            *(f"c{i},c{i}@example.com,5'{i}\"" if i % 2 else f'c{i},c{i}@example.com,"multi\nline {i}, ok"' for i in range(1, 31)),
        ),
        "loaded",
        (30, 30, 0, 0),
        None,
        keys=tuple(f"c{i}" for i in range(1, 31)),
        settings=(("batch_bytes", 64),),
        values=(
            (
                "select contact_id, properties, _source_line from contacts where contact_id in ('c1', 'c2', 'c29', 'c30') order by _source_line",
                [
                    ("c1", '{"h":"5\'1\\""}', 2),
                    ("c2", '{"h":"multi\\nline 2, ok"}', 3),
                    ("c29", '{"h":"5\'29\\""}', 44),
                    ("c30", '{"h":"multi\\nline 30, ok"}', 45),
                ],
            ),
        ),
    ),
    Case(
        "jsonl_oversized_line_across_small_batches",
        "contact/oversized_batches.jsonl",
        jl(c("c1"), c("c2", props={"blob": "x" * 10000}), c("c3"), "{bad", c("c5")),
        "partially_loaded",
        (5, 3, 2, 0),
        "line 2: record_too_large: ",
        ((2, None, "record_too_large"), (4, None, "invalid_json")),
        keys=("c1", "c3", "c5"),
        settings=(("batch_bytes", 1000), ("max_record_bytes", 3000)),
        values=(("select contact_id, _source_line from contacts order by 2", [("c1", 1), ("c3", 3), ("c5", 5)]),),
    ),
    Case(
        "jsonl_multibyte_characters_split_across_batches",
        "contact/utf8_batches.jsonl",
        jl(*(c(f"c{i}", props={"n": "é" * i}) for i in range(1, 13))),
        "loaded",
        (12, 12, 0, 0),
        None,
        keys=tuple(f"c{i}" for i in range(1, 13)),
        settings=(("batch_bytes", 7),),
        values=(("select properties from contacts where contact_id = 'c12'", [('{"n":"' + "é" * 12 + '"}',)]),),
    ),
    # ------------------------------------------------------------- record limits
    Case(
        "invalid_utf8_on_one_line",
        "contact/latin1.jsonl",
        jl(c("c1"), json.dumps(c("c2", "josé@example.com"), ensure_ascii=False).encode("latin-1"), c("c3")),
        "partially_loaded",
        (3, 2, 1, 0),
        "line 2: invalid_utf8: ",
        ((2, None, "invalid_utf8"),),
        keys=("c1", "c3"),
    ),
    Case(
        "record_over_the_size_limit",
        "contact/big.jsonl",
        jl(c("c1"), c("c2", props={"blob": "x" * 5000}), c("c3")),
        "partially_loaded",
        (3, 2, 1, 0),
        "line 2: record_too_large: ",
        ((2, None, "record_too_large"),),
        keys=("c1", "c3"),
        settings=(("max_record_bytes", 1024),),
    ),
    Case(
        "record_over_the_size_limit_on_the_last_line_without_newline",
        "contact/big_tail.jsonl",
        jl(c("c1"), c("c2", props={"blob": "y" * 5000}), final_newline=False),
        "partially_loaded",
        (2, 1, 1, 0),
        "line 2: record_too_large: ",
        ((2, None, "record_too_large"),),
        keys=("c1",),
        settings=(("max_record_bytes", 1024),),
    ),
    Case(
        "csv_record_over_the_size_limit",
        "contact/big.csv",
        csv_text("contact_id,email,note", "c1,c1@example.com,short", "c2,c2@example.com," + "z" * 3000, "c3,c3@example.com,short"),
        "partially_loaded",
        (3, 2, 1, 0),
        "line 3: record_too_large: ",
        ((3, None, "record_too_large"),),
        keys=("c1", "c3"),
        settings=(("max_record_bytes", 512),),
    ),
    Case(
        "json_array_element_over_the_size_limit",
        "contact/big_array.json",
        json.dumps([c("c1"), c("c2", props={"blob": "x" * 5000}), c("c3")]).encode(),
        "partially_loaded",
        (3, 2, 1, 0),
        "line 2: record_too_large: ",
        ((2, None, "record_too_large"),),
        keys=("c1", "c3"),
        settings=(("max_record_bytes", 1024),),
    ),
    # ------------------------------------------------------------ field validation
    Case(
        "properties_not_an_object",
        "contact/props.jsonl",
        jl(
            c("c1", props={"ok": True}),
            {**c("c2"), "contact_properties": [1, 2]},
            {**c("c3"), "contact_properties": "plan=pro"},
            {**c("c4"), "contact_properties": None},
            {**c("c5"), "contact_properties": 5},
            without(c("c6"), "contact_properties"),
            {**c("c7"), "contact_properties": True},
        ),
        "partially_loaded",
        (7, 1, 6, 0),
        "line 2, field 'contact_properties': invalid_type: ",
        (
            (2, "contact_properties", "invalid_type"),
            (3, "contact_properties", "invalid_type"),
            (4, "contact_properties", "missing_field"),
            (5, "contact_properties", "invalid_type"),
            (6, "contact_properties", "missing_field"),
            (7, "contact_properties", "invalid_type"),
        ),
        keys=("c1",),
    ),
    Case(
        "contact_wrong_types",
        "contact/types.jsonl",
        jl(
            c("c1"),
            {**c("c2"), "email": 12345},
            {**c("c3"), "contact_properties": '{"plan": "pro"}'},
            {**c("c4"), "contact_id": True},
            {**c("c5"), "contact_id": {"id": "c5"}},
            {**c("c6"), "contact_id": ["c6"]},
            {**c("c7"), "email": ["c7@example.com"]},
            c(12345, "n@example.com"),  # a numeric id is accepted and turned into a string
        ),
        "partially_loaded",
        (8, 2, 6, 0),
        "line 2, field 'email': invalid_type: ",
        (
            (2, "email", "invalid_type"),
            (3, "contact_properties", "invalid_type"),
            (4, "contact_id", "invalid_type"),
            (5, "contact_id", "invalid_type"),
            (6, "contact_id", "invalid_type"),
            (7, "email", "invalid_type"),
        ),
        keys=("12345", "c1"),
    ),
    Case(
        "event_wrong_types",
        "contact_event/types.jsonl",
        jl(
            ev("e1"),
            ev("e2", ts={"t": 1763632800}),
            ev("e3", ts=[1763632800]),
            ev("e4", ts=True),
            ev("e5", name={"x": 1}),
            {**ev("e6"), "event_properties": "a=b"},
            ev(777),
        ),
        "partially_loaded",
        (7, 2, 5, 0),
        "line 2, field 'event_timestamp': invalid_type: ",
        (
            (2, "event_timestamp", "invalid_type"),
            (3, "event_timestamp", "invalid_type"),
            (4, "event_timestamp", "invalid_type"),
            (5, "event", "invalid_type"),
            (6, "event_properties", "invalid_type"),
        ),
        keys=("777", "e1"),
    ),
    Case(
        "contact_missing_required_fields",
        "contact/missing.jsonl",
        jl(
            c("c1"),
            without(c("c2"), "contact_id"),
            without(c("c3"), "email"),
            {**c("c4"), "email": None},
            {},
            {"contact_properties": {}},
        ),
        "partially_loaded",
        (6, 1, 5, 0),
        "line 2, field 'contact_id': missing_field: ",
        (
            (2, "contact_id", "missing_field"),
            (3, "email", "missing_field"),
            (4, "email", "missing_field"),
            (5, "contact_id", "missing_field"),
            (6, "contact_id", "missing_field"),
        ),
        keys=("c1",),
    ),
    Case(
        "event_missing_required_fields",
        "contact_event/missing.jsonl",
        jl(
            ev("e1"),
            without(ev("e2"), "event_id"),
            without(ev("e3"), "contact_id"),
            without(ev("e4"), "event"),
            without(ev("e5"), "event_timestamp"),
            without(ev("e6"), "event_properties"),
        ),
        "partially_loaded",
        (6, 1, 5, 0),
        "line 2, field 'event_id': missing_field: ",
        (
            (2, "event_id", "missing_field"),
            (3, "contact_id", "missing_field"),
            (4, "event", "missing_field"),
            (5, "event_timestamp", "missing_field"),
            (6, "event_properties", "missing_field"),
        ),
        keys=("e1",),
    ),
    Case(
        "required_field_empty_or_whitespace",
        "contact_event/empty_values.jsonl",
        jl(
            ev("e1"),
            ev(""),
            ev("   "),
            ev("e4", cid="\t"),
            ev("e5", name=""),
            ev("e6", name="  \n "),
            ev("e7", ts=""),
            ev("e8", ts=" "),
        ),
        "partially_loaded",
        (8, 1, 7, 0),
        "line 2, field 'event_id': missing_field: ",
        (
            (2, "event_id", "missing_field"),
            (3, "event_id", "missing_field"),
            (4, "contact_id", "missing_field"),
            (5, "event", "missing_field"),
            (6, "event", "missing_field"),
            (7, "event_timestamp", "missing_field"),
            (8, "event_timestamp", "missing_field"),
        ),
        keys=("e1",),
    ),
    Case(
        "junk_identifiers",
        "contact/junk.jsonl",
        jl(
            c("c1"),
            c("null", "a@example.com"),
            c("undefined", "b@example.com"),
            c("0", "c@example.com"),
            c("-1", "d@example.com"),
            c("anonymous", "e@example.com"),
            c("NONE", "f@example.com"),
            c(" Null ", "g@example.com"),
            c("Anonymous", "h@example.com"),
            c(0, "i@example.com"),
            c(-1, "j@example.com"),
            c("nullable", "k@example.com"),  # only the whole value is junk
        ),
        "partially_loaded",
        (12, 2, 10, 0),
        "line 2, field 'contact_id': junk_identifier: ",
        tuple((n, "contact_id", "junk_identifier") for n in range(2, 12)),
        keys=("c1", "nullable"),
    ),
    Case(
        "event_junk_identifiers",
        "contact_event/junk.jsonl",
        jl(ev("e1"), ev("e2", cid="undefined"), ev("null"), ev("e4", cid="anonymous"), ev("e5", cid=0)),
        "partially_loaded",
        (5, 1, 4, 0),
        "line 2, field 'contact_id': junk_identifier: ",
        (
            (2, "contact_id", "junk_identifier"),
            (3, "event_id", "junk_identifier"),
            (4, "contact_id", "junk_identifier"),
            (5, "contact_id", "junk_identifier"),
        ),
        keys=("e1",),
    ),
    Case(
        "invalid_email",
        "contact/emails.jsonl",
        jl(
            c("c1", " Ann@Example.COM "),
            c("c2", "not-an-email"),
            c("c3", "a@b"),
            c("c4", "a b@example.com"),
            c("c5", "@example.com"),
            c("c6", "a@@example.com"),
            c("c7", "ann@example.c"),
            c("c8", "ann@"),
        ),
        "partially_loaded",
        (8, 1, 7, 0),
        "line 2, field 'email': invalid_email: ",
        tuple((n, "email", "invalid_email") for n in range(2, 9)),
        keys=("c1",),
        values=(("select email from contacts", [("ann@example.com",)]),),
    ),
    Case(
        "timestamps_unparseable_future_and_before_1990",
        "contact_event/timestamps.jsonl",
        jl(
            ev("e1", ts="2026-11-20T10:00:00Z"),
            ev("e2", ts="2030-01-01T00:00:00Z"),
            ev("e3", ts="1989-12-31T23:59:59Z"),
            ev("e4", ts="1990-01-01T00:00:00Z"),
            ev("e5", ts=4102444800),  # 2100-01-01 in unix seconds
            ev("e6", ts="yesterday"),
            ev("e7", ts=1763632800000),  # milliseconds
            ev("e8", ts="2026-11-21T11:00:00Z"),  # 23 h after landing: accepted
            ev("e9", ts="2026-13-45T00:00:00Z"),
            ev("e10", ts=0),
            ev("e11", ts="2026-11-21T13:00:00+00:00"),  # 25 h after landing
        ),
        "partially_loaded",
        (11, 4, 7, 0),
        "line 2, field 'event_timestamp': timestamp_out_of_range: ",
        (
            (2, "event_timestamp", "timestamp_out_of_range"),
            (3, "event_timestamp", "timestamp_out_of_range"),
            (5, "event_timestamp", "timestamp_out_of_range"),
            (6, "event_timestamp", "invalid_timestamp"),
            (9, "event_timestamp", "invalid_timestamp"),
            (10, "event_timestamp", "timestamp_out_of_range"),
            (11, "event_timestamp", "timestamp_out_of_range"),
        ),
        keys=("e1", "e4", "e7", "e8"),
        values=(
            (
                "select event_id, event_timestamp from contact_events order by 1",
                [
                    ("e1", datetime(2026, 11, 20, 10, tzinfo=UTC)),
                    ("e4", datetime(1990, 1, 1, tzinfo=UTC)),
                    ("e7", datetime(2025, 11, 20, 10, tzinfo=UTC)),
                    ("e8", datetime(2026, 11, 21, 11, tzinfo=UTC)),
                ],
            ),
        ),
    ),
    Case(
        "several_broken_rules_reported_once_in_field_order",
        "contact/several.jsonl",
        jl(
            c("c1"),
            {"contact_id": "undefined", "email": "bad", "contact_properties": []},
            {"contact_id": "c3", "email": "bad", "contact_properties": []},
            {"contact_id": "c4", "email": 7},
        ),
        "partially_loaded",
        (4, 1, 3, 0),
        "line 2, field 'contact_id': junk_identifier: ",
        ((2, "contact_id", "junk_identifier"), (3, "email", "invalid_email"), (4, "email", "invalid_type")),
        keys=("c1",),
    ),
    Case(
        "wrong_stream_discriminator",
        "contact/typed.jsonl",
        jl(c("c1", type="contact"), c("c2", type="account"), c("c3")),
        "partially_loaded",
        (3, 2, 1, 0),
        "line 2, field 'type': wrong_stream: ",
        ((2, "type", "wrong_stream"),),
        keys=("c1", "c3"),
    ),
    Case(
        "event_duplicates_within_a_file_first_wins",
        "contact_event/dups.jsonl",
        jl(ev("e1", name="first"), ev("e2"), ev("e1", name="second"), ev("e1", name="third"), "{bad"),
        "partially_loaded",
        (5, 2, 1, 2),
        "line 5: invalid_json: ",
        ((5, None, "invalid_json"),),
        keys=("e1", "e2"),
        values=(("select event_id, event, _source_line from contact_events order by 1", [("e1", "first", 1), ("e2", "login", 2)]),),
    ),
    # --------------------------------------------------------------------- CSV
    Case(
        "csv_ragged_rows",
        "contact/ragged.csv",
        csv_text(
            "contact_id,email,plan",
            "c1,c1@example.com,pro",
            "c2,c2@example.com,pro,extra",
            "c3,c3@example.com",
            "c4,c4@example.com,free",
            "c5",
            "c6,c6@example.com,,",
        ),
        "partially_loaded",
        (6, 2, 4, 0),
        "line 3: wrong_field_count: row has 4 fields but the header has 3",
        ((3, None, "wrong_field_count"), (4, None, "wrong_field_count"), (6, None, "wrong_field_count"), (7, None, "wrong_field_count")),
        keys=("c1", "c4"),
        values=(("select contact_id, properties from contacts order by 1", [("c1", '{"plan":"pro"}'), ("c4", '{"plan":"free"}')]),),
    ),
    whole("csv_header_only", "contact/header_only.csv", b"contact_id,email,contact_properties\n", "empty_file"),
    whole("csv_header_only_no_newline", "contact/header_only_nonl.csv", b"contact_id,email", "empty_file"),
    whole(
        "csv_duplicate_header_names",
        "contact/dup_header.csv",
        csv_text("contact_id,email,plan,email", "c1,c1@example.com,pro,c1@example.org"),
        "duplicate_column",
        error_contains="'email'",
    ),
    whole(
        "csv_missing_required_column",
        "contact/no_email.csv",
        csv_text("contact_id,name", "c1,Ann"),
        "missing_column",
        error_contains="'email'",
    ),
    whole(
        "csv_event_missing_required_columns",
        "contact_event/no_ts.csv",
        csv_text("event_id,contact_id,event", "e1,c1,login"),
        "missing_column",
        error_contains="'event_timestamp'",
    ),
    Case(
        # An unnamed column (e.g. a spreadsheet's trailing comma) becomes the property column_<n>.
        "csv_header_with_an_empty_name",
        "contact/blank_col.csv",
        csv_text("contact_id,,email", "c1,x,c1@example.com", "c2,,c2@example.com"),
        "loaded",
        (2, 2, 0, 0),
        None,
        keys=("c1", "c2"),
        values=(("select contact_id, properties from contacts order by 1", [("c1", '{"column_2":"x"}'), ("c2", "{}")]),),
    ),
    Case(
        "csv_closing_quote_then_lone_cr",
        "identify/cr.csv",
        b'contact_key,email,plan\nabc,a@x.com,""\rz\nu2,b@x.com,pro\n',
        "partially_loaded",
        (2, 1, 1, 0),
        "line 2: malformed_csv",
        rejects=((2, None, "malformed_csv"),),
        keys=("u2",),
    ),
    Case(
        "csv_stray_quote_in_unquoted_field_loads",
        "contact/heights.csv",
        csv_text("contact_id,email,height", "c1,c1@example.com,5'10\"", "c2,c2@example.com,6'1\"", "c3,c3@example.com,plain"),
        "loaded",
        (3, 3, 0, 0),
        None,
        keys=("c1", "c2", "c3"),
        values=(
            (
                "select contact_id, properties from contacts order by 1",
                [("c1", '{"height":"5\'10\\""}'), ("c2", '{"height":"6\'1\\""}'), ("c3", '{"height":"plain"}')],
            ),
        ),
    ),
    Case(
        "csv_unterminated_quoted_field",
        "contact/unterminated.csv",
        csv_text(
            "contact_id,email,note",
            "c1,c1@example.com,ok",
            'c2,c2@example.com,"never closed',
            "c3,c3@example.com,fine",
            'c4,c4@example.com,"quoted, with comma"',
            "c5,c5@example.com,last",
        ),
        "partially_loaded",
        (5, 4, 1, 0),
        "line 3: malformed_csv: ",
        ((3, None, "malformed_csv"),),
        keys=("c1", "c3", "c4", "c5"),
        values=(
            (
                "select contact_id, properties, _source_line from contacts order by 1",
                [
                    ("c1", '{"note":"ok"}', 2),
                    ("c3", '{"note":"fine"}', 4),
                    ("c4", '{"note":"quoted, with comma"}', 5),
                    ("c5", '{"note":"last"}', 6),
                ],
            ),
        ),
    ),
    Case(
        "csv_text_after_a_closing_quote",
        "contact/after_quote.csv",
        csv_text("contact_id,email,note", 'c1,c1@example.com,"a"b', "c2,c2@example.com,ok"),
        "partially_loaded",
        (2, 1, 1, 0),
        "line 2: malformed_csv: ",
        ((2, None, "malformed_csv"),),
        keys=("c2",),
    ),
    Case(
        "csv_embedded_newlines_escaped_quotes_crlf_bom",
        "contact/excel_export.csv",
        "\ufeffcontact_id,email,note,quote\r\n"
        'c1,c1@example.com,"line one\nline two",x\r\n'
        'c2,c2@example.com,"comma, inside","she said ""hi"""\r\n'
        "c3, C3@Example.COM ,plain,\r\n"
        '"c4","c4@example.com","",""\r\n'.encode(),
        "loaded",
        (4, 4, 0, 0),
        None,
        keys=("c1", "c2", "c3", "c4"),
        values=(
            (
                "select contact_id, email, properties, _source_line from contacts order by 1",
                [
                    ("c1", "c1@example.com", '{"note":"line one\\nline two","quote":"x"}', 2),
                    ("c2", "c2@example.com", '{"note":"comma, inside","quote":"she said \\"hi\\""}', 4),
                    ("c3", "c3@example.com", '{"note":"plain"}', 5),
                    ("c4", "c4@example.com", "{}", 6),
                ],
            ),
        ),
    ),
    Case(
        "csv_invalid_utf8_on_one_line",
        "contact/latin1.csv",
        b"contact_id,email,city\nc1,c1@example.com,Paris\nc2,c2@example.com,Z\xfcrich\nc3,c3@example.com,Oslo\n",
        "partially_loaded",
        (3, 2, 1, 0),
        "line 3: invalid_utf8: ",
        ((3, None, "invalid_utf8"),),
        keys=("c1", "c3"),
    ),
    Case(
        "csv_empty_cells_are_absent_values",
        "contact/empty_cells.csv",
        csv_text("contact_id,email,plan", "c1,c1@example.com,", ",c2@example.com,pro", "c3,,pro", "c4,  ,pro"),
        "partially_loaded",
        (4, 1, 3, 0),
        "line 3, field 'contact_id': missing_field: ",
        ((3, "contact_id", "missing_field"), (4, "email", "missing_field"), (5, "email", "missing_field")),
        keys=("c1",),
        values=(("select properties from contacts", [("{}",)]),),
    ),
    Case(
        "csv_properties_column_must_hold_an_object",
        "contact/props.csv",
        csv_text(
            "contact_id,email,contact_properties,plan",
            'c1,c1@example.com,"{""seats"": 3}",pro',
            'c2,c2@example.com,"[1, 2]",pro',
            "c3,c3@example.com,hello,pro",
            "c4,c4@example.com,,free",
        ),
        "partially_loaded",
        (4, 2, 2, 0),
        "line 3, field 'contact_properties': invalid_type: ",
        ((3, "contact_properties", "invalid_type"), (4, "contact_properties", "invalid_type")),
        keys=("c1", "c4"),
        values=(
            (
                "select contact_id, properties from contacts order by 1",
                [("c1", '{"plan":"pro","seats":3}'), ("c4", '{"plan":"free"}')],
            ),
        ),
    ),
    Case(
        "csv_junk_ids_and_bad_emails",
        "contact/junk.csv",
        csv_text("contact_id,email", "c1,c1@example.com", "null,a@example.com", "undefined,b@example.com", "c4,not-an-email"),
        "partially_loaded",
        (4, 1, 3, 0),
        "line 3, field 'contact_id': junk_identifier: ",
        ((3, "contact_id", "junk_identifier"), (4, "contact_id", "junk_identifier"), (5, "email", "invalid_email")),
        keys=("c1",),
    ),
    # -------------------------------------------------------------- .json files
    whole(
        "json_document_declares_another_stream",
        "contact/upload.json",
        json.dumps({"stream": "account", "data": [c("c1")]}).encode(),
        "stream_mismatch",
        error_contains="'account'",
    ),
    whole(
        "json_document_data_is_not_an_array",
        "contact/upload_obj.json",
        json.dumps({"stream": "contact", "data": c("c1")}).encode(),
        "invalid_document",
    ),
    whole("json_empty_array", "contact/empty_array.json", b"[ ]\n", "empty_file"),
    whole("json_document_with_no_records", "contact/empty_doc.json", b'{"stream": "contact", "data": []}', "empty_file"),
    Case(
        "json_document_with_a_bad_record",
        "contact/upload_ok.json",
        json.dumps({"stream": "contact", "data": [c("c1"), c("undefined"), c("c3", "nope")]}, indent=2).encode(),
        "partially_loaded",
        (3, 1, 2, 0),
        "line 2, field 'contact_id': junk_identifier: ",
        ((2, "contact_id", "junk_identifier"), (3, "email", "invalid_email")),
        keys=("c1",),
    ),
    Case(
        "json_array_with_bad_elements",
        "contact/array.json",
        json.dumps([c("c1"), c("c2", "bad-email"), 42, None, c("c5"), without(c("c6"), "email")], indent=2).encode(),
        "partially_loaded",
        (6, 2, 4, 0),
        "line 2, field 'email': invalid_email: ",
        ((2, "email", "invalid_email"), (3, None, "not_an_object"), (4, None, "not_an_object"), (6, "email", "missing_field")),
        keys=("c1", "c5"),
        values=(("select contact_id, _source_line from contacts order by 1", [("c1", 1), ("c5", 5)]),),
    ),
    Case(
        "json_array_cut_short_on_one_line",
        "contact/cut.json",
        b'[{"contact_id": "c1", "email": "c1@example.com", "contact_properties": {}}, {"contact_id": ',
        "rejected",
        (1, 0, 1, 0),
        "line 1: invalid_json: ",
        ((1, None, "invalid_json"),),
    ),
    # ------------------------------------------------------------- other feeds
    Case(
        "identify_feed_bad_records",
        "identify/users.jsonl",
        jl(
            {"contact_key": "u1", "email": "u1@example.com", "plan": "pro"},
            {"contact_key": "anonymous", "email": "a@example.com"},
            {"email": "b@example.com"},
            {"contact_key": "u4", "email": "nope"},
            {"contact_key": "u5", "email": "u5@example.com", "contact_properties": "not checked: an extra key"},
        ),
        "partially_loaded",
        (5, 2, 3, 0),
        "line 2, field 'contact_key': junk_identifier: ",
        ((2, "contact_key", "junk_identifier"), (3, "contact_key", "missing_field"), (4, "email", "invalid_email")),
        keys=("u1", "u5"),
        values=(
            (
                "select contact_id, properties from contacts order by 1",
                [("u1", '{"plan":"pro"}'), ("u5", '{"contact_properties":"not checked: an extra key"}')],
            ),
        ),
    ),
    Case(
        "track_csv_gz_bad_rows",
        "track/x.csv.gz",
        gz(
            csv_text(
                "event_text,event_timestamp,contact_key,plan",
                "signed up,1234567890,abc1234,pro",
                "login,not a time,abc1234,pro",
                ",1234567890,abc1234,pro",
                "login,1234567890,undefined,pro",
                "login,1234567890,abc1234,pro",
                "signed up,1234567890,abc1234,again",  # same contact, text and time: a duplicate
            )
        ),
        "partially_loaded",
        (6, 2, 3, 1),
        "line 3, field 'event_timestamp': invalid_timestamp: ",
        ((3, "event_timestamp", "invalid_timestamp"), (4, "event_text", "missing_field"), (5, "contact_key", "junk_identifier")),
        keys=("abc1234|login", "abc1234|signed up"),
        values=(
            ("select event, properties from contact_events order by 1", [("login", '{"plan":"pro"}'), ("signed up", '{"plan":"pro"}')]),
        ),
    ),
    Case(
        "group_feed_bad_records",
        "group/g.jsonl",
        jl(
            {"contact_key": "u1", "account_key": "Acme.com", "name": "Acme"},
            {"contact_key": "u2"},
            {"contact_key": "0", "account_key": "globex.com"},
            {"contact_key": "u4", "account_key": "initech"},
        ),
        "partially_loaded",
        (4, 2, 2, 0),
        "line 2, field 'account_key': missing_field: ",
        ((2, "account_key", "missing_field"), (3, "contact_key", "junk_identifier")),
        keys=("Acme.com", "initech"),
        values=(
            (
                "select account_id, domain, properties from accounts order by 1",
                [("Acme.com", "acme.com", '{"name":"Acme"}'), ("initech", None, "{}")],
            ),
        ),
    ),
    Case(
        "crm_feed_bad_values",
        "crm/leads.jsonl",
        jl(
            {
                "email": "elon@tesla.com",
                "account": "tesla",
                "created_at": "1234567890",
                "is_worked": "true",
                "is_converted": "false",
                "amount": "2499",
            },
            {
                "email": "a@tesla.com",
                "account": "tesla",
                "created_at": "1234567890",
                "is_worked": "maybe",
                "is_converted": "true",
                "amount": "1",
            },
            {
                "email": "b@tesla.com",
                "account": "tesla",
                "created_at": "1234567890",
                "is_worked": "true",
                "is_converted": "true",
                "amount": "12abc",
            },
            {"email": "c@tesla.com", "account": "tesla", "created_at": "soon", "is_worked": "true", "is_converted": "true", "amount": "1"},
            {
                "email": "not-an-email",
                "account": "tesla",
                "created_at": "1234567890",
                "is_worked": "true",
                "is_converted": "true",
                "amount": "1",
            },
            {
                "email": "d@tesla.com",
                "account": "tesla",
                "created_at": "1234567890",
                "is_worked": "true",
                "is_converted": "true",
                "amount": "NaN",
            },
        ),
        "partially_loaded",
        (6, 1, 5, 0),
        "line 2, field 'is_worked': invalid_boolean: ",
        (
            (2, "is_worked", "invalid_boolean"),
            (3, "amount", "invalid_number"),
            (4, "created_at", "invalid_timestamp"),
            (5, "email", "invalid_email"),
            (6, "amount", "invalid_number"),
        ),
        keys=("elon@tesla.com|tesla",),
        values=(("select is_worked, is_converted, amount from crm_leads", [(True, False, 2499.0)]),),
    ),
    Case(
        "account_invalid_domains",
        "account/accounts.jsonl",
        jl(
            {"account_id": "a1", "domain": "https://www.Example.com:8080/x?y=1", "account_properties": {}},
            {"account_id": "a2", "domain": "not a domain", "account_properties": {}},
            {"account_id": "a3", "domain": 123, "account_properties": {}},
            {"account_id": "a4", "domain": "", "account_properties": {}},
            {"account_id": "a5", "domain": "globex.com.", "account_properties": {"tier": 1}},
        ),
        "partially_loaded",
        (5, 2, 3, 0),
        "line 2, field 'domain': invalid_domain: ",
        ((2, "domain", "invalid_domain"), (3, "domain", "invalid_type"), (4, "domain", "missing_field")),
        keys=("a1", "a5"),
        values=(("select account_id, domain from accounts order by 1", [("a1", "example.com"), ("a5", "globex.com")]),),
    ),
    Case(
        "account_event_bad_records",
        "account_event/ae.jsonl",
        jl(
            {"event_id": "ae1", "account_id": "a1", "event": "renewal", "event_timestamp": 1763632800, "event_properties": {}},
            {"event_id": "ae2", "event": "renewal", "event_timestamp": 1763632800, "event_properties": {}},
            {"event_id": "ae3", "account_id": "-1", "event": "renewal", "event_timestamp": 1763632800, "event_properties": {}},
            {
                "event_id": "ae4",
                "account_id": "a1",
                "event": "x",
                "event_timestamp": 1763632800,
                "event_properties": {},
                "event_type": "contact_event",
            },
        ),
        "partially_loaded",
        (4, 1, 3, 0),
        "line 2, field 'account_id': missing_field: ",
        ((2, "account_id", "missing_field"), (3, "account_id", "junk_identifier"), (4, "event_type", "wrong_stream")),
        keys=("ae1",),
    ),
    Case(
        "every_record_rejected",
        "contact/all_bad.jsonl",
        jl("{", c("null"), c("c3", "x")),
        "rejected",
        (3, 0, 3, 0),
        "line 1: invalid_json: ",
        ((1, None, "invalid_json"), (2, "contact_id", "junk_identifier"), (3, "email", "invalid_email")),
    ),
]

_paths = [case.path for case in CASES]
assert len(set(_paths)) == len(_paths), "every case needs its own landing path"
assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"
BY_ID = {case.id: case for case in CASES}


def expectations(case: Case) -> dict:
    return {
        "id": case.id,
        "path": case.path,
        "stream": case.stream,
        "settings": dict(case.settings),
        "status": case.status,
        "rows_read": case.counts[0],
        "rows_loaded": case.counts[1],
        "rows_rejected": case.counts[2],
        "rows_duplicate": case.counts[3],
        "first_error_prefix": case.first_error,
        "first_error_contains": case.error_contains or None,
        "rejected_records": [list(r) for r in case.rejects],
        "keys": list(case.keys),
        "bug": case.bug,
    }


def write_corpus(outdir: str | os.PathLike) -> list[Path]:
    """Every case's file under outdir/<landing path>, mtime = LANDED_AT, and the
    expectations in outdir/_expected.json."""
    root = Path(outdir)
    written = []
    for case in CASES:
        path = root / case.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.content())
        os.utime(path, (LANDED_AT.timestamp(), LANDED_AT.timestamp()))
        written.append(path)
    (root / "_expected.json").write_text(json.dumps([expectations(c) for c in CASES], indent=2) + "\n")
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ingestion_pipeline_tests.corpus.cases OUTDIR", file=sys.stderr)
        return 2
    written = write_corpus(argv[0])
    print(f"wrote {len(written)} files and _expected.json to {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
