"""Benchmark (not a test): one `landing_sensor` tick against a real S3 server
(SeaweedFS) holding BENCH_S3_OBJECTS objects (default 100,000) already in the ledger
plus BENCH_S3_NEW (default 1,000) new ones, the way the API lands them
(`contact_event/YYYY/MM/DD/<hex>.jsonl`, 1,000 per day prefix).

    .venv/bin/python bench/s3_sensor_tick.py

Times (1) a tick that lists the recent date prefixes plus one slice of a sweep
(sweep_keys_per_tick keys, default 20,000), (2) a tick between sweeps (recent date
prefixes only), and, for scale, (3) one listing of the whole bucket, medians of
BENCH_REPS. BENCH_S3_DIR keeps the SeaweedFS data between runs (putting 100k objects
takes minutes)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingestion_pipeline.definitions import build_definitions
from ingestion_pipeline.defs.resources import IngestResource
from ingestion_pipeline.defs.sensors import landing_sensor
from ingestion_pipeline.devtools import seaweedfs
from ingestion_pipeline.landing.s3 import S3LandingStore
from ingestion_pipeline.warehouse import LEDGER, LEDGER_SCHEMA, Warehouse

OBJECTS = int(os.environ.get("BENCH_S3_OBJECTS", "100000"))
NEW = int(os.environ.get("BENCH_S3_NEW", "1000"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
PER_DAY = 1000
BODY = b'{"event_id":"e1","contact_id":"c1","event":"login","event_timestamp":"2026-11-20T10:00:00Z","event_properties":{}}\n'


def put_all(client, bucket: str, keys: list[str]) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=BODY), keys))
    return time.perf_counter() - start


def main() -> None:
    root = Path(os.environ.get("BENCH_S3_DIR") or tempfile.mkdtemp(prefix="bench-s3-"))
    server = seaweedfs.start(root / "seaweedfs", "landing")
    shutil.rmtree(root / "warehouse", ignore_errors=True)
    try:
        for k, v in server.env().items():
            os.environ[k] = v
        client = server.client()
        today = datetime.now(UTC).date()
        old = [f"contact_event/{today - timedelta(days=2 + i // PER_DAY):%Y/%m/%d}/{i:032x}.jsonl" for i in range(OBJECTS)]
        store = S3LandingStore(f"s3://{server.bucket}", client=client)
        start = time.perf_counter()
        listed = list(store.list_files("contact_event"))
        print(f"listing {len(listed)} objects already there: {time.perf_counter() - start:.1f} s", flush=True)
        if len(listed) < OBJECTS:
            print(f"putting {OBJECTS} objects: {put_all(client, server.bucket, old):.1f} s", flush=True)
            listed = list(store.list_files("contact_event"))
        # Record them all in the ledger as loaded, the way a run would.
        ledger = pl.DataFrame(
            {
                "file": [f.path for f in listed],
                "stream": "contact_event",
                "format": "jsonl",
                "size_bytes": [f.size for f in listed],
                "landed_at": [f.landed_at for f in listed],
                "status": "loaded",
                "file_version": [f.version for f in listed],
                "file_id": [f.file_id for f in listed],
                "landing_date": [f.landing_date for f in listed],
            }
        ).with_columns(
            pl.lit(None).alias(c)
            for c in LEDGER_SCHEMA
            if c not in ("file", "stream", "format", "size_bytes", "landed_at", "status", "file_version", "file_id", "landing_date")
        )
        warehouse = Warehouse(root / "warehouse")
        warehouse.ensure_layout()
        warehouse.lake.append(LEDGER, ledger.cast(LEDGER_SCHEMA).select(list(LEDGER_SCHEMA)))
        token = uuid.uuid4().hex[:16]
        new = [f"contact_event/{today:%Y/%m/%d}/{token}{i:016x}.jsonl" for i in range(NEW)]
        print(f"putting {NEW} new objects: {put_all(client, server.bucket, new):.1f} s", flush=True)

        ingest = IngestResource(landing_url=f"s3://{server.bucket}", warehouse_dir=str(warehouse.root), max_files_per_tick=NEW)
        instance = dg.DagsterInstance.ephemeral(tempdir=str(root / "dagster"))
        definitions = build_definitions(ingest)
        between = json.dumps({"unsettled": {}, "sweep": {"started_at": time.time() + 10 * 24 * 3600, "folder": None, "after": None}})
        results: dict[str, list[float]] = {"tick with a sweep slice": [], "tick between sweeps": [], "whole-bucket listing": []}
        for _ in range(REPS):
            for label, cursor in (("tick with a sweep slice", None), ("tick between sweeps", between)):
                with dg.build_sensor_context(
                    instance=instance, cursor=cursor, resources={"ingest": ingest}, definitions=definitions
                ) as context:
                    start = time.perf_counter()
                    data = landing_sensor.evaluate_tick(context)
                    results[label].append(time.perf_counter() - start)
                files = sum(int(r.tags["ingestion/files"]) for r in data.run_requests)
                assert files == NEW, (label, files)
            start = time.perf_counter()
            assert len(list(store.list_files("contact_event"))) == len(listed) + NEW
            results["whole-bucket listing"].append(time.perf_counter() - start)
        print(f"\n{len(listed)} objects in the bucket and the ledger + {NEW} new; medians of {REPS}:")
        for label, times in results.items():
            print(f"  {label:24s} {statistics.median(times):6.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times)})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
