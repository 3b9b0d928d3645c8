"""Benchmark (not a test): one `landing_sensor` tick on a LOCAL landing folder with
BENCH_LOCAL_FILES files (default 100,000) already in the ledger, plus BENCH_LOCAL_NEW
(default 1,000) new ones. This is the local-folder counterpart of
bench/s3_sensor_tick.py (issue 5 target: < 10 s).

    .venv/bin/python bench/local_sensor_tick.py
    make bench-tick

Files land the way the ingestion API lays them out, `contact_event/YYYY/MM/DD/<hex>.jsonl`
(tiny files, 1,000 per landing day over the 100 days before yesterday). Each file's
mtime, which is its landed_at, is set inside its day. All of them are recorded in
the ledger as `loaded`, through a real
append to the ledger's Delta table. Then 1,000 new files land in today's folder, each already
settled (mtime a minute ago).

The script times real sensor evaluations: `dg.build_sensor_context` plus
`landing_sensor.evaluate_tick` with the real IngestResource on a Dagster instance.
A local folder has no sweep: every tick walks every feed folder. It reports:

  (1) a tick with the 1,000 new files (a fresh cursor each time). The script checks
      that the run requests cover exactly the new files: the sum of their
      `ingestion/files` tags is 1,000, and each request's run key digests exactly
      the file ids of the new files of its day (as defs/jobs.py builds it);
  (2) a tick with nothing new, after the new files are also recorded in the
      ledger (it must skip);

as medians of BENCH_REPS (default 3). It also gives, for scale, the parts of one
tick: the folder walk, the ledger read, and the rest. BENCH_LOCAL_DIR keeps the
landing folder between runs; without it, the script works in a temporary folder
and removes it at the end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import dagster as dg
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingestion_pipeline.definitions import build_definitions
from ingestion_pipeline.defs.resources import IngestResource
from ingestion_pipeline.defs.sensors import landing_sensor
from ingestion_pipeline.landing import LandedFile
from ingestion_pipeline.landing.local import LocalLandingStore
from ingestion_pipeline.ledger import pending_files, read_ledger
from ingestion_pipeline.pipeline import list_landing
from ingestion_pipeline.warehouse import LEDGER, LEDGER_SCHEMA, Warehouse

FILES = int(os.environ.get("BENCH_LOCAL_FILES", "100000"))
NEW = int(os.environ.get("BENCH_LOCAL_NEW", "1000"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
PER_DAY = 1000
BODY = b'{"event_id":"e1","contact_id":"c1","event":"login","event_timestamp":"2026-11-20T10:00:00Z","event_properties":{}}\n'
STREAM = "contact_event"


def land_old(root: Path, today) -> int:
    """FILES tiny files, PER_DAY per landing day, mtime inside their day. Returns how
    many were created (0 when BENCH_LOCAL_DIR already holds them)."""
    created = 0
    for i in range(FILES):
        day = today - timedelta(days=2 + i // PER_DAY)
        path = root / f"{STREAM}/{day:%Y/%m/%d}/{i:032x}.jsonl"
        if path.exists():
            continue
        if i % PER_DAY == 0 or not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(BODY)
        # Spread over the day (00:00:00 + 80 s * n), so landed_at is realistic and unique.
        landed = datetime.combine(day, dtime(0), UTC) + timedelta(seconds=80 * (i % PER_DAY))
        os.utime(path, (landed.timestamp(), landed.timestamp()))
        created += 1
    return created


def ledger_rows(files: list[LandedFile]) -> list[dict]:
    """The rows a run records for loaded files (every LEDGER_SCHEMA column)."""
    now = datetime.now(UTC)
    return [
        {
            "file": f.path,
            "stream": STREAM,
            "format": "jsonl",
            "size_bytes": f.size,
            "landed_at": f.landed_at,
            "status": "loaded",
            "rows_read": 1,
            "rows_loaded": 1,
            "rows_rejected": 0,
            "rows_duplicate": 0,
            "first_error": None,
            "processed_at": now,
            "run_id": "bench",
            "file_version": f.version,
            "file_id": f.file_id,
            "sha256": hashlib.sha256(f.path.encode()).hexdigest(),  # distinct content per file
            "landing_date": f.landing_date,
            "schema_drift": None,
            "stage_id": None,
        }
        for f in files
    ]


def record(warehouse: Warehouse, files: list[LandedFile]) -> None:
    """Appends these files' rows to the ledger (a Delta table), as runs would have."""
    warehouse.ensure_layout()
    warehouse.lake.append(LEDGER, pl.DataFrame(ledger_rows(files), schema=LEDGER_SCHEMA))


