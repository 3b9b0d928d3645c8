"""The warehouse as Delta tables: merges that cost the increment give the tables of
a full rebuild in any arrival order, an event's later copy may move it to another
date partition, every commit records its run, `history` and `query --as-of` read
versions, conflicting commits retry, maintenance keeps readers and writers
working, no personal value reaches a Delta log, and the old layout is refused."""

from __future__ import annotations

import io
import json
import threading
from datetime import date

import polars as pl
import pytest
from click.testing import CliRunner

from ingestion_pipeline import faults
from ingestion_pipeline.cli import main
from ingestion_pipeline.maintenance import maintain
from ingestion_pipeline.pipeline import build_table, ingest_partition, pending_by_partition, tables_behind
from ingestion_pipeline.stages.merge_tables import merge_table
from ingestion_pipeline.streams import STREAMS
from ingestion_pipeline.warehouse import LegacyWarehouse, Warehouse

from .conftest import DAY1, DAY2, contact, event, local_warehouse_only, utc, warehouse_files

TABLES = ("contacts", "accounts", "contact_events", "account_events", "crm_leads", "rejected_records")


def ingest_all(settings, landing, run_id="run"):
    for stream, day in sorted(pending_by_partition(settings, landing.store)):
        ingest_partition(settings, landing.store, stream, day, run_id=run_id)
    for stream in STREAMS:
        build_table(settings, stream)


def tables(warehouse: Warehouse) -> dict[str, list[tuple]]:
    con = warehouse.connect()
    return {t: con.execute(f"select * from {t} order by all").fetchall() for t in TABLES}


def land_history(landing):
    """Five landing days of contacts and events whose versions cross days: a later
    file changes properties (one removed by a JSON null), re-sends events (one with
    a new timestamp, so another date partition), and a group file moves a contact."""
    landing.put("contact/d1.jsonl", [contact(f"c{i}", f"u{i}@x.io", {"n": i, "tier": "a"}) for i in range(30)], utc(2026, 11, 20, 8))
    landing.put(
        "contact_event/d1.jsonl",
        [event(f"e{i}", f"c{i % 30}", ts=f"2026-11-{10 + i % 10}T08:00:00Z") for i in range(60)],
        utc(2026, 11, 20, 9),
    )
    landing.put("contact/d2.jsonl", [contact(f"c{i}", f"v{i}@x.io", {"tier": None, "m": i}) for i in range(20, 40)], utc(2026, 11, 21, 8))
    landing.put(
        "contact_event/d2.jsonl",
        [event(f"e{i}", f"c{i % 30}", name="again", ts="2026-11-21T08:00:00Z") for i in range(50, 70)],
        utc(2026, 11, 21, 9),
    )
    landing.put("group/d3.jsonl", [{"contact_key": f"c{i}", "account_key": f"acct{i % 3}.io"} for i in range(10)], utc(2026, 11, 22, 8))
    landing.put("contact/d4.jsonl", [contact("c5", "five@x.io", {"n": None}), "{broken"], utc(2026, 11, 23, 8))
    landing.put("contact_event/d5.jsonl", [event("e1", "c1", name="moved", ts="2026-11-24T08:00:00Z")], utc(2026, 11, 24, 8))


def test_incremental_merges_give_the_tables_of_a_full_rebuild_in_any_arrival_order(settings, landing, tmp_path):
    land_history(landing)
    days = sorted(pending_by_partition(settings, landing.store))
    results = []
    for name, order in (("forward", days), ("backward", days[::-1]), ("interleaved", days[1::2] + days[0::2])):
        s = settings.__class__(landing_url=settings.landing_url, warehouse_dir=tmp_path / name)
        for stream, day in order:  # one day at a time, each table merged after each day
            ingest_partition(s, landing.store, stream, day, run_id=name)
            for fed in STREAMS:
                build_table(s, fed)
        results.append(tables(Warehouse(s.warehouse_dir)))
    # A rebuild from every committed batch at once (the tables' first merge).
    rebuilt = settings.__class__(landing_url=settings.landing_url, warehouse_dir=tmp_path / "rebuilt")
    for stream, day in days:
        ingest_partition(rebuilt, landing.store, stream, day, run_id="rebuilt")
    for stream in STREAMS:
        assert build_table(rebuilt, stream).report.rebuilt
    expected = tables(Warehouse(rebuilt.warehouse_dir))
    for got in results:
        for table in TABLES:
            assert got[table] == expected[table], table
    con = Warehouse(rebuilt.warehouse_dir).connect()
    assert con.execute("select email, account_id, properties from contacts where contact_id = 'c5'").fetchall() == [
        ("five@x.io", "acct2.io", '{"tier":"a"}')
    ]
    assert con.execute("select properties from contacts where contact_id = 'c25'").fetchall() == [('{"m":25,"n":25}',)]


