"""A warehouse under test from the outside: a landing with every feed, the real
`ingestion-pipeline ingest` as a subprocess, and a snapshot of every table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ingestion_pipeline.warehouse import Warehouse

from .conftest import Landing, contact, event, utc

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
CLI = str(Path(sys.executable).with_name("ingestion-pipeline"))
VOLATILE = {"ingested_files": ["processed_at", "run_id", "stage_id"]}  # when it ran, not what it did


def build_landing(root: Path) -> Landing:
    """Every feed, two landing days, entity merges across files, event ids repeated
    across files, rejected records and a file whose content was already loaded."""
    landing = Landing(root)
    for i, path in enumerate(sorted(p for p in SAMPLES.rglob("*") if p.is_file())):
        landing.put(str(path.relative_to(SAMPLES)), path.read_bytes(), utc(2026, 11, 20, 8, i))
    landing.put("contact/update.jsonl", [contact("c1", "new@x.io", {"plan": "max", "seats": None}), "{broken"], utc(2026, 11, 21, 9))
    landing.put(
        "contact_event/late.jsonl", [event("e1", "c1", name="logout"), event("e9", "c2"), event("e9", "c2")], utc(2026, 11, 21, 9, 5)
    )
    landing.put(
        "contact_event/copy.jsonl", [event("e1", "c1", name="logout"), event("e9", "c2"), event("e9", "c2")], utc(2026, 11, 21, 9, 6)
    )
    landing.put("account_event/broken.jsonl.gz", b"not gzip at all", utc(2026, 11, 21, 9, 8))
    landing.put("group/moves.json", '[{"contact_key": "c1", "account_key": "acme.io"}]', utc(2026, 11, 21, 9, 7))
    return landing


def ingest(
    landing: Path, warehouse: Path, trace: Path | None = None, crash_at: int | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`ingestion-pipeline ingest` in its own process, on a temporary Dagster instance."""
    env = dict(env or {})
    if crash_at:
        env["INGEST_CRASH_AT"] = str(crash_at)
    if trace:
        env["INGEST_CRASH_TRACE"] = str(trace)
    return subprocess.run(ingest_command(landing, warehouse), env=clean_env(env), capture_output=True, text=True, timeout=300)


def ingest_command(landing: Path, warehouse: Path) -> list[str]:
    return [CLI, "ingest", "--landing", str(landing), "--warehouse", str(warehouse)]


def clean_env(extra: dict | None = None) -> dict:
    """This process's environment without INGEST_* and DAGSTER_HOME, plus `extra`."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "DAGSTER_HOME"))} | (extra or {})


def snapshot(warehouse: Path) -> dict[str, list[tuple]]:
    """Every table's rows, sorted, without the columns that only say when it ran."""
    wh = Warehouse(warehouse)
    con = wh.connect()
    tables = {}
    for table in wh.table_schemas():
        drop = VOLATILE.get(table)
        cols = f"* EXCLUDE ({', '.join(drop)})" if drop else "*"
        tables[table] = con.execute(f"SELECT {cols} FROM {table} ORDER BY ALL").fetchall()
    return tables
