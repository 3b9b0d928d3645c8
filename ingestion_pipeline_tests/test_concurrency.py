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

from .conftest import contact, utc
from .harness import build_landing, clean_env, ingest, ingest_command, snapshot

SLOW = pytest.mark.slow  # ingest processes at once


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The landing and the tables of one uninterrupted, unshared run."""
    root = tmp_path_factory.mktemp("concurrency")
    landing = build_landing(root / "landing")
    run = ingest(landing.root, root / "sequential")
    assert run.returncode == 0, run.stderr
    return landing.root, snapshot(root / "sequential")


@SLOW
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


@SLOW
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


# Started at once, two processes reach instance creation up to a second apart (imports,
# listing); this barrier, loaded by the interpreter before the CLI runs, holds each one
# just before it creates its Dagster instance until both are there, so that they meet
# every time rather than in about 4 runs out of 10. It changes when, not what, they run.
BARRIER = """
import os, time
import ingestion_pipeline.definitions as definitions

_build = definitions.build_definitions

def build_definitions(*args, **kwargs):
    folder = os.environ["TEST_BARRIER_DIR"]
    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(folder)) < int(os.environ["TEST_BARRIER_PARTIES"]) and time.monotonic() < deadline:
        time.sleep(0.005)
    return _build(*args, **kwargs)

definitions.build_definitions = build_definitions
"""


@SLOW
def test_two_ingests_at_once_on_a_fresh_dagster_home_leave_it_usable(tmp_path, landing):
    home = tmp_path / "dagster_home"  # never used: its SQLite storage does not exist yet
    warehouse = tmp_path / "warehouse"
    hook, barrier = tmp_path / "hook", tmp_path / "barrier"
    hook.mkdir()
    barrier.mkdir()
    (hook / "sitecustomize.py").write_text(BARRIER)
    landing.put("contact/a.jsonl", [contact("c1", "a@x.io")], utc(2026, 11, 20, 8))
    env = clean_env({"DAGSTER_HOME": str(home), "PYTHONPATH": str(hook), "TEST_BARRIER_DIR": str(barrier), "TEST_BARRIER_PARTIES": "2"})
    procs = [
        subprocess.Popen(ingest_command(landing.root, warehouse), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out + err
    assert len(list(barrier.iterdir())) == 2  # both reached instance creation together

    # The timers fire again: the home is usable, and the next file loads.
    landing.put("contact/b.jsonl", [contact("c2", "b@x.io")], utc(2026, 11, 20, 9))
    again = subprocess.run(
        ingest_command(landing.root, warehouse), env=clean_env({"DAGSTER_HOME": str(home)}), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "loaded            contact/b.jsonl" in again.stdout
    assert "more than one head" not in again.stderr
    ledger = read_ledger(Warehouse(warehouse))
    assert sorted(ledger["file"].to_list()) == ["contact/a.jsonl", "contact/b.jsonl"]
