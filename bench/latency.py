"""Benchmark (not a test): seconds from a file landing to its rows being queryable
under `make run` (issue 5 target: p50 <= 20 s).

    .venv/bin/python bench/latency.py [--files 10] [--records 500] [--burst 5 --bursts 2] [--steady 0 --every 3]
    make bench-latency

By default the script is self-contained. It starts what `make run` starts:
`dg dev -w workspace.yaml` (webserver, daemon, code server) on a free port on
127.0.0.1. It gets a temporary DAGSTER_HOME holding a copy of the repo's
deploy/dagster.yaml, as the Makefile's `home` target makes, and temporary landing and
warehouse folders (INGEST_LANDING_URL, INGEST_WAREHOUSE_DIR). It waits for the code
location through GraphQL, as ingestion_pipeline_tests/test_operator_ui.py does. The
landing_sensor defaults to RUNNING (defs/sensors.py), so it is not touched. If
GraphQL reports it stopped, the script starts it with the `startSensor` mutation
(the UI's toggle) and says so. The schedules stay as `make run` leaves them.

Then it lands --files contact_event JSONL files one at a time, each with --records
records with unique event ids. Each file is written under a dot name, then renamed
into `contact_event/latency/`. The script records the time of the rename, then polls
DuckDB (`Warehouse(dir).connect()`, the views `ingestion-pipeline query` opens)
until `contact_events` holds exactly that many rows with that `_source_file`. One
sample is rename -> first poll that sees them. Before the next file lands, the
script waits for the run that loaded the file to finish (so no run of the day is
still active, which would hold the next file back), then a random
--gap-min..--gap-max seconds (seeded), so landings fall at every phase of the
sensor's tick interval. The first --warmup file(s) land the same way, but are
reported apart and left out of the statistics.

With --burst K (default 5), it then lands K files at once, --bursts (default 2)
times, and reports those samples separately. With --steady N, it then lands N files,
one every --every seconds, whatever the runs are doing (a steady feed). A landing
day with an active run holds its new files back until that run ends, so those
samples also show how the runs of one day queue up.

For every sample, the script reads the run that loaded the file (its `run_id` in
`ingested_files`) through GraphQL and splits the time into: land -> run created
(sensor tick interval + settle wait), created -> run started (queue + launch +
run-worker start-up), the two steps (contact_event_batch, contact_events, each in
its own process under the default multiprocess executor, so each has a start-up
gap), and the rest.

At the end, or on Ctrl-C, SIGTERM or failure, `dg dev` gets SIGINT, then
SIGTERM, then SIGKILL (its process group), until no process with the temporary
DAGSTER_HOME in its environment is left. Any such process still alive is then
killed by pid, and the script prints the count.

With --url http://127.0.0.1:3000, it measures an instance that is already running
(e.g. `make run`) in --landing / --warehouse (default: INGEST_LANDING_URL /
INGEST_WAREHOUSE_DIR, else data/landing and data/warehouse), and stops nothing.
Its files stay there, in `contact_event/latency/`, and their rows stay in
`contact_events`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingestion_pipeline.devtools.dagster_dev import LOCATION, DagsterDev, GraphQL, processes_with_env  # noqa: E402
from ingestion_pipeline.warehouse import Warehouse  # noqa: E402

REPO = {"repositoryName": "__repository__", "repositoryLocationName": LOCATION}
SENSOR = {**REPO, "sensorName": "landing_sensor"}
FOLDER = "contact_event/latency"
STEPS = ("contact_event_batch", "contact_events")
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

SENSOR_STATE = """
query($sel: SensorSelector!) { sensorOrError(sensorSelector: $sel) {
  __typename ... on Sensor { minIntervalSeconds sensorState { status } } ... on PythonError { message } } }"""
START_SENSOR = """
mutation($sel: SensorSelector!) { startSensor(sensorSelector: $sel) {
  __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }"""
RUN = """
query($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run {
  runId status creationTime startTime endTime tags { key value }
  stepStats { stepKey startTime endTime status } } } }"""
SENSOR_TICKS = """
query($sel: SensorSelector!, $after: Float!) { sensorOrError(sensorSelector: $sel) { ... on Sensor {
  sensorState { ticks(afterTimestamp: $after, limit: 10000) { timestamp endTimestamp status } } } } }"""
RUNS_SINCE = """
query($after: Float!) { runsOrError(filter: {createdAfter: $after}) { ... on Runs {
  results { runId pipelineName status creationTime tags { key value } } } } }"""


def ensure_sensor_running(gql: GraphQL) -> tuple[int, str]:
    """(minIntervalSeconds, what was done). Starts the sensor like the UI toggle if stopped."""
    sensor = gql(SENSOR_STATE, sel=SENSOR)["sensorOrError"]
    if sensor["__typename"] != "Sensor":
        raise RuntimeError(f"landing_sensor not found: {sensor}")
    status = sensor["sensorState"]["status"]
    if status == "RUNNING":
        return sensor["minIntervalSeconds"], "landing_sensor was already RUNNING (its default status)"
    started = gql(START_SENSOR, sel=SENSOR)["startSensor"]
    if started.get("__typename") != "Sensor" or started["sensorState"]["status"] != "RUNNING":
        raise RuntimeError(f"could not start landing_sensor: {started}")
    return sensor["minIntervalSeconds"], f"landing_sensor was {status}; started it through GraphQL (startSensor)"


# --- landing files and watching them become queryable ---


class Probe:
    """DuckDB over the warehouse views, reconnecting while the table does not exist yet."""

    def __init__(self, warehouse_dir: Path):
        self.warehouse = Warehouse(warehouse_dir)
        self.con = None

    def count(self, path: str) -> int:
        try:
            if self.con is None:
                self.con = self.warehouse.connect()
            return self.con.execute("select count(*) from contact_events where _source_file = ?", [path]).fetchone()[0]
        except Exception:
            if self.con is not None:
                self.con.close()
            self.con = None
            return 0

    def run_id(self, path: str) -> str | None:
        with self.warehouse.connect() as con:
            row = con.execute("select run_id from ingested_files where file = ? order by processed_at desc limit 1", [path]).fetchone()
        return row[0] if row else None


def land(landing: Path, name: str, records: int) -> tuple[str, float]:
    """Writes a contact_event file under a dot name, renames it into place; returns
    (its path relative to the landing root, the time of the rename)."""
    folder = landing / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lines = "".join(
        json.dumps(
            {
                "event_id": f"{name}-{j}",
                "contact_id": f"c-{j % 97}",
                "event": "page_view",
                "event_timestamp": now,
                "event_properties": {"n": j},
            }
        )
        + "\n"
        for j in range(records)
    )
    tmp = folder / f".{name}.jsonl.tmp"
    with open(tmp, "w") as out:
        out.write(lines)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, folder / f"{name}.jsonl")
    return f"{FOLDER}/{name}.jsonl", time.time()


def poll_once(probe: Probe, pending: dict[str, float], done: dict[str, float], records: int) -> None:
    """Records in `done` (path -> seconds since landing) the pending files now queryable."""
    for path, landed in pending.items():
        if path not in done:
            n = probe.count(path)
            if n == records:
                done[path] = time.time() - landed
            elif n > records:
                raise RuntimeError(f"{path}: {n} rows, expected {records}")


def wait_queryable(probe: Probe, pending: dict[str, float], records: int, timeout: float, poll: float) -> dict[str, float]:
    """path -> seconds from landing to the first poll that sees all its rows."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while True:
        poll_once(probe, pending, done, records)
        if len(done) == len(pending):
            return done
        if time.monotonic() > deadline:
            missing = sorted(set(pending) - set(done))
            raise TimeoutError(f"not queryable after {timeout:.0f} s: {', '.join(missing)}")
        time.sleep(poll)


