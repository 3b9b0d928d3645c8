"""`make bench`: ingestion against the bare readers, on one generated file.

For each size in BENCH_EVENTS (default "1000000 10000000") it generates a seeded
contact_event JSONL.gz (bench/generate.py) plus a batch of 10% new events, then
times, each in its own process (seconds and peak RSS from os.wait4):

  (a) DuckDB:  COPY (SELECT * FROM read_ndjson(f, ignore_errors=true)) TO parquet
  (b) polars:  scan_ndjson + timestamp parse + sink_parquet, on a copy of f
               without its 0.5% malformed lines (polars fails a whole file on one,
               even with ignore_errors=True)
  (c) ingest:  `ingestion-pipeline ingest` into an empty warehouse
  (d) ingest of the 10% batch into a warehouse that already holds the file
  (e) ingest of the same batch into an empty warehouse

in BENCH_REPS (default 3) repetitions whose order rotates, and prints medians,
rows/s and the ratios a/c, b/c (throughput of c relative to a and b) and d/e.
Results are also appended to bench/out/results.md. Not a test: nothing asserts.
"""

from __future__ import annotations

import gzip
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import generate  # noqa: E402

OUT = ROOT / "out"
PY = sys.executable
CLI = str(Path(PY).with_name("ingestion-pipeline"))

DUCKDB = """
import duckdb, sys
con = duckdb.connect(); con.execute("SET threads TO 2")
con.execute(f"COPY (SELECT * FROM read_ndjson('{sys.argv[1]}', ignore_errors=true)) TO '{sys.argv[2]}' (FORMAT parquet)")
"""
POLARS = """
import polars as pl, sys
(pl.scan_ndjson(sys.argv[1])
   .with_columns(event_timestamp=pl.from_epoch("event_timestamp", time_unit="s").dt.replace_time_zone("UTC"))
   .sink_parquet(sys.argv[2]))
"""


