"""Hash buckets and threaded staging (issue 5): tables are merged one bucket at a
time and batches are parsed by two threads; neither may change any output."""

from __future__ import annotations

import dataclasses
import glob

import polars as pl
import pyarrow.parquet as pq

from ingestion_pipeline import merge
from ingestion_pipeline.pipeline import build_table, ingest_partition, table_schema_batch
from ingestion_pipeline.streams import STREAMS
from ingestion_pipeline.warehouse import scan_all

from .conftest import DAY1, DAY2, contact, event, utc


def run_day(settings, landing, stream, day):
    return ingest_partition(settings, landing.store, stream, day, run_id="test-run")


def rows(warehouse, sql):
    return warehouse.connect().sql(sql).pl()


def test_bucket_is_stable():
    # Stored `_bucket` values must mean the same bucket to every later build: if a
    # polars upgrade changes its string hash, this fails before any warehouse
    # holds batches bucketed two ways (the table build would then report the
    # misplaced keys through the unique_key check).
    frame = pl.DataFrame({"event_id": ["ev-1", "ev-2", "c-9", "e" * 40], "account": ["x", None, "y", "z"]})
    assert frame.select(merge.bucket("event_id"))["_bucket"].to_list() == [7, 12, 22, 1]
    assert frame.select(merge.bucket(["event_id", "account"]))["_bucket"].to_list() == [9, 16, 24, 0]


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
        "select * exclude (processed_at) from ingested_files order by file",
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
    # Each staged and committed batch is sorted by bucket.
    batch = glob.glob(str(warehouse.root / "_batches" / "contact_event" / "*" / "records.parquet"))[0]
    buckets = pl.read_parquet(batch)["_bucket"]
    assert buckets.is_sorted() and buckets.n_unique() == merge.BUCKETS


def test_bucket_passes_cover_every_bucket_once(monkeypatch):
    assert merge.bucket_passes(0) == merge.bucket_passes(10) == [range(0, merge.BUCKETS)]
    monkeypatch.setattr(merge, "ROWS_PER_PASS", 100)
    assert merge.bucket_passes(250) == [range(0, 10), range(10, 21), range(21, 32)]
    assert merge.bucket_passes(10**9) == [range(b, b + 1) for b in range(merge.BUCKETS)]


def test_large_files_are_merged_in_several_passes_with_the_same_tables(settings, landing, warehouse, tmp_path, monkeypatch):
    landing.put("contact_event/a.jsonl", many_events(2000), utc(2026, 11, 20, 8))
    landing.put("contact_event/b.jsonl", many_events(2000, start=1000), utc(2026, 11, 20, 9))
    run_day(settings, landing, "contact_event", DAY1)
    build_table(settings, "contact_event")
    monkeypatch.setattr(merge, "ROWS_PER_PASS", 100)  # 32 passes of one bucket each
    passes = dataclasses.replace(settings, warehouse_dir=tmp_path / "passes")
    run_day(passes, landing, "contact_event", DAY1)
    summary = build_table(passes, "contact_event")
    from ingestion_pipeline.warehouse import Warehouse

    sql = "select * from contact_events order by event_id"
    assert rows(warehouse, sql).equals(rows(Warehouse(passes.warehouse_dir), sql))
    assert summary.rows == summary.distinct_keys == 3000
    # A pass of one bucket is one row group, so a reader of a bucket skips the others.
    batch = glob.glob(str(passes.warehouse_dir / "_batches" / "contact_event" / "*" / "records.parquet"))[0]
    assert pq.ParquetFile(batch).metadata.num_row_groups == merge.BUCKETS


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
    records = scan_all(glob.glob(warehouse.batch_glob("contact_event", "records.parquet")), table_schema_batch(spec))
    whole = merge.current_events(records, spec.keys).drop("_bucket").collect()
    assert rows(warehouse, "select * from contact_events order by event_id").equals(whole)
    assert summary.rows == summary.distinct_keys == whole.height == 3000

    summary = build_table(settings, "contact")
    got = rows(warehouse, "select contact_id, email, properties from contacts order by contact_id")
    assert summary.rows == summary.distinct_keys == got.height == 750
    by_id = {r[0]: r[1:] for r in got.rows()}
    assert by_id["c10"] == ("u10@x.com", '{"n":10}')
    assert by_id["c300"] == ("new300@x.com", '{"m":300}')  # n removed by an explicit null
    assert by_id["c700"] == ("new700@x.com", '{"m":700}')


def test_a_batch_written_before_buckets_is_merged_by_its_key(settings, landing, warehouse, monkeypatch):
    monkeypatch.setattr(merge, "ROWS_PER_PASS", 20)
    landing.put("contact_event/a.jsonl", [event(f"e{i}", "c1", "old") for i in range(200)], utc(2026, 11, 20, 8))
    run_day(settings, landing, "contact_event", DAY1)
    # A warehouse from before buckets: its batch has no `_bucket` column.
    old = glob.glob(warehouse.batch_glob("contact_event", "records.parquet"))[0]
    pl.read_parquet(old).drop("_bucket").write_parquet(old)
    landing.put("contact_event/b.jsonl", [event(f"e{i}", "c1", "new") for i in range(100, 300)], utc(2026, 11, 21, 8))
    run_day(settings, landing, "contact_event", DAY2)
    summary = build_table(settings, "contact_event")
    table = rows(warehouse, "select event, count(*) as n from contact_events group by event order by event")
    assert table.rows() == [("new", 200), ("old", 100)]
    assert summary.rows == summary.distinct_keys == 300


def test_keys_outside_their_bucket_fail_the_unique_key_count(settings, landing, warehouse, monkeypatch):
    # As if the batches had been bucketed by another hash: the build cannot see
    # duplicates across passes, so it counts misplaced keys as not distinct.
    monkeypatch.setattr(merge, "ROWS_PER_PASS", 1)  # one bucket per pass
    landing.put("contact_event/a.jsonl", [event(f"e{i}", "c1") for i in range(100)], utc(2026, 11, 20, 8))
    run_day(settings, landing, "contact_event", DAY1)
    path = glob.glob(warehouse.batch_glob("contact_event", "records.parquet"))[0]
    frame = pl.read_parquet(path)
    frame.with_columns(_bucket=((pl.col("_bucket") + 1) % merge.BUCKETS).cast(pl.UInt8)).write_parquet(path)
    summary = build_table(settings, "contact_event")
    assert summary.rows == 100 and summary.distinct_keys == 0