def land_steadily(probe: Probe, landing: Path, name: str, args) -> tuple[dict[str, float], dict[str, float]]:
    """Lands args.steady files, one every args.every seconds whatever happens
    meanwhile, and waits for all of them: (path -> landing time, path -> latency)."""
    pending: dict[str, float] = {}
    done: dict[str, float] = {}
    next_at = time.monotonic()
    deadline = None
    while len(pending) < args.steady or len(done) < len(pending):
        if len(pending) < args.steady and time.monotonic() >= next_at:
            path, landed = land(landing, f"{name}-{len(pending):03d}", args.records)
            pending[path] = landed
            next_at += args.every
            if len(pending) == args.steady:
                deadline = time.monotonic() + args.timeout
        poll_once(probe, pending, done, args.records)
        if deadline is not None and time.monotonic() > deadline and len(done) < len(pending):
            raise TimeoutError(f"not queryable after {args.timeout:.0f} s: {', '.join(sorted(set(pending) - set(done)))}")
        time.sleep(args.poll)
    return pending, done


def breakdown(gql: GraphQL, run_id: str | None, landed: float, queryable_at: float) -> dict:
    """Where a sample's time went, from the run's timestamps (unix seconds)."""
    if run_id is None:
        return {}
    # The rows are queryable before the run's last events are written: wait for its end
    # (also so that the next file never lands while this day still has an active run).
    deadline = time.monotonic() + 120
    while (run := gql(RUN, runId=run_id)["runOrError"]).get("__typename") == "Run" and run["status"] not in FINISHED:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if run.get("__typename") != "Run":
        return {}
    steps = {s["stepKey"]: s for s in run["stepStats"]}
    out = {"run": run_id[:8], "status": run["status"], "tick": run["creationTime"] - landed}
    if run["startTime"]:
        out["launch"] = run["startTime"] - run["creationTime"]
        prev = run["startTime"]
        for key in STEPS:
            s = steps.get(key)
            if s and s["startTime"] and s["endTime"]:
                out[f"{key}:gap"] = s["startTime"] - prev
                out[key] = s["endTime"] - s["startTime"]
                prev = s["endTime"]
        out["after"] = queryable_at - prev
    out["files"] = next((t["value"] for t in run["tags"] if t["key"] == "ingestion/files"), "?")
    return out


