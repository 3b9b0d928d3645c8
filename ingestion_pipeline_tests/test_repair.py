"""Repair without the UI: a reprocess after a limit change reports what changed per
file, a table left behind the ledger is merged by the next ingest, and what a
killed run appended before its ledger commit is never seen."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import dagster as dg
import pytest
from click.testing import CliRunner

from ingestion_pipeline.cli import main
from ingestion_pipeline.definitions import build_definitions
from ingestion_pipeline.defs.resources import IngestResource
from ingestion_pipeline.landing import LocalLandingStore
from ingestion_pipeline.ledger import read_ledger
from ingestion_pipeline.pipeline import build_table, ingest_partition, tables_behind

from .conftest import DAY1, contact, event, local_warehouse_only, utc
from .harness import clean_env, ingest

LONG = "x" * 3000


def put_day(landing):
    landing.put(
        "contact/a.jsonl", [contact("c1", "a@x.io"), contact("c2", "b@x.io", {"bio": LONG}), contact("c3", "c@x.io")], utc(2026, 11, 20, 8)
    )
    landing.put("contact/b.jsonl", [contact("c4", "d@x.io")], utc(2026, 11, 20, 9))


def test_reprocess_after_a_limit_change_reports_the_change_in_counts(settings, landing, warehouse):
    put_day(landing)
    first = ingest_partition(settings, landing.store, "contact", DAY1, run_id="r1")
    assert [r["rows_loaded"] for r in first.files] == [3, 1]
    assert first.changes() == []  # nothing before: a first run changes nothing it can compare
    stricter = settings.__class__(**{**settings.__dict__, "max_record_bytes": 1024})
    again = ingest_partition(stricter, landing.store, "contact", DAY1, run_id="r2", reprocess=True)
    assert again.changes() == ["contact/a.jsonl: status loaded -> partially_loaded, rows_loaded 3 -> 2 (-1), rows_rejected 0 -> 1 (+1)"]
    build_table(stricter, "contact")
    con = warehouse.connect()
    assert con.sql("select contact_id from contacts order by 1").fetchall() == [("c1",), ("c3",), ("c4",)]
    assert con.sql("select file, line, rule from rejected_records").fetchall() == [("contact/a.jsonl", 2, "record_too_large")]
    # unchanged config: a reprocess changes nothing and says so
    assert ingest_partition(stricter, landing.store, "contact", DAY1, run_id="r3", reprocess=True).changes() == []


def test_the_reprocess_run_config_records_the_changes_on_the_materialisation(settings, landing, tmp_path):
    put_day(landing)
    definitions = build_definitions(IngestResource(landing_url=settings.landing_url, warehouse_dir=str(settings.warehouse_dir)))
    job = definitions.resolve_job_def("ingest_job")
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        assert job.execute_in_process(partition_key="2026-11-20", instance=instance).success
        strict = build_definitions(
            IngestResource(landing_url=settings.landing_url, warehouse_dir=str(settings.warehouse_dir), max_record_bytes=1024)
        ).resolve_job_def("ingest_job")
        result = strict.execute_in_process(
            partition_key="2026-11-20",
            instance=instance,
            asset_selection=[dg.AssetKey("contact_batch"), dg.AssetKey("contacts")],
            run_config={"ops": {"contact_batch": {"config": {"reprocess": True}}}},
        )
        assert result.success
        materialization = instance.get_latest_materialization_event(dg.AssetKey("contact_batch")).asset_materialization
        assert materialization.metadata["reprocess_changes"].value == (
            "rows_loaded 4 -> 3 (-1) over 2 file(s)\n\n"
            "- contact/a.jsonl: status loaded -> partially_loaded, rows_loaded 3 -> 2 (-1), rows_rejected 0 -> 1 (+1)"
        )
        table = instance.get_latest_materialization_event(dg.AssetKey("contacts")).asset_materialization
        assert table.metadata["dagster/row_count"].value == 3


def test_a_table_left_behind_the_ledger_is_merged_by_the_next_ingest(settings, landing, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    landing.put("contact/a.jsonl", [contact("c1", "a@x.io")], utc(2026, 11, 20, 8))
    landing.put("contact_event/e.jsonl", [event("e1", "c1")], utc(2026, 11, 20, 8))
    args = ["ingest", "--landing", str(landing.root), "--warehouse", str(settings.warehouse_dir)]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert tables_behind(settings) == []
    # A run that stopped after its ledger commit, before its table step (killed, machine lost).
    landing.put("contact/b.jsonl", [contact("c2", "b@x.io")], utc(2026, 11, 20, 9))
    ingest_partition(settings, landing.store, "contact", DAY1, run_id="killed")
    assert tables_behind(settings) == ["contacts"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "merging contacts: behind the ledger" in result.output
    assert tables_behind(settings) == []
    out = CliRunner().invoke(
        main, ["query", "--warehouse", str(settings.warehouse_dir), "--format", "json", "select contact_id, email from contacts order by 1"]
    )
    assert json.loads(out.output) == [{"contact_id": "c1", "email": "a@x.io"}, {"contact_id": "c2", "email": "b@x.io"}]


@local_warehouse_only
def test_batch_rows_of_a_run_killed_before_its_ledger_commit_are_never_seen(settings, landing, warehouse, tmp_path):
    landing.put("contact/a.jsonl", [contact("c1", "a@x.io")], utc(2026, 11, 20, 8))
    trace = tmp_path / "trace.tsv"
    args = [sys.executable, "-c", INGEST_DAY, str(landing.root), str(warehouse.root), "r0"]
    subprocess.run(args, env=clean_env({"INGEST_CRASH_TRACE": str(trace)}), check=True, cwd=tmp_path)
    shutil.rmtree(warehouse.root)
    points = [line.split("\t") for line in trace.read_text().splitlines()]
    (point,) = [int(n) for n, label in points if label == "committed _batches/contact/records"]
    killed = subprocess.run([*args[:-1], "killed"], env=clean_env({"INGEST_CRASH_AT": str(point)}), cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL
    # Its rows are in the batch, referenced by no ledger row: no table shows them.
    stages = warehouse.scan("_batches/contact/records").select("_stage_id").unique().collect()
    assert stages.height == 1
    assert read_ledger(warehouse).is_empty()
    build_table(settings, "contact")
    assert warehouse.connect().execute("select count(*) from contacts").fetchone() == (0,)
    # The file is still pending; the next run stages it again and loads it once.
    report = ingest_partition(settings, landing.store, "contact", DAY1, run_id="r2")
    assert [(r["file"], r["status"], r["rows_loaded"]) for r in report.files] == [("contact/a.jsonl", "loaded", 1)]
    build_table(settings, "contact")
    assert warehouse.connect().execute("select contact_id, email from contacts").fetchall() == [("c1", "a@x.io")]


INGEST_DAY = """
import sys
from datetime import date
from ingestion_pipeline.landing import LocalLandingStore
from ingestion_pipeline.pipeline import ingest_partition
from ingestion_pipeline.settings import Settings
settings = Settings(landing_url=sys.argv[1], warehouse_dir=sys.argv[2])
ingest_partition(settings, LocalLandingStore(sys.argv[1]), "contact", date(2026, 11, 20), run_id=sys.argv[3])
"""


class UnreachableStore(LocalLandingStore):
    """Lists like the landing folder but every read fails. A mock, for this fault
    only: as root on a local disk an I/O error on read cannot be caused for real
    (the same fault for real, an S3 store that is down, is in test_operator_ui.py)."""

    def open(self, file):
        raise OSError(5, "Input/output error", file.path)


def test_a_reprocess_that_cannot_read_a_file_keeps_its_loaded_rows_and_fails(settings, landing, warehouse):
    put_day(landing)
    ingest_partition(settings, landing.store, "contact", DAY1, run_id="r1")
    build_table(settings, "contact")
    before = warehouse.connect().execute("select * from contacts order by all").fetchall()
    report = ingest_partition(settings, UnreachableStore(landing.root), "contact", DAY1, run_id="r2", reprocess=True)
    assert report.errors == [
        "contact/a.jsonl: OSError: [Errno 5] Input/output error: 'contact/a.jsonl'",
        "contact/b.jsonl: OSError: [Errno 5] Input/output error: 'contact/b.jsonl'",
    ]
    assert [(r["status"], r["rows_loaded"], r["run_id"]) for r in report.files] == [("loaded", 3, "r1"), ("loaded", 1, "r1")]
    build_table(settings, "contact")
    assert warehouse.connect().execute("select * from contacts order by all").fetchall() == before


REPROCESS = """
import sys
from datetime import date
from ingestion_pipeline.landing import LocalLandingStore
from ingestion_pipeline.pipeline import ingest_partition
from ingestion_pipeline.settings import Settings
settings = Settings(landing_url=sys.argv[1], warehouse_dir=sys.argv[2], max_record_bytes=1024)
ingest_partition(settings, LocalLandingStore(sys.argv[1]), "contact", date(2026, 11, 20), run_id="reprocess", reprocess=True)
"""


@pytest.mark.slow  # the crash harness: ingest processes traced, then one killed
@local_warehouse_only
def test_a_reprocess_killed_before_its_ledger_commit_changes_nothing_and_can_be_run_again(settings, landing, warehouse, tmp_path):
    put_day(landing)
    first = ingest(landing.root, warehouse.root)
    assert first.returncode == 0, first.stderr
    con = warehouse.connect()
    before = {
        t: con.execute(f"select * exclude (processed_at, run_id, stage_id) from {t} order by all").fetchall() for t in ("ingested_files",)
    }
    before["contacts"] = con.execute("select * from contacts order by all").fetchall()
    trace = tmp_path / "trace.tsv"
    args = [sys.executable, "-c", REPROCESS, str(landing.root), str(warehouse.root)]
    subprocess.run(args, env=clean_env({"INGEST_CRASH_TRACE": str(trace)}), check=True, cwd=tmp_path)
    points = [line.split("\t") for line in trace.read_text().splitlines()]
    (point,) = [int(n) for n, label in points if label == "committed _batches/contact/records"]
    # Start again from the first ingest's state, then kill the reprocess right after its batch rows are appended.
    shutil.rmtree(warehouse.root)
    assert ingest(landing.root, warehouse.root).returncode == 0
    killed = subprocess.run(args, env=clean_env({"INGEST_CRASH_AT": str(point)}), cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL
    again = ingest(landing.root, warehouse.root)
    assert again.returncode == 0, again.stderr
    assert "Nothing pending" in again.stdout  # the ledger, unchanged, says every file is done
    con = warehouse.connect()
    assert (
        con.execute("select * exclude (processed_at, run_id, stage_id) from ingested_files order by all").fetchall()
        == before["ingested_files"]
    )
    assert con.execute("select * from contacts order by all").fetchall() == before["contacts"]
    # Run again (as Dagster's run retry does), the reprocess commits whole.
    subprocess.run(args, env=clean_env(), check=True, cwd=tmp_path)
    build_table(settings, "contact")
    con = warehouse.connect()
    assert con.execute("select file, status, rows_loaded, rows_rejected from ingested_files order by file").fetchall() == [
        ("contact/a.jsonl", "partially_loaded", 2, 1),
        ("contact/b.jsonl", "loaded", 1, 0),
    ]
    assert con.execute("select contact_id from contacts order by 1").fetchall() == [("c1",), ("c3",), ("c4",)]
    assert tables_behind(settings) == []