def test_a_later_copy_of_an_event_that_moves_its_timestamp_leaves_one_row_in_its_new_date_partition(settings, landing, warehouse):
    landing.put("contact_event/a.jsonl", [event("e1", "c1", ts="2026-11-01T10:00:00Z"), event("e2", "c1")], utc(2026, 11, 20, 8))
    fixed = event("e1", "c1", name="fixed", ts="2026-11-19T10:00:00Z", props={"note": "x" * 1500})
    landing.put("contact_event/b.jsonl", [fixed], utc(2026, 11, 21, 8))
    # The later file first (as a backfill of the second day before the first would).
    ingest_partition(settings, landing.store, "contact_event", DAY2, run_id="r1")
    build_table(settings, "contact_event")
    ingest_partition(settings, landing.store, "contact_event", DAY1, run_id="r2")
    report = build_table(settings, "contact_event").report
    assert (report.n_inserted, report.n_updated, report.n_deleted) == (1, 0, 0)  # e2 new; e1 keeps its newer copy
    con = warehouse.connect()
    assert con.execute("select event_id, event, event_date from contact_events order by 1").fetchall() == [
        ("e1", "fixed", date(2026, 11, 19)),
        ("e2", "login", date(2026, 11, 20)),
    ]
    # Reprocessed with a lower record limit, the second day's copy is rejected: e1
    # goes back to its first copy, in its first date partition.
    strict = settings.__class__(**{**settings.__dict__, "max_record_bytes": 1024})
    ingest_partition(strict, landing.store, "contact_event", DAY2, run_id="r3", reprocess=True)
    report = build_table(strict, "contact_event").report
    assert (report.n_inserted, report.n_updated, report.n_deleted, report.updated) == (0, 1, 0, ["e1"])
    assert warehouse.connect().execute("select event_id, event, event_date from contact_events order by 1").fetchall() == [
        ("e1", "login", date(2026, 11, 1)),
        ("e2", "login", date(2026, 11, 20)),
    ]
    files = warehouse.lake.table("contact_events").file_uris()
    assert not any("event_date=2026-11-19" in f for f in files)  # the moved copy's partition holds nothing now


def test_a_merge_touches_only_the_partitions_of_its_keys(settings, landing, warehouse):
    landing.put("contact/a.jsonl", [contact(f"c{i}", f"u{i}@x.io") for i in range(500)], utc(2026, 11, 20, 8))
    ingest_all(settings, landing)
    lake = warehouse.lake
    before = set(lake.table("contacts").file_uris())
    landing.put("contact/b.jsonl", [contact("c7", "new@x.io")], utc(2026, 11, 21, 8))
    ingest_all(settings, landing)
    after = set(lake.table("contacts").file_uris())
    rewritten = before - after
    assert len(rewritten) == 1 and len(after - before) == 1  # one bucket of 64 rewritten, the rest kept
    (commit,) = lake.history("contacts", 1)
    assert commit["operation"] == "MERGE"
    assert commit["operationMetrics"]["num_target_rows_updated"] == 1