COLUMNS = [
    ("tick", "land->run created"),
    ("launch", "created->run start"),
    ("contact_event_batch:gap", "->batch step"),
    ("contact_event_batch", "batch step"),
    ("contact_events:gap", "->table step"),
    ("contact_events", "table step"),
    ("after", "->seen"),
]


def print_samples(title: str, samples: list[dict]) -> None:
    print(f"\n{title}")
    head = f"  {'#':>3} {'file':34s} {'seconds':>8}  run      files " + " ".join(f"{label:>18s}" for _, label in COLUMNS)
    print(head)
    for s in samples:
        b = s["breakdown"]
        cells = " ".join(f"{b[k]:18.2f}" if k in b else f"{'-':>18s}" for k, _ in COLUMNS)
        print(
            f"  {s['i']:>3} {s['path'].rsplit('/', 1)[-1]:34s} {s['latency']:8.2f}  {b.get('run', '-'):8s} {b.get('files', '-'):>5} {cells}"
        )


def stats_line(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)
    p90 = ordered[math.ceil(0.9 * len(ordered)) - 1]  # nearest rank
    return (
        f"n={len(values)}  p50 {statistics.median(values):.2f} s  p90 {p90:.2f} s  "
        f"max {max(values):.2f} s  min {min(values):.2f} s  mean {statistics.fmean(values):.2f} s"
    )