def main() -> None:
    keep = os.environ.get("BENCH_LOCAL_DIR")
    root = Path(keep or tempfile.mkdtemp(prefix="bench-local-tick-"))
    landing, warehouse_dir = root / "landing", root / "warehouse"
    shutil.rmtree(warehouse_dir, ignore_errors=True)
    # New files from an earlier run of this script go: they would not be new.
    for leftover in (landing / STREAM).glob("*/*/*/new-*.jsonl"):
        leftover.unlink()
    try:
        today = datetime.now(UTC).date()
        load = os.getloadavg()
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; work dir {root}", flush=True)
        start = time.perf_counter()
        created = land_old(landing, today)
        print(f"landing {FILES} files ({created} created): {time.perf_counter() - start:.1f} s", flush=True)

        store = LocalLandingStore(landing)
        start = time.perf_counter()
        listed = list_landing(store)
        print(f"walking the landing folder: {len(listed)} files, {time.perf_counter() - start:.2f} s", flush=True)
        assert len(listed) == FILES, len(listed)
        warehouse = Warehouse(warehouse_dir)
        warehouse.ensure_layout()
        start = time.perf_counter()
        record(warehouse, listed)
        days = len({f.landing_date for f in listed})
        print(f"recording them as loaded in the ledger ({days} landing days): {time.perf_counter() - start:.1f} s", flush=True)

        token = uuid.uuid4().hex[:12]
        settled = time.time() - 60
        for i in range(NEW):
            path = landing / f"{STREAM}/{today:%Y/%m/%d}/new-{token}-{i:06d}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(BODY)
            os.utime(path, (settled, settled))
        new = [f for f in store.list_files(f"{STREAM}/{today:%Y/%m/%d}") if f.path.rsplit("/", 1)[-1].startswith("new-")]
        assert len(new) == NEW, len(new)
        new_by_day: dict = {}
        for f in new:
            new_by_day.setdefault(f.landing_date, []).append(f.file_id)
        print(f"landed {NEW} new files (settled) under {STREAM}/{today:%Y/%m/%d}/", flush=True)

        ingest = IngestResource(
            landing_url=str(landing), warehouse_dir=str(warehouse_dir), max_files_per_tick=max(NEW, IngestResource().max_files_per_tick)
        )
        definitions = build_definitions(ingest)
        instance = dg.DagsterInstance.ephemeral(tempdir=str(root / "dagster"))

        def tick():
            with dg.build_sensor_context(instance=instance, cursor=None, resources={"ingest": ingest}, definitions=definitions) as context:
                start = time.perf_counter()
                data = landing_sensor.evaluate_tick(context)
                return time.perf_counter() - start, data

        results: dict[str, list[float]] = {f"tick with {NEW:,} new files": [], "tick with nothing new": []}
        requests = None
        for _ in range(REPS):
            seconds, data = tick()
            results[f"tick with {NEW:,} new files"].append(seconds)
            requests = data.run_requests
            files = sum(int(r.tags["ingestion/files"]) for r in requests)
            assert files == NEW, files
            for r in requests:
                ids = sorted(new_by_day[datetime.fromisoformat(r.partition_key).date()])
                digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
                assert r.run_key == f"landing:{r.partition_key}:{digest}", r.run_key
        print(
            f"\ntick with new files: {len(requests)} run request(s), "
            + "; ".join(
                f"{r.partition_key} {r.tags['ingestion/files']} files, assets {','.join(k.to_user_string() for k in r.asset_selection)}"
                for r in requests
            )
            + f"; together exactly the {NEW} new files (file count and run-key digest of their file ids)",
            flush=True,
        )

        # The new files get recorded too; a tick now finds nothing to do.
        record(warehouse, [f for f in store.list_files(f"{STREAM}/{today:%Y/%m/%d}")])
        for _ in range(REPS):
            seconds, data = tick()
            assert not data.run_requests and data.skip_message, data
            results["tick with nothing new"].append(seconds)
        print(f"tick with nothing new: skipped ({data.skip_message})")

        # The parts of a tick with nothing new, for scale.
        start = time.perf_counter()
        listed = list_landing(store)
        walk = time.perf_counter() - start
        start = time.perf_counter()
        read_ledger(warehouse, ["file_id", "status"])
        ledger_read = time.perf_counter() - start
        start = time.perf_counter()
        assert pending_files(warehouse, listed) == []
        pending = time.perf_counter() - start

        total = FILES + NEW
        print(f"\n{total} files in the landing folder and the ledger ({FILES} + {NEW}); medians of {REPS}:")
        for label, times in results.items():
            print(f"  {label:28s} {statistics.median(times):6.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times)})")
        print(
            f"  parts, once: folder walk {walk:.2f} s ({len(listed)} files); ledger read {ledger_read:.2f} s; "
            f"ledger read + file ids + set difference {pending:.2f} s"
        )
        load = os.getloadavg()
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
