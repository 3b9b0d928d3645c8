"""The CSV reader on its own: records, line numbers and cells, whatever the read
size, compared with Python's csv module as the reference parser."""

from __future__ import annotations

import csv
import io
import json

import polars as pl
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ingestion_pipeline.csv_records import iter_csv_records
from ingestion_pipeline.formats import DecodedReader, FileRejected, detect_format
from ingestion_pipeline.settings import Settings
from ingestion_pipeline.streams import FEEDS

IDENTIFY = FEEDS["identify"]


def read_csv(data: bytes, batch_bytes: int = 1 << 20, max_record_bytes: int = 1 << 20, feed=IDENTIFY) -> pl.DataFrame:
    cfg = Settings(batch_bytes=batch_bytes, max_record_bytes=max_record_bytes)
    reader = DecodedReader(io.BytesIO(data), detect_format("x.csv"), cfg, "identify/x.csv")
    frames = list(iter_csv_records(reader, cfg, "identify/x.csv", feed))
    return pl.concat(frames).sort("line") if frames else pl.DataFrame()


def loaded(frame: pl.DataFrame) -> list[tuple[int, dict]]:
    good = frame.filter(pl.col("error").is_null())
    return [(line, json.loads(doc)) for line, doc in good.select("line", "json").iter_rows()]


def rejected(frame: pl.DataFrame) -> list[tuple[int, str]]:
    return frame.filter(pl.col("error").is_not_null()).select("line", "error").rows()


cell = st.text(alphabet=st.sampled_from(list('ab ,"\n\u00e9x1')), max_size=12)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True), cell, cell), min_size=1, max_size=30),
    batch_bytes=st.sampled_from([7, 16, 61, 1 << 20]),
    crlf=st.booleans(),
)
def test_valid_csv_matches_pythons_csv_module_at_any_read_size(rows, batch_bytes, crlf):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(["contact_key", "email", "note"])
    writer.writerows(rows)
    text = out.getvalue()
    frame = read_csv(text.encode(), batch_bytes=batch_bytes)
    assert rejected(frame) == []
    # Expected: Python's csv module, with each record's first physical line.
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    expected, line = [], reader.line_num + 1
    for rec in reader:
        if any(rec):
            keys = ["contact_key", "email", "note"]
            expected.append((line, {k: v for k, v in zip(keys, rec) if v != ""}))
        line = reader.line_num + 1
    got = [(ln, doc) for ln, doc in loaded(frame)]
    assert got == expected


def test_line_numbers_count_physical_lines_and_blank_lines_are_skipped():
    data = b'contact_key,email\n\nu1,"a\nb"\n\n  \nu2,x@y.z\n'
    frame = read_csv(data)
    assert loaded(frame) == [(3, {"contact_key": "u1", "email": "a\nb"}), (7, {"contact_key": "u2", "email": "x@y.z"})]


@pytest.mark.parametrize("batch_bytes", [5, 33, 1 << 20])
def test_a_stray_quote_costs_its_own_record_only(batch_bytes):
    data = (
        b"contact_key,email,note\n"
        b'u1,a@x.com,"ok, fine"\n'
        b'u2,b@x.com,"He said "hi" ok"\n'  # quote inside a quoted field, not doubled
        b"u3,c@x.com,5'10\"\n"  # a quote inside an unquoted field is a character
        b'u4,d@x.com,"multi\nline"\n'
        b"u5,e@x.com,plain\n"
    )
    frame = read_csv(data, batch_bytes=batch_bytes)
    assert rejected(frame) == [(3, "malformed_csv")]
    assert [(ln, d["contact_key"], d.get("note")) for ln, d in loaded(frame)] == [
        (2, "u1", "ok, fine"),
        (4, "u3", "5'10\""),
        (5, "u4", "multi\nline"),
        (7, "u5", "plain"),
    ]


@pytest.mark.parametrize("batch_bytes", [8, 1 << 20])
def test_an_unterminated_quote_rejects_its_line_and_the_lines_after_it_load(batch_bytes):
    data = b'contact_key,email,note\nu1,a@x.com,"never closed\nu2,b@x.com,x\nu3,c@x.com,y\n'
    frame = read_csv(data, batch_bytes=batch_bytes, max_record_bytes=1000)
    assert rejected(frame) == [(2, "malformed_csv")]
    assert [(ln, d["contact_key"]) for ln, d in loaded(frame)] == [(3, "u2"), (4, "u3")]


