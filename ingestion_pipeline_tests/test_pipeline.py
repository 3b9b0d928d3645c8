"""The Dagster-free core, one landing day at a time, on real files and Parquet."""

from __future__ import annotations

import json

import pytest

from ingestion_pipeline.pipeline import build_table, ingest_partition, pending_by_partition

from .conftest import DAY1, DAY2, contact, event, utc


def run_day(settings, landing, stream, day, **kw):
    return ingest_partition(settings, landing.store, stream, day, run_id="test-run", **kw)


def table(warehouse, sql):
    return warehouse.connect().sql(sql).pl()


def ledger(warehouse):
    return table(
        warehouse,
        "select file, status, rows_read, rows_loaded, rows_rejected, rows_duplicate, first_error "
        "from ingested_files order by landed_at, file",
    )


def test_day_loads_valid_records_rejects_bad_ones_and_reconciles(settings, landing, warehouse):
    landing.put(
        "contact_event/2026/11/20/part-1.jsonl.gz",
        [
            event("e1", "c1", "signup", props={"plan": "pro"}),
            event("e2", "c2", "login", ts=1763632800),
            event("e1", "c1", "signup-again"),
            "{not json",
            event("e3", "c3", ts="yesterday"),
            event("e4", "undefined"),
        ],
        utc(2026, 11, 20, 12),
    )
    report = run_day(settings, landing, "contact_event", DAY1)
    build_table(settings, "contact_event")

    assert table(
        warehouse, "select event_id, contact_id, event, event_timestamp, properties, _source_line from contact_events order by event_id"
    ).rows() == [
        ("e1", "c1", "signup", utc(2026, 11, 20, 10), '{"plan":"pro"}', 1),
        ("e2", "c2", "login", utc(2025, 11, 20, 10), "{}", 2),
    ]
    assert table(warehouse, "select line, field, rule from rejected_records order by line").rows() == [
        (4, None, "invalid_json"),
        (5, "event_timestamp", "invalid_timestamp"),
        (6, "contact_id", "junk_identifier"),
    ]
    row = report.files[0]
    assert (row["status"], row["rows_read"], row["rows_loaded"], row["rows_rejected"], row["rows_duplicate"]) == (
        "partially_loaded",
        6,
        2,
        3,
        1,
    )
    assert row["rows_read"] == row["rows_loaded"] + row["rows_rejected"] + row["rows_duplicate"]
    assert (
        row["first_error"]
        == "line 4: invalid_json: record is not valid JSON: Expecting property name enclosed in double quotes at column 2"
    )


def test_later_file_wins_over_earlier_for_same_event_id(settings, landing, warehouse):
    landing.put("contact_event/a.jsonl", [event("e1", "c1", "old")], utc(2026, 11, 20, 9))
    landing.put("contact_event/b.jsonl", [event("e1", "c1", "new")], utc(2026, 11, 21, 9))
    # Process the later day first: processing order must not matter.
    run_day(settings, landing, "contact_event", DAY2)
    run_day(settings, landing, "contact_event", DAY1)
    build_table(settings, "contact_event")
    assert table(warehouse, "select event_id, event, _source_file from contact_events").rows() == [("e1", "new", "contact_event/b.jsonl")]


def test_contact_properties_merge_key_by_key_and_null_removes_key(settings, landing, warehouse):
    landing.put(
        "contact/day1.jsonl",
        [contact("c1", "Ann@Example.com ", {"plan": "free", "seats": 3, "tags": ["a"]})],
        utc(2026, 11, 20, 9),
    )
    landing.put(
        "contact/day2.jsonl",
        [
            contact("c1", "ann@new.example.com", {"plan": "pro", "seats": None}),
            contact("c2", "bob@example.com", {"x": {"nested": True}}),
        ],
        utc(2026, 11, 21, 9),
    )
    run_day(settings, landing, "contact", DAY1)
    run_day(settings, landing, "contact", DAY2)
    build_table(settings, "contact")
    assert table(warehouse, "select contact_id, email, properties, first_seen_at, updated_at from contacts order by 1").rows() == [
        ("c1", "ann@new.example.com", '{"plan":"pro","tags":["a"]}', utc(2026, 11, 20, 9), utc(2026, 11, 21, 9)),
        ("c2", "bob@example.com", '{"x":{"nested":true}}', utc(2026, 11, 21, 9), utc(2026, 11, 21, 9)),
    ]


def test_unknown_top_level_fields_are_kept_in_properties_and_reported_as_drift(settings, landing, warehouse):
    landing.put("contact/a.jsonl", [contact("c1", "a@b.co", {"plan": "x"}, utm_source="ads")], utc(2026, 11, 20))
    report = run_day(settings, landing, "contact", DAY1)
    build_table(settings, "contact")
    assert table(warehouse, "select properties from contacts").item() == '{"plan":"x","utm_source":"ads"}'
    assert report.files[0]["schema_drift"] == "utm_source"


def test_identical_content_under_another_name_is_skipped_duplicate(settings, landing, warehouse):
    records = [event("e1", "c1"), event("e2", "c1")]
    landing.put("contact_event/first.jsonl", records, utc(2026, 11, 20, 8))
    landing.put("contact_event/again/copy.jsonl", records, utc(2026, 11, 21, 8))
    run_day(settings, landing, "contact_event", DAY1)
    run_day(settings, landing, "contact_event", DAY2)
    build_table(settings, "contact_event")
    rows = ledger(warehouse).rows()
    assert [r[:6] for r in rows] == [
        ("contact_event/first.jsonl", "loaded", 2, 2, 0, 0),
        ("contact_event/again/copy.jsonl", "skipped_duplicate", 0, 0, 0, 0),
    ]
    assert "contact_event/first.jsonl" in rows[1][6]
    assert table(warehouse, "select distinct _source_file from contact_events").rows() == [("contact_event/first.jsonl",)]


