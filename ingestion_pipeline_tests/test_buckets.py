"""Hash buckets and threaded staging (issue 5): tables are merged one bucket at a
time and batches are parsed by two threads; neither may change any output."""

from __future__ import annotations

import dataclasses

import polars as pl

from ingestion_pipeline import merge
from ingestion_pipeline.pipeline import build_table, ingest_partition
from ingestion_pipeline.streams import STREAMS
from ingestion_pipeline.warehouse import batch_table, record_schema

from .conftest import DAY1, DAY2, contact, event, utc


def run_day(settings, landing, stream, day):
    return ingest_partition(settings, landing.store, stream, day, run_id="test-run")


def rows(warehouse, sql):
    return warehouse.connect().sql(sql).pl()


def test_key_hash_is_stable():
    # Stored `_key_hash` / `_bucket` values must mean the same key to every later
    # merge: if a polars upgrade changes its string hash, this fails before any
    # warehouse holds batches hashed two ways.
    frame = pl.DataFrame({"event_id": ["ev-1", "ev-2", "c-9", "e" * 40], "account": ["x", None, "y", "z"]})
    assert frame.select(merge.key_hash("event_id"), merge.bucket("event_id")).rows() == [
        (8993296897621610355, 51),
        (3960776503413896438, 54),
        (5277339880815876283, 59),
        (6821813809553937296, 16),
    ]
    assert frame.select(merge.bucket(["event_id", "account"]))["_bucket"].to_list() == [4, 56, 44, 48]


def many_events(n: int, start: int = 0, day: int = 20) -> list:
    """Events with ids in every bucket, repeated ids and bad lines."""
    records: list = []
    for i in range(start, start + n):
        records.append(event(f"e{i}", f"c{i % 97}", ts=f"2026-11-{day}T{i % 24:02d}:00:00Z", props={"i": i}))
        if i % 10 == 0:
            records.append(event(f"e{i}", "c-dup", "dup-within-file"))  # dropped: the first one wins
        if i % 41 == 0:
            records.append("{broken")
    return records


def test_many_small_batches_in_threads_give_what_one_batch_gives(settings, landing, warehouse, tmp_path):
    landing.put("contact_event/a.jsonl", many_events(3000), utc(2026, 11, 20, 8))
    landing.put("contact_event/b.jsonl.gz", many_events(1500, start=2000), utc(2026, 11, 20, 9))
    tiny = dataclasses.replace(settings, batch_bytes=4096, warehouse_dir=tmp_path / "tiny")
    for s in (settings, tiny):
        run_day(s, landing, "contact_event", DAY1)
        build_table(s, "contact_event")
    from ingestion_pipeline.warehouse import Warehouse

    small = Warehouse(tiny.warehouse_dir)
    queries = [
        "select * exclude (processed_at, stage_id) from ingested_files order by file",
        "select * from rejected_records order by file, line",
        "select * from contact_events order by event_id",
    ]
    for sql in queries:
        one, many = rows(warehouse, sql), rows(small, sql)
        assert one.equals(many), sql
    ledger = rows(warehouse, "select file, rows_read, rows_loaded, rows_rejected, rows_duplicate from ingested_files order by file")
    assert ledger.rows() == [
        ("contact_event/a.jsonl", 3000 + 300 + 74, 3000, 74, 300),
        ("contact_event/b.jsonl.gz", 1500 + 150 + 37, 1500, 37, 150),
    ]
    table = rows(warehouse, "select event_id, event, _source_file from contact_events")
    assert table.height == 3500 and table["event_id"].n_unique() == 3500
    # b.jsonl.gz landed later: its copies of e2000..e2999 win.
    assert table.filter(pl.col("event_id") == "e2500")["_source_file"].item() == "contact_event/b.jsonl.gz"
    assert table.filter(pl.col("event_id") == "e10")["event"].item() == "login"
    # Each staged file, so each appended batch file, is sorted by bucket.
    batch = warehouse.scan(batch_table("contact_event", "records")).select("_source_file", "_bucket").collect()
    for _, group in batch.group_by("_source_file"):
        assert group["_bucket"].is_sorted() and group["_bucket"].n_unique() == merge.BUCKETS


def test_bucket_passes_cover_every_bucket_once(monkeypatch):
    assert merge.bucket_passes(0) == merge.bucket_passes(10) == [range(0, merge.BUCKETS)]
    monkeypatch.setattr(merge, "ROWS_PER_PASS", 100)
    assert merge.bucket_passes(250) == [range(0, 21), range(21, 42), range(42, 64)]
    assert merge.bucket_passes(10**9) == [range(b, b + 1) for b in range(merge.BUCKETS)]


def test_large_files_are_merged_in_several_passes_with_the_same_tables(settings, landing, warehouse, tmp_path, monkeypatch):
    landing.put("contact_event/a.jsonl", many_events(2000), utc(2026, 11, 20, 8))
    landing.put("contact_event/b.jsonl", many_events(2000, start=1000), utc(2026, 11, 20, 9))
    run_day(settings, landing, "contact_event", DAY1)
    build_table(settings, "contact_event")
    monkeypatch.setattr(merge, "ROWS_PER_PASS", 100)  # 64 passes of one bucket each
    passes = dataclasses.replace(settings, warehouse_dir=tmp_path / "passes")
    run_day(passes, landing, "contact_event", DAY1)
    summary = build_table(passes, "contact_event")
    from ingestion_pipeline.warehouse import Warehouse

    sql = "select * from contact_events order by event_id"
    assert rows(warehouse, sql).equals(rows(Warehouse(passes.warehouse_dir), sql))
    assert summary.rows == 3000 and summary.duplicate_keys == 0


def test_the_bucketed_build_equals_one_merge_of_everything(settings, landing, warehouse, monkeypatch):
    monkeypatch.setattr(merge, "ROWS_PER_PASS", 200)
    landing.put("contact_event/a.jsonl", many_events(2000), utc(2026, 11, 20, 8))
    landing.put("contact_event/b.jsonl", many_events(2000, start=1000, day=21), utc(2026, 11, 21, 8))
    landing.put("contact/c.jsonl", [contact(f"c{i}", f"u{i}@x.com", {"n": i}) for i in range(500)], utc(2026, 11, 20, 8))
    landing.put("contact/d.jsonl", [contact(f"c{i}", f"new{i}@x.com", {"n": None, "m": i}) for i in range(250, 750)], utc(2026, 11, 21, 8))
    for day in (DAY1, DAY2):
        run_day(settings, landing, "contact_event", day)
        run_day(settings, landing, "contact", day)
    spec = STREAMS["contact_event"]
    summary = build_table(settings, "contact_event")
    records = warehouse.scan(batch_table("contact_event", "records")).select(list(record_schema(spec)))
    whole = merge.current_events(records, spec.keys).collect()
    got = rows(warehouse, "select * exclude (event_date) from contact_events order by event_id")
    assert got.equals(whole)
    assert summary.rows == whole.height == 3000 and summary.duplicate_keys == 0

    summary = build_table(settings, "contact")
    got = rows(warehouse, "select contact_id, email, properties from contacts order by contact_id")
    assert summary.rows == got.height == 750 and summary.duplicate_keys == 0
    by_id = {r[0]: r[1:] for r in got.rows()}
    assert by_id["c10"] == ("u10@x.com", '{"n":10}')
    assert by_id["c300"] == ("new300@x.com", '{"m":300}')  # n removed by an explicit null
    assert by_id["c700"] == ("new700@x.com", '{"m":700}')
