"""Crash safety: `ingestion-pipeline ingest` is SIGKILLed at its Nth durable step
(INGEST_CRASH_AT, see ingestion_pipeline/faults.py), a reader looks at the warehouse
as it was left, and one more `ingest` must leave exactly the tables and ledger of a
run that was never interrupted.

By default a reduced set of 8 points runs (see DEFAULT_KINDS); `INGEST_CRASH_POINTS=all`
runs every point of the run (about 200), `INGEST_CRASH_POINTS=40` 40 points spread
evenly over the run.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ingestion_pipeline.warehouse import Warehouse

from .harness import build_landing, clean_env, ingest, ingest_command, snapshot

pytestmark = pytest.mark.slow  # dozens of ingest processes, each killed at one point


def kind(label: str) -> str:
    """A point's kind: the step, and what it wrote (a staging part's kind, or the
    warehouse area or table)."""
    step = re.match(r"(parsed a batch|wrote staging part|staged|committing|committed)", label)
    target = re.search(
        r"(_batches/\w+/\w+|rejected_records|ingested_files|erasures|contacts|accounts|contact_events|account_events|crm_leads)\b", label
    )
    return f"{step.group(1) if step else label} [{target.group(1) if target else ''}]"


def chosen_points(trace: list[tuple[int, str]]) -> list[int]:
    wanted = os.environ.get("INGEST_CRASH_POINTS", "")
    if wanted == "all":
        return [n for n, _ in trace]
    if wanted.isdigit():
        step = max(1, len(trace) / int(wanted))
        return sorted({trace[int(i * step)][0] for i in range(min(int(wanted), len(trace)))})
    last_of_kind = {kind(label): n for n, label in trace}
    return sorted(n for k, n in last_of_kind.items() if k in DEFAULT_KINDS)


# The reduced set: the last point of each of these kinds. The last ledger commit is
# the one after which only the tables are left to merge; the table points fall
# within the merges (one table committed, the next not yet).
DEFAULT_KINDS = {
    "parsed a batch []",
    "staged []",
    "committed [_batches/contact/records]",
    "committing [ingested_files]",
    "committed [ingested_files]",
    "committed [rejected_records]",
    "committed [contacts]",
    "committing [contact_events]",
}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    landing = build_landing(root / "landing")
    trace = root / "trace.tsv"
    run = ingest(landing.root, root / "warehouse", trace=trace)
    assert run.returncode == 0, run.stderr
    points = [(int(n), label) for n, label in (line.split("\t", 1) for line in trace.read_text().splitlines())]
    return landing.root, snapshot(root / "warehouse"), points, root


def test_the_uninterrupted_run_has_the_expected_results_and_enough_crash_points(baseline):
    _, tables, points, _ = baseline
    statuses = sorted({row[5] for row in tables["ingested_files"]})
    assert statuses == ["loaded", "partially_loaded", "rejected", "skipped_duplicate"]
    assert len(points) >= 50
    kinds = {kind(label) for _, label in points}
    for expected in (
        "parsed a batch []",
        "wrote staging part []",
        "staged []",
        "committed [_batches/contact/records]",
        "committed [rejected_records]",
        "committed [ingested_files]",
        "committed [contacts]",
        "committed [contact_events]",
    ):
        assert expected in kinds, (expected, sorted(kinds))


def crash_and_recover(
    landing: Path, root: Path, n: int, label: str, warehouse: Path | str | None = None, env: dict | None = None
) -> tuple[int, str, list[str], dict | None]:
    """SIGKILL at point n, read what a reader would see, rerun, snapshot."""
    warehouse = warehouse or root / f"wh-{n}"
    killed = ingest(landing, warehouse, crash_at=n, env=env)
    if killed.returncode != -signal.SIGKILL:
        return n, label, [f"point {n} ({label}) was not reached: exit {killed.returncode}\n{killed.stderr[-2000:]}"], None
    problems, tables = recover(landing, warehouse, f"point {n} ({label})", env)
    return n, label, problems, tables


def recover(landing: Path, warehouse: Path | str, what: str, env: dict | None = None) -> tuple[list[str], dict | None]:
    """What a reader of the interrupted warehouse meets, then a rerun: (problems,
    the tables after the rerun)."""
    problems = []
    if Warehouse(warehouse).lake.exists("ingested_files"):
        # A reader of the interrupted warehouse sees whole versions: every view reads.
        try:
            con = Warehouse(warehouse).connect()
            for table in Warehouse(warehouse).table_schemas():
                con.execute(f"SELECT count(*) FROM {table}").fetchall()
            dup = con.execute("SELECT count(*) - count(DISTINCT file_id) FROM ingested_files").fetchone()[0]
            if dup:
                problems.append(f"{what}: the ledger holds {dup} duplicate file row(s) mid-way")
        except Exception as exc:
            problems.append(f"{what}: a reader failed on the interrupted warehouse: {exc}")
    rerun = ingest(landing, warehouse, env=env)
    if rerun.returncode != 0:
        problems.append(f"{what}: the rerun failed: exit {rerun.returncode}\n{rerun.stdout[-1500:]}{rerun.stderr[-1500:]}")
        return problems, None
    tables = snapshot(warehouse)
    if isinstance(warehouse, Path):
        shutil.rmtree(warehouse)
    return problems, tables


def differences(expected: dict, tables: dict | None, what: str) -> list[str]:
    if tables is None:
        return []
    problems = []
    for table, rows in expected.items():
        if tables[table] != rows:
            missing = [r for r in rows if r not in tables[table]][:3]
            extra = [r for r in tables[table] if r not in rows][:3]
            problems.append(f"{what}: {table} differs: missing {missing}, extra {extra}")
    failed = [r for r in tables["ingested_files"] if r[5] == "failed"]
    if failed:
        problems.append(f"{what}: files left failed: {failed}")
    return problems


def test_a_rerun_after_a_kill_at_any_point_gives_the_uninterrupted_tables_and_ledger(baseline):
    landing, expected, points, root = baseline
    labels = dict(points)
    chosen = chosen_points(points)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda n: crash_and_recover(landing, root, n, labels[n]), chosen))
    problems = [p for _, _, ps, _ in outcomes for p in ps]
    for n, label, _, tables in outcomes:
        problems += differences(expected, tables, f"point {n} ({label})")
    assert not problems, f"{len(problems)} problem(s) over {len(chosen)} crash points:\n" + "\n".join(problems)
    assert len(chosen) == len(DEFAULT_KINDS) if not os.environ.get("INGEST_CRASH_POINTS") else len(chosen) >= 1


def test_kills_at_random_moments_leave_no_partial_version(baseline, tmp_path):
    """Killed at seeded random moments of a run (inside a Delta commit as much as
    between two), the warehouse reads and one more run gives the uninterrupted
    tables."""
    landing, expected, _, root = baseline
    rng = random.Random(13)
    problems = []
    for i in range(3):
        warehouse = tmp_path / f"wh-{i}"
        moment = rng.uniform(1.0, 5.0)
        proc = subprocess.Popen(ingest_command(landing, warehouse), env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(moment)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        found, tables = recover(landing, warehouse, f"killed after {moment:.2f} s")
        problems += found + differences(expected, tables, f"killed after {moment:.2f} s")
    assert not problems, "\n".join(problems)


# The points run against the S3 warehouse: the batch append, the ledger commit and a
# table merge (the three kinds of commit), and one random moment.
S3_KINDS = ("committed [_batches/contact/records]", "committed [ingested_files]", "committed [contacts]")


@pytest.mark.slow
def test_a_rerun_after_a_kill_gives_the_uninterrupted_tables_on_an_s3_warehouse(baseline, s3_server, monkeypatch):
    landing, expected, points, root = baseline
    env = {k: v for k, v in s3_server.env().items() if k != "INGEST_LANDING_URL"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # this process reads the warehouse too
    last_of_kind = {kind(label): (n, label) for n, label in points}
    problems = []
    for wanted in S3_KINDS:
        n, label = last_of_kind[wanted]
        warehouse = f"s3://{s3_server.bucket}/crash-{uuid.uuid4().hex[:8]}"
        _, _, found, tables = crash_and_recover(landing, root, n, label, warehouse, env)
        problems += found + differences(expected, tables, f"point {n} ({label}) on S3")
    warehouse = f"s3://{s3_server.bucket}/crash-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(ingest_command(landing, warehouse), env=clean_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(4.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    found, tables = recover(landing, warehouse, "killed after 4 s on S3", env)
    problems += found + differences(expected, tables, "killed after 4 s on S3")
    assert not problems, "\n".join(problems)
