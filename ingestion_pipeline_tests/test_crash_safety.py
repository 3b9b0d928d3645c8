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
import re
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ingestion_pipeline.warehouse import Warehouse

from .harness import build_landing, ingest, leftovers, snapshot

pytestmark = pytest.mark.slow  # dozens of ingest processes, each killed at one point


def kind(label: str) -> str:
    """A point's kind: the step, and what it wrote (a staging part's kind, or the
    warehouse area or table)."""
    step = re.match(r"(writing temp|synced temp|renamed|parsed a batch|wrote staging part|staged|moved aside|published staging)", label)
    target = re.search(r"(_schema|_batches|rejected_records|ingested_files|\w+/data\.parquet|records|rejects|memberships)", label)
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


# The reduced set: the last point of each of these kinds. The last ledger segment is
# the one after which only the tables are left to rebuild; the table points fall
# within the rebuild (one table renamed, the next not yet written).
DEFAULT_KINDS = {
    "parsed a batch []",
    "staged []",
    "published staging []",
    "renamed [_batches]",
    "renamed [rejected_records]",
    "renamed [ingested_files]",
    "renamed [contacts/data.parquet]",
    "writing temp [contact_events/data.parquet]",
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
        "wrote staging part [records]",
        "published staging []",
        "renamed [_batches]",
        "renamed [rejected_records]",
        "renamed [ingested_files]",
        "renamed [contacts/data.parquet]",
        "renamed [contact_events/data.parquet]",
    ):
        assert expected in kinds, (expected, sorted(kinds))


def crash_and_recover(landing: Path, root: Path, n: int, label: str) -> tuple[int, str, list[str], dict | None]:
    """SIGKILL at point n, read what a reader would see, rerun, snapshot."""
    warehouse = root / f"wh-{n}"
    killed = ingest(landing, warehouse, crash_at=n)
    problems = []
    if killed.returncode != -signal.SIGKILL:
        problems.append(f"point {n} ({label}) was not reached: exit {killed.returncode}\n{killed.stderr[-2000:]}")
        return n, label, problems, None
    if warehouse.exists():
        # A reader of the interrupted warehouse sees whole files: every view reads.
        try:
            con = Warehouse(warehouse).connect()
            for table in Warehouse(warehouse).table_schemas():
                con.execute(f"SELECT count(*) FROM {table}").fetchall()
            dup = con.execute("SELECT count(*) - count(DISTINCT file_id) FROM ingested_files").fetchone()[0]
            if dup:
                problems.append(f"point {n}: the ledger holds {dup} duplicate file row(s) mid-way")
        except Exception as exc:
            problems.append(f"point {n} ({label}): a reader failed on the interrupted warehouse: {exc}")
    rerun = ingest(landing, warehouse)
    if rerun.returncode != 0:
        problems.append(f"point {n} ({label}): the rerun failed: exit {rerun.returncode}\n{rerun.stdout[-1500:]}{rerun.stderr[-1500:]}")
        return n, label, problems, None
    left = leftovers(warehouse)
    if left:
        problems.append(f"point {n} ({label}): temp files left after the rerun: {left}")
    result = snapshot(warehouse)
    shutil.rmtree(warehouse)
    return n, label, problems, result


def test_a_rerun_after_a_kill_at_any_point_gives_the_uninterrupted_tables_and_ledger(baseline):
    landing, expected, points, root = baseline
    labels = dict(points)
    chosen = chosen_points(points)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda n: crash_and_recover(landing, root, n, labels[n]), chosen))
    problems = [p for _, _, ps, _ in outcomes for p in ps]
    for n, label, _, tables in outcomes:
        if tables is None:
            continue
        for table, rows in expected.items():
            if tables[table] != rows:
                missing = [r for r in rows if r not in tables[table]][:3]
                extra = [r for r in tables[table] if r not in rows][:3]
                problems.append(f"point {n} ({label}): {table} differs: missing {missing}, extra {extra}")
        failed = [r for r in tables["ingested_files"] if r[5] == "failed"]
        if failed:
            problems.append(f"point {n} ({label}): files left failed: {failed}")
    assert not problems, f"{len(problems)} problem(s) over {len(chosen)} crash points:\n" + "\n".join(problems)
    assert len(chosen) == len(DEFAULT_KINDS) if not os.environ.get("INGEST_CRASH_POINTS") else len(chosen) >= 1