def run(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return elapsed, usage.ru_maxrss * 1024


def land(landing: Path, src: Path, name: str, landed_at: datetime) -> None:
    dest = landing / "contact_event" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        try:
            os.link(src, dest)  # no copy of a multi-GB file when one can be avoided
        except OSError:
            shutil.copy(src, dest)
    ts = landed_at.timestamp()
    os.utime(dest, (ts, ts))


def ingest(landing: Path, warehouse: Path) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    return run([CLI, "ingest", "--landing", str(landing), "--warehouse", str(warehouse)], env=env)


def bench_size(n: int, reps: int) -> dict[str, list[tuple[float, int]]]:
    work = OUT / f"n{n}"
    work.mkdir(parents=True, exist_ok=True)
    base, extra = work / "events.jsonl.gz", work / "extra.jsonl.gz"
    for path, count, first, seed in ((base, n, 0, 42), (extra, max(n // 10, 1), n, 43)):
        if not path.exists():
            print(f"generating {path} ({count} events)", file=sys.stderr)
            subprocess.run([PY, str(ROOT / "generate.py"), str(count), str(path), "--start", str(first), "--seed", str(seed)], check=True)
    clean = work / "events-valid.jsonl.gz"
    if not clean.exists():
        with gzip.open(base, "rb") as src, gzip.open(clean, "wb", compresslevel=1) as dst:
            dst.writelines(line for line in src if not line.startswith(generate.BROKEN))
    day1 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    day2 = day1 + timedelta(days=1)

    def step_a():
        return run([PY, "-c", DUCKDB, str(base), str(work / "a.parquet")])

    def step_b():
        return run([PY, "-c", POLARS, str(clean), str(work / "b.parquet")])

    def step_c():
        shutil.rmtree(work / "c", ignore_errors=True)
        land(work / "c" / "landing", base, "events.jsonl.gz", day1)
        result = ingest(work / "c" / "landing", work / "c" / "warehouse")
        # Keep this warehouse as the starting point of (d).
        shutil.rmtree(work / "held", ignore_errors=True)
        shutil.copytree(work / "c", work / "held")
        return result

    def step_d():
        shutil.rmtree(work / "d", ignore_errors=True)
        shutil.copytree(work / "held", work / "d")
        land(work / "d" / "landing", extra, "extra.jsonl.gz", day2)
        return ingest(work / "d" / "landing", work / "d" / "warehouse")

    def step_e():
        shutil.rmtree(work / "e", ignore_errors=True)
        land(work / "e" / "landing", extra, "extra.jsonl.gz", day2)
        return ingest(work / "e" / "landing", work / "e" / "warehouse")

    steps = {"a": step_a, "b": step_b, "c": step_c, "d": step_d, "e": step_e}
    order = list(steps)
    results: dict[str, list[tuple[float, int]]] = {k: [] for k in steps}
    step_c()  # (d) needs a held warehouse before its first repetition
    for rep in range(reps):
        rotated = order[rep % len(order) :] + order[: rep % len(order)]
        for key in rotated:
            results[key].append(steps[key]())
            secs, rss = results[key][-1]
            print(f"  n={n} rep {rep + 1}/{reps} ({key}) {secs:.2f} s, {rss / 2**20:.0f} MiB", file=sys.stderr)
    return results


def report(n: int, results: dict[str, list[tuple[float, int]]]) -> str:
    labels = {
        "a": "(a) DuckDB read_ndjson -> Parquet",
        "b": "(b) polars scan_ndjson -> Parquet",
        "c": "(c) ingest into an empty warehouse",
        "d": "(d) +10% batch into the warehouse holding the file",
        "e": "(e) the same batch into an empty warehouse",
    }
    med = {k: statistics.median(s for s, _ in v) for k, v in results.items()}
    rss = {k: statistics.median(r for _, r in v) for k, v in results.items()}
    rows_of = {k: n for k in "abc"} | {"d": max(n // 10, 1), "e": max(n // 10, 1)}
    lines = [
        f"### {n:,} events ({len(results['a'])} repetitions, medians)",
        "",
        "| step | seconds | rows/s | peak RSS |",
        "|---|---:|---:|---:|",
    ]
    for k, label in labels.items():
        lines.append(f"| {label} | {med[k]:.2f} | {rows_of[k] / med[k]:,.0f} | {rss[k] / 2**20:,.0f} MiB |")
    lines += [
        "",
        f"- throughput of (c) relative to (a): {med['a'] / med['c']:.2f}x (target >= 0.6x at 10M)",
        f"- throughput of (c) relative to (b): {med['b'] / med['c']:.2f}x",
        f"- d/e: {med['d'] / med['e']:.2f} (target <= 3)",
        "",
    ]
    return "\n".join(lines)


def tables_check(n: int) -> str:
    """What (c) left, from its warehouse: the table and the ledger must reconcile."""
    sql = (
        "select (select count(*) from contact_events) as table_rows, sum(rows_read) as read, sum(rows_loaded) as loaded, "
        "sum(rows_rejected) as rejected, sum(rows_duplicate) as duplicate from ingested_files"
    )
    out = (
        subprocess.run(
            [CLI, "query", "--warehouse", str(OUT / f"n{n}" / "held" / "warehouse"), "--format", "csv", sql],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    return f"Warehouse after (c) at {n:,} events: " + ", ".join(f"{k}={v}" for k, v in zip(out[0].split(","), out[1].split(","))) + "\n"


def main() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_EVENTS", "1000000 10000000").split()]
    reps = int(os.environ.get("BENCH_REPS", "3"))
    OUT.mkdir(parents=True, exist_ok=True)
    header = (
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f'Python {platform.python_version()})\n\n`BENCH_EVENTS="{" ".join(map(str, sizes))}" BENCH_REPS={reps} make bench`\n'
    )
    results = {n: bench_size(n, reps) for n in sizes}
    sections = [header] + [report(n, results[n]) for n in sizes]
    if len(sizes) > 1:
        small, large = min(sizes), max(sizes)
        peak = {n: statistics.median(r for _, r in results[n]["c"]) for n in (small, large)}
        sections.append(
            f"Peak RSS of (c): {peak[large] / 2**20:,.0f} MiB at {large:,} events, {peak[small] / 2**20:,.0f} MiB at "
            f"{small:,}: {peak[large] / peak[small]:.2f}x (targets: <= 1.5 GB at 10M, growth < 2x from 1M to 10M)\n"
        )
    sections += [tables_check(n) for n in sizes]
    text = "\n".join(sections)
    print(text)
    with open(OUT / "results.md", "a") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