def test_after_a_reprocess_the_table_asset_lists_keys_inserted_updated_and_deleted(settings, landing, warehouse):
    landing.put(
        "contact/a.jsonl",
        [contact("c1", "a@x.io", {"p": 1}), contact("c2", "b@x.io"), contact("c3", "x" * 3000 + "@x.io")],
        utc(2026, 11, 20, 8),
    )
    ingest_all(settings, landing)
    strict = settings.__class__(**{**settings.__dict__, "max_record_bytes": 1024})
    landing.put("contact/b.jsonl", [contact("c4", "d@x.io")], utc(2026, 11, 20, 9))
    ingest_partition(strict, landing.store, "contact", DAY1, run_id="reprocess", reprocess=True)
    report = build_table(strict, "contact").report
    assert (report.inserted, report.updated, report.deleted) == (["c4"], [], ["c3"])
    assert (report.n_inserted, report.n_updated, report.n_deleted) == (1, 0, 1)


def test_every_commit_records_its_run_and_history_and_as_of_read_versions(settings, landing, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    runner = CliRunner()
    wh = ["--warehouse", str(settings.warehouse_dir)]
    landing.put("contact/a.jsonl", [contact("c1", "a@x.io")], utc(2026, 11, 20, 8))
    assert runner.invoke(main, ["ingest", "--landing", str(landing.root), *wh]).exit_code == 0
    landing.put("contact/b.jsonl", [contact("c1", "new@x.io"), contact("c2", "b@x.io")], utc(2026, 11, 21, 8))
    assert runner.invoke(main, ["ingest", "--landing", str(landing.root), *wh]).exit_code == 0

    out = runner.invoke(main, ["history", *wh, "--format", "json", "contacts"])
    assert out.exit_code == 0, out.output
    versions = json.loads(out.output)
    assert [(v["version"], v["operation"], v["rows_added"], v["rows_updated"]) for v in versions] == [
        (2, "MERGE", 1, 1),
        (1, "WRITE", 1, 0),
        (0, "CREATE TABLE", 0, 0),
    ]
    run_ids = {v["run_id"] for v in versions}
    assert len(run_ids) == 2 and None not in run_ids  # one per `ingest` (its Dagster run)
    ledger = Warehouse(settings.warehouse_dir).connect().execute("select distinct run_id from ingested_files").fetchall()
    assert {r[0] for r in ledger} <= run_ids

    now = runner.invoke(main, ["query", *wh, "--format", "csv", "select contact_id, email from contacts order by 1"])
    assert now.output == "contact_id,email\nc1,new@x.io\nc2,b@x.io\n"
    then = runner.invoke(main, ["query", *wh, "--format", "csv", "--as-of", "1", "select contact_id, email from contacts order by 1"])
    assert then.exit_code == 0, then.output
    assert then.output == "contact_id,email\nc1,a@x.io\n"
    both = runner.invoke(
        main, ["query", *wh, "--as-of", "contacts=1", "--as-of", "ingested_files=1", "select count(*) from contacts, ingested_files"]
    )
    assert both.exit_code == 0, both.output
    bad = runner.invoke(main, ["query", *wh, "--as-of", "99", "select * from contacts"])
    assert bad.exit_code == 1 and "contacts: version 99 cannot be read" in bad.output


def test_a_conflicting_commit_is_retried_with_backoff_and_logged(settings, landing, warehouse):
    landing.put("contact/a.jsonl", [contact("c1", "a@x.io")], utc(2026, 11, 20, 8))
    ingest_partition(settings, landing.store, "contact", DAY1, run_id="r1")
    said: list[str] = []
    raced = threading.Event()

    def race(label: str) -> None:
        # Between the first merge's read and its commit, another writer merges
        # the same table (in another thread, as another process would).
        if label == "committing contacts" and not raced.is_set():
            raced.set()
            other = threading.Thread(target=merge_table, args=(warehouse, "contacts", "other-writer"))
            other.start()
            other.join()

    with faults.at_points(race):
        report = merge_table(warehouse, "contacts", "first-writer", said.append)
    assert raced.is_set()
    assert len(said) == 1 and said[0].startswith("merging contacts: a concurrent commit won (") and "retrying in" in said[0]
    assert not report.changed  # the other writer had merged everything by then
    assert warehouse.connect().execute("select contact_id from contacts").fetchall() == [("c1",)]
    assert [c.get("run_id") for c in warehouse.lake.history("contacts")][:1] == ["other-writer"]


def test_maintenance_compacts_and_vacuums_while_readers_and_writers_run(settings, landing, warehouse):
    for day in range(20, 26):
        for hour in (8, 9):  # two ingests a day: each adds a file to the day's event partition
            events = [event(f"e{day}-{hour}-{i}", f"c{i}", ts=f"2026-11-{day}T01:00:00Z") for i in range(25)]
            landing.put(f"contact_event/{day}-{hour}.jsonl", events, utc(2026, 11, day, hour))
            contacts = [contact(f"c{i}", f"u{i}-{day}@x.io") for i in range(40)]
            landing.put(f"contact/{day}-{hour}.jsonl", contacts, utc(2026, 11, day, hour))
            ingest_all(settings, landing)
    lake = warehouse.lake
    files_before = {t: len(lake.table(t).file_uris()) for t in ("contact_events", "ingested_files")}
    errors: list[BaseException] = []
    counts: list[int] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                counts.append(warehouse.query("select count(*) from contact_events")[1][0][0])
            except BaseException as exc:
                errors.append(exc)

    def writer():
        try:
            landing.put("contact_event/late.jsonl", [event(f"late-{i}", "c1") for i in range(30)], utc(2026, 11, 26, 8))
            ingest_all(settings, landing, run_id="writer")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    zero = settings.__class__(**{**settings.__dict__, "retention_hours": 0})
    report = maintain(zero, run_id="maintenance")
    threads[1].join(120)
    stop.set()
    threads[0].join(30)
    assert not errors, errors[:3]
    assert counts and counts == sorted(counts)  # never a torn or older table
    build_table(settings, "contact_event")
    assert warehouse.connect().execute("select count(*) from contact_events").fetchone() == (330,)
    assert report.compacted["contact_events"] > 0 and report.vacuumed["contact_events"] > 0
    for table, before in files_before.items():
        assert len(lake.table(table).file_uris()) < before, table
    assert tables_behind(settings) == []


def test_no_personal_value_reaches_a_delta_log(settings, landing, warehouse):
    landing.put("contact/a.jsonl", [contact("secret-id-1", "secret@x.io", {"name": "Secret Name"})], utc(2026, 11, 20, 8))
    landing.put(
        "contact_event/e.jsonl", [event("secret-event-1", "secret-id-1"), event("e2", "secret-id-1", ts="bad")], utc(2026, 11, 20, 9)
    )
    landing.put(
        "crm/l.jsonl",
        [
            {
                "email": "secret@x.io",
                "account": "secret-acct",
                "created_at": "1",
                "is_worked": "true",
                "is_converted": "false",
                "amount": "1",
            }
        ],
        utc(2026, 11, 20, 10),
    )
    ingest_all(settings, landing)
    landing.put("contact/b.jsonl", [contact("secret-id-1", "secret2@x.io")], utc(2026, 11, 21, 8))
    ingest_all(settings, landing)  # a merge of an existing key
    assert warehouse.connect().execute("select count(*) from contacts").fetchone() == (1,)
    logs = [(name, data) for name, data in warehouse_files(settings.warehouse_dir) if "/_delta_log/" in name]
    assert len(logs) > 20
    for name, data in logs:
        text = data.decode("utf-8", "replace")
        if name.endswith(".parquet"):
            text += repr(pl.read_parquet(io.BytesIO(data)).rows())
        for secret in ("secret-id-1", "secret@x.io", "secret2@x.io", "Secret Name", "secret-event-1", "secret-acct"):
            assert secret not in text, (name, secret)


@local_warehouse_only
def test_a_warehouse_of_the_parquet_layout_is_refused_with_how_to_rebuild_it(settings, landing, tmp_path):
    old = tmp_path / "old"
    (old / "contacts").mkdir(parents=True)
    pl.DataFrame({"contact_id": ["c1"]}).write_parquet(old / "contacts" / "data.parquet")
    with pytest.raises(LegacyWarehouse, match="earlier Parquet layout"):
        Warehouse(old).ensure_layout()
    out = CliRunner().invoke(main, ["query", "--warehouse", str(old), "select 1"])
    assert out.exit_code == 1
    assert "is a warehouse of the earlier Parquet layout (contacts/data.parquet)" in out.output
    assert f"mv {old} {old}.parquet-layout" in out.output and "ingestion-pipeline ingest" in out.output