def test_unreadable_files_are_rejected_whole_with_a_reason(settings, landing, warehouse):
    landing.put("contact/broken.jsonl.gz", b"\x1f\x8b\x08\x00" + b"garbage" * 10, utc(2026, 11, 20))
    landing.put("contact/notes.txt", "hello", utc(2026, 11, 20))
    landing.put("contact/empty.jsonl", "\n  \n", utc(2026, 11, 20))
    run_day(settings, landing, "contact", DAY1)
    got = {r[0]: (r[1], r[6]) for r in ledger(warehouse).rows()}
    assert got["contact/broken.jsonl.gz"][0] == "rejected"
    assert got["contact/broken.jsonl.gz"][1].startswith("file: corrupt_gzip: contact/broken.jsonl.gz: gzip stream is corrupt")
    assert got["contact/notes.txt"][0] == "rejected"
    assert "unsupported_format" in got["contact/notes.txt"][1]
    assert got["contact/empty.jsonl"] == ("rejected", "file: empty_file: contact/empty.jsonl: file has no records")
    assert table(warehouse, "select file, line, rule from rejected_records order by file").rows() == [
        ("contact/broken.jsonl.gz", None, "corrupt_gzip"),
        ("contact/empty.jsonl", None, "empty_file"),
        ("contact/notes.txt", None, "unsupported_format"),
    ]


def _snapshot(warehouse):
    con = warehouse.connect()
    return {t: con.sql(f"select * from {t} order by all").pl() for t in ("contacts", "contact_events", "rejected_records")} | {
        "ingested_files": con.sql("select * exclude (processed_at, run_id, stage_id) from ingested_files order by file").pl()
    }


@pytest.mark.parametrize("reprocess", [False, True])
def test_rerunning_a_day_leaves_identical_tables(settings, landing, warehouse, reprocess):
    landing.put("contact/a.jsonl", [contact("c1", "a@b.co", {"k": 1}), "oops"], utc(2026, 11, 20, 1))
    landing.put("contact/b.jsonl", [contact("c1", "a@b.co", {"k": None, "j": 2})], utc(2026, 11, 21, 1))
    landing.put("contact_event/e.jsonl", [event("e1", "c1"), event("e1", "c1", "dup")], utc(2026, 11, 20, 2))
    for stream, day in [("contact", DAY1), ("contact", DAY2), ("contact_event", DAY1)]:
        run_day(settings, landing, stream, day)
    for stream in ("contact", "contact_event"):
        build_table(settings, stream)
    before = _snapshot(warehouse)
    run_day(settings, landing, "contact", DAY1, reprocess=reprocess)
    run_day(settings, landing, "contact_event", DAY1, reprocess=reprocess)
    for stream in ("contact", "contact_event"):
        build_table(settings, stream)
    after = _snapshot(warehouse)
    for name in before:
        assert before[name].equals(after[name]), name


def test_pending_ignores_done_files_and_in_progress_names(settings, landing):
    landing.put("contact/done.jsonl", [contact("c1", "a@b.co")], utc(2026, 11, 20))
    run_day(settings, landing, "contact", DAY1)
    landing.put("contact/new.jsonl", [contact("c2", "b@b.co")], utc(2026, 11, 21))
    for name in ("contact/.hidden.jsonl", "contact/_SUCCESS", "contact/up.jsonl.part", "contact/x.jsonl.tmp", "elsewhere/a.jsonl"):
        landing.put(name, [contact("c3", "c@b.co")], utc(2026, 11, 21))
    pending = pending_by_partition(settings, landing.store)
    assert {k: [f.path for f in v] for k, v in pending.items()} == {("contact", DAY2): ["contact/new.jsonl"]}


def test_file_replaced_in_place_is_ingested_as_a_new_version(settings, landing, warehouse):
    landing.put("contact/a.jsonl", [contact("c1", "old@b.co")], utc(2026, 11, 20, 1))
    run_day(settings, landing, "contact", DAY1)
    landing.put("contact/a.jsonl", [contact("c1", "new@b.co")], utc(2026, 11, 20, 5))
    assert [f.path for f in pending_by_partition(settings, landing.store)[("contact", DAY1)]] == ["contact/a.jsonl"]
    run_day(settings, landing, "contact", DAY1)
    build_table(settings, "contact")
    assert table(warehouse, "select email from contacts").item() == "new@b.co"
    assert ledger(warehouse)["status"].to_list() == ["loaded", "loaded"]


def test_json_document_and_array_files_load_with_record_positions(settings, landing, warehouse):
    landing.put(
        "account/upload.json",
        json.dumps(
            {
                "stream": "account",
                "data": [
                    {"account_id": "a1", "domain": "https://www.Example.com/x", "account_properties": {"n": 1}},
                    {"account_id": "a2", "domain": "not a domain", "account_properties": {}},
                ],
            }
        ),
        utc(2026, 11, 20),
    )
    run_day(settings, landing, "account", DAY1)
    build_table(settings, "account")
    assert table(warehouse, "select account_id, domain, properties, _source_line from accounts").rows() == [
        ("a1", "example.com", '{"n":1}', 1)
    ]
    assert table(warehouse, "select line, field, rule from rejected_records").rows() == [(2, "domain", "invalid_domain")]
