"""Overlapping runs on one warehouse: CLI ingests in several processes and a Dagster
partition run (a manual backfill) at the same time leave the tables of one
sequential run (Delta's commit protocol decides between conflicting commits; the
loser retries), and a reader sees whole tables throughout."""

from __future__ import annotations

import subprocess
import threading
import time

import dagster as dg
import pytest

from ingestion_pipeline.definitions import build_definitions
from ingestion_pipeline.defs.resources import IngestResource
from ingestion_pipeline.ledger import read_ledger
from ingestion_pipeline.warehouse import Warehouse

from .harness import build_landing, clean_env, ingest, ingest_command, snapshot


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The landing and the tables of one uninterrupted, unshared run."""
    root = tmp_path_factory.mktemp("concurrency")
    landing = build_landing(root / "landing")
    run = ingest(landing.root, root / "sequential")
    assert run.returncode == 0, run.stderr
    return landing.root, snapshot(root / "sequential")


def test_three_overlapping_cli_ingests_leave_the_tables_of_one_run(sequential, tmp_path):
    landing, expected = sequential
    warehouse = tmp_path / "warehouse"
    procs = [
        subprocess.Popen(ingest_command(landing, warehouse), env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out + err
    assert snapshot(warehouse) == expected
    ledger = read_ledger(Warehouse(warehouse))
    assert ledger["file_id"].is_unique().all()  # one row per file version, however many runs saw it
    assert ledger.height == len(expected["ingested_files"])


def test_a_backfill_run_and_a_cli_ingest_at_the_same_time(sequential, tmp_path):
    """A Dagster run of every stream for the first landing day (as a backfill from
    the UI launches it) while the CLI ingests everything, with a reader querying
    throughout: the reader always sees whole tables, the result is one run's."""
    landing, expected = sequential
    warehouse = tmp_path / "warehouse"
    ingest_resource = IngestResource(landing_url=str(landing), warehouse_dir=str(warehouse))
    job = build_definitions(ingest_resource).resolve_job_def("ingest_job")
    cli = subprocess.Popen(ingest_command(landing, warehouse), env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reads: list[int] = []
    errors: list[Exception] = []
    done = threading.Event()

    def reader():
        while not done.is_set():
            try:
                con = Warehouse(warehouse).connect()
                reads.append(con.execute("SELECT count(*) FROM contacts").fetchone()[0])
                con.execute("SELECT count(*) FROM ingested_files WHERE status = 'failed'").fetchone()
            except Exception as exc:
                errors.append(exc)
            time.sleep(0.05)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = job.execute_in_process(partition_key="2026-11-20", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        out, err = cli.communicate(timeout=300)
    finally:
        done.set()
        thread.join()
    assert result.success
    assert cli.returncode == 0, out + err
    assert not errors, errors[:3]
    assert reads and reads == sorted(reads)  # contacts only ever grow here: never a torn or older table
    # The backfill may have committed the first day's files itself: whichever
    # process did, every table is the sequential run's.
    assert snapshot(warehouse) == expected