def seconds(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def component_medians(samples: list[dict]) -> str:
    parts = []
    for key, label in COLUMNS:
        values = [s["breakdown"][key] for s in samples if key in s["breakdown"]]
        if values:
            parts.append(f"{label} {statistics.median(values):.2f}")
    return "; ".join(parts)


def tick_stats(gql: GraphQL, after: float) -> str:
    """How often the landing_sensor actually ticked, and how long its evaluations took."""
    ticks = gql(SENSOR_TICKS, sel=SENSOR, after=after)["sensorOrError"]["sensorState"]["ticks"]
    times = sorted(t["timestamp"] for t in ticks)
    gaps = [b - a for a, b in zip(times, times[1:])]
    took = [t["endTimestamp"] - t["timestamp"] for t in ticks if t["endTimestamp"]]
    if not gaps or not took:
        return "not enough sensor ticks recorded"
    return (
        f"{len(ticks)} ticks; interval between tick starts median {statistics.median(gaps):.2f} s "
        f"(min {min(gaps):.2f}, max {max(gaps):.2f}); evaluation median {statistics.median(took):.2f} s (max {max(took):.2f})"
    )


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def measure(args, gql: GraphQL, landing: Path, warehouse: Path) -> None:
    rng = random.Random(args.seed)
    probe = Probe(warehouse)
    token = uuid.uuid4().hex[:8]
    started = time.time()
    sequential: list[dict] = []
    total = args.warmup + args.files
    print(f"\n{load_average()}", flush=True)
    for i in range(total):
        path, landed = land(landing, f"lat-{token}-{i:03d}", args.records)
        seen = wait_queryable(probe, {path: landed}, args.records, args.timeout, args.poll)[path]
        sample = {"i": i, "path": path, "latency": seen, "warmup": i < args.warmup}
        sample["breakdown"] = breakdown(gql, probe.run_id(path), landed, landed + seen)
        sequential.append(sample)
        tag = " (warm-up)" if sample["warmup"] else ""
        print(f"  file {i + 1}/{total}: {seen:6.2f} s{tag}   {load_average()}", flush=True)
        if i + 1 < total:
            time.sleep(rng.uniform(args.gap_min, args.gap_max))

    bursts: list[dict] = []
    for b in range(args.bursts if args.burst else 0):
        time.sleep(rng.uniform(args.gap_min, args.gap_max))
        pending = dict(land(landing, f"lat-{token}-b{b}-{k}", args.records) for k in range(args.burst))
        seen = wait_queryable(probe, pending, args.records, args.timeout, args.poll)
        for k, (path, landed) in enumerate(pending.items()):
            sample = {"i": f"{b}.{k}", "path": path, "latency": seen[path]}
            sample["breakdown"] = breakdown(gql, probe.run_id(path), landed, landed + seen[path])
            bursts.append(sample)
        print(f"  burst {b + 1}/{args.bursts} of {args.burst}: max {max(seen.values()):6.2f} s   {load_average()}", flush=True)

    steady: list[dict] = []
    if args.steady:
        time.sleep(rng.uniform(args.gap_min, args.gap_max))
        pending, seen = land_steadily(probe, landing, f"lat-{token}-s", args)
        for k, (path, landed) in enumerate(pending.items()):
            sample = {"i": f"s{k}", "path": path, "latency": seen[path]}
            sample["breakdown"] = breakdown(gql, probe.run_id(path), landed, landed + seen[path])
            steady.append(sample)
        print(f"  steady stream of {args.steady}: max {max(seen.values()):6.2f} s   {load_average()}", flush=True)

    measured = [s for s in sequential if not s["warmup"]]
    print_samples(
        f"One file at a time ({args.records} records each; gaps {args.gap_min:g}-{args.gap_max:g} s; seconds)",
        sequential,
    )
    print(f"\nlanding -> queryable, one file at a time (warm-up excluded): {stats_line([s['latency'] for s in measured])}")
    print(f"  samples: {seconds(s['latency'] for s in measured)}")
    if args.warmup:
        print(f"  warm-up: {seconds(s['latency'] for s in sequential if s['warmup'])}")
    print(f"  medians of the parts: {component_medians(measured)}")
    if bursts:
        print_samples(f"Bursts of {args.burst} files landed at once", bursts)
        print(f"\nlanding -> queryable, {args.burst} files at once: {stats_line([s['latency'] for s in bursts])}")
        print(f"  samples: {seconds(s['latency'] for s in bursts)}")
    if steady:
        print_samples(f"A steady stream: one file every {args.every:g} s, landed whatever the runs are doing", steady)
        print(f"\nlanding -> queryable, one file every {args.every:g} s: {stats_line([s['latency'] for s in steady])}")
        print(f"  samples: {seconds(s['latency'] for s in steady)}")
    print(f"\nlanding_sensor while measuring: {tick_stats(gql, started)}")
    # Runs that were not ours (schedules) compete for the machine: list them.
    others = [
        r for r in gql(RUNS_SINCE, after=started)["runsOrError"]["results"] if not any(t["key"] == "dagster/sensor_name" for t in r["tags"])
    ]
    if others:
        print("\nother runs meanwhile: " + ", ".join(f"{r['pipelineName']} {r['status']}" for r in others))
    print(f"\n{load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10, help="files landed one at a time (default 10)")
    parser.add_argument("--records", type=int, default=500, help="records per file (default 500)")
    parser.add_argument("--warmup", type=int, default=1, help="first files reported apart (default 1)")
    parser.add_argument("--burst", type=int, default=5, help="then land this many files at once (default 5; 0: no burst)")
    parser.add_argument("--bursts", type=int, default=2, help="how many bursts (default 2)")
    parser.add_argument("--steady", type=int, default=0, help="then land this many files at a steady pace (default 0: none)")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between files of the steady stream (default 3)")
    parser.add_argument("--gap-min", type=float, default=2.0, help="seconds between a file being queryable and the next landing")
    parser.add_argument("--gap-max", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between DuckDB polls (default 0.2)")
    parser.add_argument("--timeout", type=float, default=300, help="give up on a file after this many seconds")
    parser.add_argument("--url", help="measure a running instance (e.g. http://127.0.0.1:3000) instead of starting one")
    parser.add_argument("--landing", default=os.environ.get("INGEST_LANDING_URL", "data/landing"), help="with --url")
    parser.add_argument("--warehouse", default=os.environ.get("INGEST_WAREHOUSE_DIR", "data/warehouse"), help="with --url")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (DAGSTER_HOME, log, landing, warehouse)")
    args = parser.parse_args()

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    if args.url:
        if args.landing.startswith("s3://"):
            sys.exit("--landing must be a local folder")
        gql = GraphQL(args.url)
        interval, note = ensure_sensor_running(gql)
        print(f"measuring {gql.url}; landing {args.landing}, warehouse {args.warehouse}")
        print(f"{note}; minimum_interval_seconds={interval}")
        measure(args, gql, Path(args.landing), Path(args.warehouse))
        return

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    landing, warehouse = work / "landing", work / "warehouse"
    landing.mkdir()
    env = {"INGEST_LANDING_URL": str(landing), "INGEST_WAREHOUSE_DIR": str(warehouse)}
    dev = None
    ok = False
    try:
        t0 = time.monotonic()
        dev = DagsterDev(work / "dagster_home", env, work / "dagster-dev.log")
        print(f"dg dev on 127.0.0.1:{dev.port}, DAGSTER_HOME={dev.home} (deploy/dagster.yaml copied), work dir {work}", flush=True)
        dev.wait_for_code_location()
        print(f"code location loaded after {time.monotonic() - t0:.1f} s", flush=True)
        interval, note = ensure_sensor_running(dev.gql)
        print(f"{note}; minimum_interval_seconds={interval}", flush=True)
        measure(args, dev.gql, landing, warehouse)
        ok = True
    finally:
        if dev is not None:
            print("\nstopping dg dev ...", flush=True)
            stray = dev.stop()
            left = processes_with_env("DAGSTER_HOME", str(dev.home))
            print(f"dg dev stopped; processes of this instance killed by pid after the group shutdown: {len(stray)}; left now: {len(left)}")
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} (dagster-dev.log inside)")


if __name__ == "__main__":
    main()