def test_ragged_rows_are_rejected_with_their_field_count():
    frame = read_csv(b"contact_key,email\nu1,a@x.com,extra\nu2\nu3,c@x.com\n")
    bad = frame.filter(pl.col("error").is_not_null()).select("line", "error", "message", "raw").rows()
    assert bad == [
        (2, "wrong_field_count", "row has 3 fields but the header has 2", "u1,a@x.com,extra"),
        (3, "wrong_field_count", "row has 1 fields but the header has 2", "u2"),
    ]
    assert [ln for ln, _ in loaded(frame)] == [4]


def test_invalid_utf8_and_oversize_records_are_rejected_with_their_line():
    data = b"contact_key,email\nu1,\xff\xfe@x.com\nu2," + b"a" * 200 + b"@x.com\nu3,c@x.com\n"
    frame = read_csv(data, max_record_bytes=100)
    assert rejected(frame) == [(2, "invalid_utf8"), (3, "record_too_large")]
    assert [ln for ln, _ in loaded(frame)] == [4]


def test_last_record_without_a_newline_and_a_bom_header():
    frame = read_csv("\ufeffcontact_key,email\r\nu1,a@x.com".encode())
    assert loaded(frame) == [(2, {"contact_key": "u1", "email": "a@x.com"})]


@pytest.mark.parametrize(
    ("data", "rule", "message"),
    [
        (b"email,contact_key,email\nx,y,z\n", "duplicate_column", "column 'email' appears twice in the header (columns 1 and 3)"),
        (
            b"contact_key,mail\nu1,a@x.com\n",
            "missing_column",
            "required column 'email' missing from the CSV header (columns: contact_key, mail)",
        ),
        (b'contact_key,"email\nu1,a\n', "invalid_header", "the header row is not valid CSV"),
    ],
)
def test_bad_headers_reject_the_whole_file(data, rule, message):
    with pytest.raises(FileRejected) as exc:
        read_csv(data)
    assert exc.value.rule == rule
    assert message in exc.value.message


def test_properties_column_is_embedded_as_json_and_other_columns_join_it():
    feed = FEEDS["contact"]
    data = b'contact_id,email,contact_properties,plan\nc1,a@x.com,"{""a"": [1, 2]}",pro\nc2,b@x.com,not json,\nc3,c@x.com,,\n'
    docs = [d for _, d in loaded(read_csv(data, feed=feed))]
    assert docs == [
        {"contact_id": "c1", "email": "a@x.com", "plan": "pro", "contact_properties": {"a": [1, 2]}},
        {"contact_id": "c2", "email": "b@x.com", "contact_properties": "not json"},  # then invalid_type
        {"contact_id": "c3", "email": "c@x.com", "contact_properties": {}},
    ]


@pytest.mark.parametrize("batch_bytes", [9, 1 << 20])
def test_a_closing_quote_then_a_lone_cr_is_a_malformed_record_not_a_crash(batch_bytes):
    frame = read_csv(b'contact_key,email,plan\nabc,a@x.com,""\rz\nu2,b@x.com,"x"\ru3,c@x.com,pro\nu4,d@x.com,ok\n', batch_bytes=batch_bytes)
    assert rejected(frame) == [(2, "malformed_csv"), (3, "malformed_csv")]
    assert [(ln, d["contact_key"]) for ln, d in loaded(frame)] == [(4, "u4")]


def test_an_unnamed_header_column_from_a_trailing_comma_is_accepted():
    frame = read_csv(b"contact_key,email,\nu1,a@x.com,\nu2,b@x.com,note\n")
    assert loaded(frame) == [
        (2, {"contact_key": "u1", "email": "a@x.com"}),
        (3, {"contact_key": "u2", "email": "b@x.com", "column_3": "note"}),
    ]


def test_cr_only_line_ends_are_named_in_the_rejection():
    with pytest.raises(FileRejected) as exc:
        read_csv(b"contact_key,email\ru1,a@x.com\r")
    assert exc.value.rule == "invalid_header"
    assert "lines end with CR only" in exc.value.message
