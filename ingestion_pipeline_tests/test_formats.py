"""Format detection, decoding and record batching (SPEC section 1, "Accepted files")."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib

import polars as pl
import pytest

from ingestion_pipeline.formats import (
    DecodedReader,
    FileFormat,
    FileRejected,
    detect_format,
    iter_line_batches,
    iter_records,
)
from ingestion_pipeline.settings import Settings
from ingestion_pipeline.streams import FEEDS

# --- detect_format -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name", "compressed"),
    [
        ("contact/a.jsonl", "jsonl", False),
        ("contact/a.ndjson", "jsonl", False),
        ("contact/a.json", "json", False),
        ("contact/a.csv", "csv", False),
        ("contact/a.jsonl.gz", "jsonl", True),
        ("contact/a.ndjson.gz", "jsonl", True),
        ("contact/a.json.gz", "json", True),
        ("contact/a.csv.gz", "csv", True),
        ("contact/a.jsonl.gzip", "jsonl", True),
        ("contact/a.json.gzip", "json", True),
        ("contact/a.csv.gzip", "csv", True),
        ("contact/A.JSONL", "jsonl", False),
        ("contact/A.NDJSON.GZ", "jsonl", True),
        ("contact/Data.Json.GZip", "json", True),
        ("contact/2026/11/20/part-1.jsonl.gz", "jsonl", True),
        ("a.csv", "csv", False),
    ],
)
def test_detect_format_by_extension_case_insensitive(path, name, compressed):
    assert detect_format(path) == FileFormat(name, compressed)


@pytest.mark.parametrize(
    "path",
    [
        "contact/a.txt",
        "contact/a.parquet",
        "contact/a.gz",
        "contact/a.xml.gz",
        "contact/a",
        "contact/a.jsonl.zip",
        "contact/a.jsonl.bz2",
        "contact.jsonl/readme.md",
    ],
)
def test_detect_format_rejects_unknown_extension_as_unsupported_format(path):
    with pytest.raises(FileRejected) as info:
        detect_format(path)
    assert info.value.rule == "unsupported_format"


@pytest.mark.parametrize(("fmt", "label"), [(FileFormat("jsonl", False), "jsonl"), (FileFormat("json", True), "json.gz")])
def test_file_format_label(fmt, label):
    assert fmt.label == label


# --- helpers ---------------------------------------------------------------------


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _read_all(tmp_path, name: str, data: bytes, stream: str = "contact", **settings) -> pl.DataFrame:
    """All record batches of a file written to tmp_path, concatenated."""
    path = _write(tmp_path, name, data)
    cfg = Settings(**settings)
    fmt = detect_format(name)
    landed_path = f"{stream}/{name}"
    with open(path, "rb") as raw:
        reader = DecodedReader(raw, fmt, cfg, landed_path)
        batches = list(iter_records(reader, fmt, cfg, landed_path, FEEDS[stream]))
    if not batches:
        return pl.DataFrame(schema={"line": pl.Int64, "raw": pl.String, "error": pl.String, "message": pl.String})
    return pl.concat(batches)


def _rows(frame: pl.DataFrame) -> list[tuple]:
    return list(frame.select("line", "raw", "error").iter_rows())


def _rejected(tmp_path, name: str, data: bytes, stream: str = "contact", **settings) -> FileRejected:
    with pytest.raises(FileRejected) as info:
        _read_all(tmp_path, name, data, stream, **settings)
    return info.value


# --- JSON lines ------------------------------------------------------------------


def test_batches_have_line_schema(tmp_path):
    frame = _read_all(tmp_path, "a.jsonl", b'{"a":1}\n')
    assert frame.schema == pl.Schema({"line": pl.Int64, "raw": pl.String, "error": pl.String, "message": pl.String})


def test_line_numbers_are_one_based_and_blank_lines_skipped_but_counted(tmp_path):
    data = b'{"a":1}\n\n{"b":2}\n   \n\n{"c":3}\n'
    assert _rows(_read_all(tmp_path, "a.jsonl", data)) == [
        (1, '{"a":1}', None),
        (3, '{"b":2}', None),
        (6, '{"c":3}', None),
    ]


def test_crlf_line_endings_are_stripped_and_crlf_blank_lines_skipped(tmp_path):
    data = b'{"a":1}\r\n\r\n{"b":2}\r\n'
    assert _rows(_read_all(tmp_path, "a.ndjson", data)) == [(1, '{"a":1}', None), (3, '{"b":2}', None)]


def test_last_line_without_trailing_newline_is_read(tmp_path):
    assert _rows(_read_all(tmp_path, "a.jsonl", b'{"a":1}\n{"b":2}')) == [(1, '{"a":1}', None), (2, '{"b":2}', None)]


def test_empty_file_yields_no_records(tmp_path):
    assert _read_all(tmp_path, "a.jsonl", b"").height == 0


def test_line_numbers_continue_across_small_read_batches(tmp_path):
    lines = [f'{{"i":{i}}}' for i in range(1, 41)]
    data = ("\n".join(lines) + "\n").encode()
    frame = _read_all(tmp_path, "a.jsonl", data, batch_bytes=7)
    assert frame["line"].to_list() == list(range(1, 41))
    assert frame["raw"].to_list() == lines
    assert frame["error"].null_count() == 40


def test_gzip_jsonl_is_decoded(tmp_path):
    data = gzip.compress(b'{"a":1}\n\n{"b":2}\n')
    assert _rows(_read_all(tmp_path, "a.jsonl.gz", data)) == [(1, '{"a":1}', None), (3, '{"b":2}', None)]


def test_gzip_suffix_dot_gzip_is_decoded(tmp_path):
    data = gzip.compress(b'{"a":1}\n')
    assert _rows(_read_all(tmp_path, "a.ndjson.gzip", data)) == [(1, '{"a":1}', None)]


def test_multi_member_gzip_is_read_as_one_stream(tmp_path):
    data = gzip.compress(b'{"a":1}\n') + gzip.compress(b'\n{"b":2}\n')
    assert _rows(_read_all(tmp_path, "a.jsonl.gz", data)) == [(1, '{"a":1}', None), (3, '{"b":2}', None)]


def test_utf8_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
    # Spec is silent; Snowpipe (SKIP_BYTE_ORDER_MARK = TRUE) and most JSON-lines
    # readers drop a leading UTF-8 BOM, otherwise line 1 fails as invalid JSON.
    data = b'\xef\xbb\xbf{"a":1}\n{"b":2}\n'
    assert _rows(_read_all(tmp_path, "a.jsonl", data)) == [(1, '{"a":1}', None), (2, '{"b":2}', None)]


# --- record size limit ---------------------------------------------------------

BIG = b'{"x":"' + b"y" * 100 + b'"}'  # 108 bytes


def test_oversize_line_is_rejected_with_its_line_number_and_others_load(tmp_path):
    data = b'{"a":1}\n' + BIG + b'\n{"c":3}\n'
    frame = _read_all(tmp_path, "a.jsonl", data, max_record_bytes=50)
    assert frame.select("line", "error").rows() == [(1, None), (2, "record_too_large"), (3, None)]
    assert frame.filter(pl.col("line") != 2)["raw"].to_list() == ['{"a":1}', '{"c":3}']
    assert "exceeds the limit of 50 bytes" in frame.filter(pl.col("line") == 2)["message"][0]


def test_record_of_exactly_the_limit_is_accepted_one_more_byte_rejected(tmp_path):
    data = b"y" * 50 + b"\n" + b"z" * 51 + b"\n"
    frame = _read_all(tmp_path, "a.jsonl", data, max_record_bytes=50)
    assert frame.select("line", "error").rows() == [(1, None), (2, "record_too_large")]
    assert frame["raw"][0] == "y" * 50


def test_oversize_last_line_without_trailing_newline_is_rejected(tmp_path):
    data = b'{"a":1}\n' + BIG
    frame = _read_all(tmp_path, "a.jsonl", data, max_record_bytes=50)
    assert frame.select("line", "error").rows() == [(1, None), (2, "record_too_large")]


@pytest.mark.parametrize("batch_bytes", [16, 33, 64])
def test_oversize_line_spanning_read_batches_is_rejected_and_following_lines_load(tmp_path, batch_bytes):
    data = b'{"a":1}\n' + BIG + b"\n" + BIG + b'\n\n{"c":3}\n{"d":4}\n'
    frame = _read_all(tmp_path, "a.jsonl", data, max_record_bytes=50, batch_bytes=batch_bytes)
    assert frame.select("line", "error").rows() == [
        (1, None),
        (2, "record_too_large"),
        (3, "record_too_large"),
        (5, None),
        (6, None),
    ]
    assert frame.filter(pl.col("error").is_null())["raw"].to_list() == ['{"a":1}', '{"c":3}', '{"d":4}']


def test_oversize_last_line_spanning_read_batches_without_newline_is_rejected(tmp_path):
    data = b'{"a":1}\n' + BIG
    frame = _read_all(tmp_path, "a.jsonl", data, max_record_bytes=50, batch_bytes=16)
    assert frame.select("line", "error").rows() == [(1, None), (2, "record_too_large")]


def test_oversize_line_raw_keeps_only_a_preview(tmp_path):
    data = b'{"x":"' + b"y" * 5000 + b'"}\n'
    frame = _read_all(tmp_path, "a.jsonl", data, max_record_bytes=100)
    assert frame["error"].to_list() == ["record_too_large"]
    assert len(frame["raw"][0]) == 2000
    assert frame["raw"][0].startswith('{"x":"yyy')


def test_oversize_record_in_json_array_document_is_rejected_with_its_position(tmp_path):
    # SPEC 1: "A single record larger than a configurable limit is rejected with its
    # line number" - this holds for records of a `.json` document too.
    data = b'[{"a":1},' + BIG + b',{"c":3}]'
    frame = _read_all(tmp_path, "a.json", data, max_record_bytes=50)
    assert frame.select("line", "error").rows() == [(1, None), (2, "record_too_large"), (3, None)]


# --- invalid UTF-8 ---------------------------------------------------------------


def test_invalid_utf8_rejects_that_line_only(tmp_path):
    data = b'{"a":1}\n{"b":"\xff\xfe"}\n{"c":"caf\xc3\xa9"}\n'
    frame = _read_all(tmp_path, "a.jsonl", data)
    assert _rows(frame) == [(1, '{"a":1}', None), (2, '{"b":"\ufffd\ufffd"}', "invalid_utf8"), (3, '{"c":"café"}', None)]
    assert frame["message"].to_list() == [None, "line is not valid UTF-8", None]


def test_invalid_utf8_line_number_with_small_read_batches(tmp_path):
    data = b'{"a":1}\n\n{"b":"\xc3"}\n{"c":3}\n'
    frame = _read_all(tmp_path, "a.jsonl", data, batch_bytes=5)
    assert frame.select("line", "error").rows() == [(1, None), (3, "invalid_utf8"), (4, None)]


# --- gzip failures ----------------------------------------------------------------


def _gzip_lines(n: int) -> bytes:
    return gzip.compress(b"".join(b'{"i":%d,"pad":"%s"}\n' % (i, b"x" * 40) for i in range(n)))


@pytest.mark.parametrize("cut", ["half", "trailer"])
def test_truncated_gzip_is_rejected_as_corrupt_gzip(tmp_path, cut):
    good = _gzip_lines(5000)
    data = good[: len(good) // 2] if cut == "half" else good[:-4]
    err = _rejected(tmp_path, "a.jsonl.gz", data, batch_bytes=4096)
    assert err.rule == "corrupt_gzip"


@pytest.mark.parametrize("name", ["a.jsonl.gz", "a.json.gz", "a.ndjson.gzip"])
def test_gz_file_that_is_not_gzip_is_rejected_as_corrupt_gzip(tmp_path, name):
    err = _rejected(tmp_path, name, b'{"a":1}\n{"b":2}\n')
    assert err.rule == "corrupt_gzip"


def test_gzip_with_corrupted_deflate_data_is_rejected_as_corrupt_gzip(tmp_path):
    good = bytearray(_gzip_lines(2000))
    for i in range(100, 140):
        good[i] ^= 0xFF
    err = _rejected(tmp_path, "a.jsonl.gz", bytes(good))
    assert err.rule == "corrupt_gzip"


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    chunk = b" " * (1 << 20)  # text, so only the decoded-size limit can stop it
    return b"".join(comp.compress(chunk) for _ in range(50)) + comp.flush()


def test_gzip_bomb_is_refused_by_decoded_size_limit(tmp_path, gzip_bomb):
    assert len(gzip_bomb) < 100_000
    err = _rejected(tmp_path, "bomb.jsonl.gz", gzip_bomb, max_decoded_bytes=1_000_000)
    assert err.rule == "decoded_size_limit"


def test_gzip_bomb_as_json_document_is_refused_by_decoded_size_limit(tmp_path, gzip_bomb):
    err = _rejected(tmp_path, "bomb.json.gz", gzip_bomb, max_decoded_bytes=1_000_000)
    assert err.rule == "decoded_size_limit"


def test_decoded_size_limit_applies_to_uncompressed_files_too(tmp_path):
    err = _rejected(tmp_path, "a.jsonl", b'{"a":1}\n' * 100, max_decoded_bytes=500)
    assert err.rule == "decoded_size_limit"


def test_file_at_decoded_size_limit_is_read(tmp_path):
    data = b'{"a":1}\n' * 10  # 80 bytes
    frame = _read_all(tmp_path, "a.jsonl", data, max_decoded_bytes=80)
    assert frame["line"].to_list() == list(range(1, 11))


# --- .json documents ---------------------------------------------------------------


def test_json_array_document_gives_records_numbered_from_one(tmp_path):
    data = b'[{"a": 1}, {"b": 2}, {"c": 3}]'
    frame = _read_all(tmp_path, "a.json", data)
    assert frame["line"].to_list() == [1, 2, 3]
    assert frame["error"].to_list() == [None, None, None]
    assert [json.loads(r) for r in frame["raw"]] == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_pretty_printed_json_array_document_is_read_as_a_document(tmp_path):
    data = b'  [\n  {"a": 1},\n  {"b": 2}\n]\n'
    frame = _read_all(tmp_path, "a.json", data)
    assert frame["line"].to_list() == [1, 2]
    assert [json.loads(r) for r in frame["raw"]] == [{"a": 1}, {"b": 2}]


def test_upload_payload_document_gives_records_numbered_from_one(tmp_path):
    data = b'{"stream": "contact", "data": [{"contact_id": "c1"}, {"contact_id": "c2"}]}'
    frame = _read_all(tmp_path, "a.json", data, stream="contact")
    assert frame["line"].to_list() == [1, 2]
    assert [json.loads(r) for r in frame["raw"]] == [{"contact_id": "c1"}, {"contact_id": "c2"}]


def test_gzipped_upload_payload_document_is_read(tmp_path):
    data = gzip.compress(b'{"stream": "account_event", "data": [{"event_id": "e1"}]}')
    frame = _read_all(tmp_path, "a.json.gz", data, stream="account_event")
    assert frame["line"].to_list() == [1]
    assert json.loads(frame["raw"][0]) == {"event_id": "e1"}


def test_upload_payload_with_other_stream_is_rejected_as_stream_mismatch(tmp_path):
    data = b'{"stream": "account", "data": [{"account_id": "a1"}]}'
    err = _rejected(tmp_path, "a.json", data, stream="contact")
    assert err.rule == "stream_mismatch"
    assert "account" in err.message and "contact" in err.message


def test_upload_payload_with_non_array_data_is_rejected_as_invalid_document(tmp_path):
    err = _rejected(tmp_path, "a.json", b'{"stream": "contact", "data": {"contact_id": "c1"}}')
    assert err.rule == "invalid_document"


def test_json_file_holding_json_lines_is_read_as_lines(tmp_path):
    data = b'{"a":1}\n\n{"b":2}\r\n'
    assert _rows(_read_all(tmp_path, "a.json", data)) == [(1, '{"a":1}', None), (3, '{"b":2}', None)]


def test_json_file_with_a_single_object_is_one_record(tmp_path):
    assert _rows(_read_all(tmp_path, "a.json", b'{"contact_id":"c1"}\n')) == [(1, '{"contact_id":"c1"}', None)]


def test_json_file_of_lines_with_invalid_utf8_rejects_only_that_line(tmp_path):
    data = b'{"a":1}\n{"b":"\xff"}\n{"c":2}'
    assert _rows(_read_all(tmp_path, "a.json", data)) == [(1, '{"a":1}', None), (2, '{"b":"\ufffd"}', "invalid_utf8"), (3, '{"c":2}', None)]


def test_empty_json_array_yields_no_records(tmp_path):
    assert _read_all(tmp_path, "a.json", b"[]").height == 0


# --- sha256 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("a.jsonl", b'{"a":1}\n{"b":2}\n' * 1000),
        ("a.jsonl.gz", gzip.compress(b'{"a":1}\n{"b":2}\n' * 1000)),
        ("a.json", b'[{"a":1},{"b":2}]'),
        ("a.jsonl", b""),
    ],
)
def test_sha256_is_the_hash_of_the_file_bytes_after_reading(tmp_path, name, data):
    path = _write(tmp_path, name, data)
    cfg = Settings(batch_bytes=1000)
    fmt = detect_format(name)
    with open(path, "rb") as raw:
        reader = DecodedReader(raw, fmt, cfg, f"contact/{name}")
        list(iter_records(reader, fmt, cfg, f"contact/{name}", FEEDS["contact"]))
        assert reader.sha256() == hashlib.sha256(data).hexdigest()


def test_sha256_covers_bytes_after_the_gzip_member(tmp_path):
    # Trailing bytes the decoder never needs still belong to the file's content hash.
    data = gzip.compress(b'{"a":1}\n') + b"\0" * 10
    path = _write(tmp_path, "a.jsonl.gz", data)
    cfg = Settings()
    fmt = detect_format("a.jsonl.gz")
    with open(path, "rb") as raw:
        reader = DecodedReader(raw, fmt, cfg, "contact/a.jsonl.gz")
        try:
            list(iter_records(reader, fmt, cfg, "contact/a.jsonl.gz", FEEDS["contact"]))
        except FileRejected:
            pass
        assert reader.sha256() == hashlib.sha256(data).hexdigest()


def test_sha256_without_reading_hashes_whole_file(tmp_path):
    data = b'{"a":1}\n' * 50
    path = _write(tmp_path, "a.jsonl", data)
    with open(path, "rb") as raw:
        reader = DecodedReader(raw, detect_format("a.jsonl"), Settings(), "contact/a.jsonl")
        assert reader.sha256() == hashlib.sha256(data).hexdigest()


def test_iter_line_batches_directly_with_head_bytes(tmp_path):
    path = _write(tmp_path, "a.jsonl", b'2}\n{"c":3}\n')
    cfg = Settings()
    with open(path, "rb") as raw:
        reader = DecodedReader(raw, detect_format("a.jsonl"), cfg, "contact/a.jsonl")
        frame = pl.concat(list(iter_line_batches(reader, cfg, head=b'{"a":1}\n{"b":')))
    assert _rows(frame) == [(1, '{"a":1}', None), (2, '{"b":2}', None), (3, '{"c":3}', None)]


def test_decoded_reader_counts_decoded_bytes(tmp_path):
    payload = b'{"a":1}\n' * 100
    path = _write(tmp_path, "a.jsonl.gz", gzip.compress(payload))
    cfg = Settings()
    fmt = detect_format("a.jsonl.gz")
    with open(path, "rb") as raw:
        reader = DecodedReader(raw, fmt, cfg, "contact/a.jsonl.gz")
        list(iter_records(reader, fmt, cfg, "contact/a.jsonl.gz", FEEDS["contact"]))
        assert reader.decoded == len(payload)
