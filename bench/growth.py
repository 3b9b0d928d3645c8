"""`make bench-growth`: does the cost of an ingest follow the increment, not the
history? (issue 13, "Must have" item 3). Not a test: nothing asserts.

Every timed ingest is `ingestion-pipeline ingest` in its own process (wall seconds,
user + system CPU seconds and peak RSS from os.wait4), with DAGSTER_HOME unset (an
ephemeral Dagster instance), like bench/run.py. The targets are on wall time; the
CPU time and the 1-minute load average at the start of each run are reported too,
because the machine is shared and its load moves wall time a lot. Input files are generated here, seeded and cached in
bench/out/growth/gen-*/; a file's landing day is its mtime's UTC date (os.utime on
hard links in the landing folders). Landing days are fixed dates in 2026, so the
cached files stay valid from one run to the next.

(A) A small day (1% of the table) into a big warehouse, against the same day into
    an empty one. Setup (timed, but not part of the ratio): BENCH_GROWTH_EVENTS
    contact_events in BENCH_GROWTH_HISTORY_FILES files (one landing day each, event
    timestamps spread over the BENCH_GROWTH_HISTORY_DAYS days before) plus
    BENCH_GROWTH_CONTACTS contacts (one file, then 10% of them updated in a second
    file on a later history day) are ingested in one CLI call. The small day, landed
    two days after the last history day: 1% new events with timestamps in the two
    days before it, plus 2.5% within-file repeats, 2.5% repeats of events of the
    last two days of history (a quarter of them with a timestamp moved by 1-36 h,
    so some change event_date partition), 0.5% invalid lines; and 1% contact
    records, half new contacts, half updates of existing ones (a third of those
    remove `seats` with a JSON null, a third change the email), plus a few invalid
    emails. Each repetition ingests the small day into (i) a fresh `cp -r` of the
    big warehouse (not timed) and (ii) an empty warehouse, alternating which goes
    first. Reported: medians of BENCH_REPS repetitions and (i)/(ii).

(B) A BENCH_GROWTH_DAYS-day backfill of BENCH_GROWTH_DAY_EVENTS events a day,
    ingested one landing day per CLI call, into one warehouse. Day d's events have
    timestamps in the two days before landing day d; besides its new events each day
    has 2% within-file repeats, 0.5% invalid lines and (from day 2) 3% repeats of
    events of the previous three days, 30% of those with a timestamp moved by
    1-36 h either way (the event_id rule across event_date partitions). Before each
    call only that day's file is added to the landing folder (the ledger skips the
    earlier ones). Reported: every day's seconds, day 20 / day 1, the median of days
    1-3 against days 18-20, and the least-squares slope of seconds against the rows
    the table held before the day.

Each scenario ends with a reconciliation queried from its warehouses
(`ingestion-pipeline query`): table rows against the count the generator expects,
the ledger's rows_read = loaded + rejected + duplicate, the files ingested, one row
per event_id, the number of events whose newest copy moved its timestamp (and
therefore its event_date partition) against the generator's count, and for (A) the
contacts: row count, keys removed by a JSON null, changed emails. The summary also
records a hash of the package sources at the start and the end of the run.

Environment (defaults in brackets): BENCH_REPS [3], BENCH_GROWTH_EVENTS [5000000],
BENCH_GROWTH_CONTACTS [200000], BENCH_GROWTH_HISTORY_FILES [5],
BENCH_GROWTH_HISTORY_DAYS [100], BENCH_GROWTH_SMALL_EVENTS [1% of the events],
BENCH_GROWTH_SMALL_CONTACTS [1% of the contacts], BENCH_GROWTH_DAY_EVENTS [250000],
BENCH_GROWTH_DAYS [20], BENCH_GROWTH_SCENARIOS ["A B"].
The Markdown summary is printed and appended to bench/out/growth.md.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from isal import igzip

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import generate  # noqa: E402

OUT = ROOT / "out"
WORK = OUT / "growth"
PY = sys.executable
CLI = str(Path(PY).with_name("ingestion-pipeline"))
DAY = 86_400
CHUNK = 500_000
EVENT_NAMES = np.array(["login", "page_view", "signup", "invite_sent", "upgrade", "logout"])
PLANS = np.array(["free", "pro", "team"])
COUNTRIES = ["FR", "DE", "US", "GB", "JP", "BR", "IN"]
# Landing days. (A): history on A_LAST - (files-1) .. A_LAST, the small day two days later.
A_LAST = date(2026, 1, 10)
B_FIRST = date(2026, 3, 1)
LANDED_AT = timedelta(hours=6)  # time of day of every landing
GEN_VERSION = 2  # part of the cache folder names: bump when the generated files change


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def at(day: date, offset: timedelta = timedelta(0)) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + offset


def epoch(day: date) -> int:
    return int(at(day).timestamp())


def mix(ids: np.ndarray) -> np.ndarray:
    """A deterministic scramble of event numbers: every attribute of an event
    (timestamp jitter, contact, name, properties) is a function of its number, so
    a repeated line carries the same content as the original."""
    return (ids.astype(np.uint64) * np.uint64(2_654_435_761)) % np.uint64(2**32)


# --- generation --------------------------------------------------------------


def event_lines(ids: np.ndarray, ts: np.ndarray, valid: np.ndarray, prefix: str, contacts: int) -> pl.DataFrame:
    m = mix(ids)
    frame = pl.DataFrame(
        {
            "id": ids,
            "contact": (m >> np.uint64(4)) % np.uint64(max(contacts, 1)),
            "event": EVENT_NAMES[(m % np.uint64(len(EVENT_NAMES))).astype(np.int64)],
            "ts": ts,
            "plan": PLANS[((m >> np.uint64(8)) % np.uint64(3)).astype(np.int64)],
            "score": (m >> np.uint64(16)) % np.uint64(100),
            "valid": valid,
        }
    )
    line = pl.concat_str(
        pl.lit('{"event_id":"' + prefix),
        pl.col("id").cast(pl.String),
        pl.lit('","contact_id":"c-'),
        pl.col("contact").cast(pl.String),
        pl.lit('","event":"'),
        "event",
        pl.lit('","event_timestamp":'),
        pl.col("ts").cast(pl.String),
        pl.lit(',"event_properties":{"plan":"'),
        "plan",
        pl.lit('","score":'),
        pl.col("score").cast(pl.String),
        pl.lit("}}"),
    )
    return frame.select(line=pl.when(pl.col("valid")).then(line).otherwise(pl.lit(generate.BROKEN.decode())))


def write_events(
    path: Path,
    new_ids: np.ndarray,
    ts_of: Callable[[np.ndarray], np.ndarray],
    repeat_ids: np.ndarray,
    repeat_ts: np.ndarray,
    *,
    prefix: str,
    contacts: int,
    seed: int,
    dup_frac: float,
    invalid_frac: float,
) -> dict:
    """A contact_event JSONL.gz: every event of `new_ids` once, plus within-file
    repeats (`dup_frac` of them, same content), the given repeats of earlier events
    and `invalid_frac` invalid lines, shuffled. Returns the line counts."""
    rng = np.random.default_rng(seed)
    n_chunks = max(1, -(-len(new_ids) // CHUNK))
    stats = {"lines": 0, "new": 0, "dup": 0, "repeats": 0, "invalid": 0}
    tmp = path.with_suffix(".tmp")
    with igzip.open(tmp, "wb", compresslevel=1) as fh:
        for ids, rep_ids, rep_ts in zip(
            np.array_split(new_ids, n_chunks), np.array_split(repeat_ids, n_chunks), np.array_split(repeat_ts, n_chunks)
        ):
            dups = rng.choice(ids, size=min(len(ids), round(len(ids) * dup_frac)), replace=False)
            all_ids = np.concatenate([ids, dups, rep_ids]).astype(np.int64)
            all_ts = np.concatenate([ts_of(ids), ts_of(dups), rep_ts]).astype(np.int64)
            n_invalid = round(len(ids) * invalid_frac)
            valid = np.concatenate([np.ones(len(all_ids), bool), np.zeros(n_invalid, bool)])
            all_ids = np.concatenate([all_ids, np.zeros(n_invalid, np.int64)])
            all_ts = np.concatenate([all_ts, np.zeros(n_invalid, np.int64)])
            order = rng.permutation(len(valid))
            frame = event_lines(all_ids[order], all_ts[order], valid[order], prefix, contacts)
            fh.write(frame.write_csv(include_header=False, quote_style="never").encode())
            stats["lines"] += len(valid)
            stats["new"] += len(ids)
            stats["dup"] += len(dups)
            stats["repeats"] += len(rep_ids)
            stats["invalid"] += n_invalid
    tmp.rename(path)
    return stats


def contact_record(i: int, props: dict, email: str | None = None) -> dict:
    return {
        "type": "contact",
        "contact_id": f"c-{i}",
        "email": email or f"user{i}@example{i % 100}.com",
        "contact_properties": props,
    }


def full_props(i: int) -> dict:
    return {"first_name": f"fn{i % 997}", "plan": str(PLANS[i % 3]), "seats": i % 50 + 1, "country": COUNTRIES[i % 7]}


def write_contacts(path: Path, records: list[dict], invalid: int, seed: int) -> dict:
    """A contact JSONL.gz: the records plus `invalid` records with a bad email, shuffled."""
    rng = np.random.default_rng(seed)
    bad = [contact_record(int(i), {"plan": "free"}, email="not-an-email") for i in rng.integers(0, 10**9, invalid)]
    lines = [json.dumps(r, separators=(",", ":")) for r in records + bad]
    order = rng.permutation(len(lines))
    tmp = path.with_suffix(".tmp")
    with igzip.open(tmp, "wb", compresslevel=1) as fh:
        fh.write(("\n".join(lines[k] for k in order) + "\n").encode())
    tmp.rename(path)
    return {"lines": len(lines), "records": len(records), "invalid": invalid}


def cached(folder: Path, build: Callable[[Path], dict]) -> dict:
    """Runs `build(folder)` unless a previous run finished it (its manifest exists)."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    print(f"generating {folder}", file=sys.stderr)
    result = build(folder)
    result["generated_seconds"] = round(time.perf_counter() - start, 1)
    manifest.write_text(json.dumps(result, indent=1))
    return result


# --- running -----------------------------------------------------------------


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}


@dataclass(frozen=True)
class Run:
    secs: float  # wall time
    cpu: float  # user + system CPU seconds of the process and its children (less sensitive to a busy machine)
    rss: int  # peak RSS, bytes
    load: float  # 1-min load average when it started (the machine is shared)


def run(cmd: list[str], log: Path) -> Run:
    """One child process, timed with os.wait4; its output goes to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); its output ({log}):\n{log.read_text()[-4000:]}")
    return Run(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, load)


def ingest(landing: Path, warehouse: Path, log: Path) -> Run:
    return run([CLI, "ingest", "--landing", str(landing), "--warehouse", str(warehouse)], log)


def query(warehouse: Path, sql: str) -> list[dict]:
    proc = subprocess.run(
        [CLI, "query", "--warehouse", str(warehouse), "--format", "json", sql], capture_output=True, text=True, env=child_env()
    )
    if proc.returncode != 0:
        raise SystemExit(f"query failed on {warehouse}: {sql}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


def land(landing: Path, src: Path, rel: str, landed_at: datetime) -> None:
    """Hard-links `src` at landing/rel with mtime `landed_at` (all links share it)."""
    dest = landing / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        try:
            os.link(src, dest)
        except OSError:
            shutil.copy(src, dest)
    ts = landed_at.timestamp()
    os.utime(dest, (ts, ts))


def copy_tree(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)


LEDGER_SUMS = (
    "select (select count(*) from contact_events) as table_rows, count(*) as files, sum(rows_read) as rows_read, "
    "sum(rows_loaded) as rows_loaded, sum(rows_rejected) as rows_rejected, sum(rows_duplicate) as rows_duplicate "
    "from ingested_files"
)
LEDGER_FILES = (
    "select file, cast(landing_date as varchar) as landing_date, status, rows_read, rows_loaded, rows_rejected, rows_duplicate "
    "from ingested_files order by landed_at, file"
)


def reconcile(warehouse: Path, expected_events: int, label: str) -> list[str]:
    s = query(warehouse, LEDGER_SUMS)[0]
    balanced = s["rows_read"] == s["rows_loaded"] + s["rows_rejected"] + s["rows_duplicate"]
    lines = [
        f"**{label}** (`{warehouse.relative_to(ROOT.parent)}`): contact_events holds {s['table_rows']:,} rows "
        f"(expected {expected_events:,}: {'ok' if s['table_rows'] == expected_events else 'MISMATCH'}); ledger: {s['files']} files, "
        f"read {s['rows_read']:,} = loaded {s['rows_loaded']:,} + rejected {s['rows_rejected']:,} + duplicate {s['rows_duplicate']:,} "
        f"({'balanced' if balanced else 'NOT BALANCED'}).",
        "",
        "| file | landing day | status | read | loaded | rejected | duplicate |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in query(warehouse, LEDGER_FILES):
        lines.append(
            f"| {r['file']} | {r['landing_date']} | {r['status']} | {r['rows_read']:,} | {r['rows_loaded']:,} | "
            f"{r['rows_rejected']:,} | {r['rows_duplicate']:,} |"
        )
    return lines + [""]


def moved_check(warehouse: Path, prefix: str, id_ranges: list[tuple[int, int, str]], expected: int, label: str) -> str:
    """Rows of contact_events whose timestamp is not the one their event's first copy
    carried (the formula that generated it): the repeats with a moved timestamp
    that won. Also: one row per event_id."""
    num = f"cast(substr(event_id, {len(prefix) + 1}) as bigint)"
    mixed = f"(({num} * 2654435761) % 4294967296)"
    cases = " ".join(f"when {num} >= {lo} and {num} < {hi} then {expr.format(id=num, mix=mixed)}" for lo, hi, expr in id_ranges)
    sql = (
        f"select count(*) as rows, count(distinct event_id) as ids, count(*) filter (where cast(epoch(event_timestamp) as bigint) "
        f"<> case {cases} end) as moved from contact_events"
    )
    r = query(warehouse, sql)[0]
    ok = r["moved"] == expected and r["rows"] == r["ids"]
    return (
        f"- {label}: {r['rows']:,} rows, {r['ids']:,} distinct event_ids; {r['moved']:,} rows carry a moved timestamp "
        f"(expected {expected:,}, the repeats with a moved timestamp that are the newest copy of their event): "
        f"{'ok' if ok else 'MISMATCH'}"
    )


def fmt_runs(values: list[float], digits: int = 2) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


# --- (A) a small day into a big warehouse ------------------------------------


def scenario_a(reps: int, timings: dict[str, float]) -> list[str]:
    events = env_int("BENCH_GROWTH_EVENTS", 5_000_000)
    contacts = env_int("BENCH_GROWTH_CONTACTS", 200_000)
    n_files = env_int("BENCH_GROWTH_HISTORY_FILES", 5)
    span = max(env_int("BENCH_GROWTH_HISTORY_DAYS", 100), n_files)
    small_events = env_int("BENCH_GROWTH_SMALL_EVENTS", max(events // 100, 1))
    small_contacts = env_int("BENCH_GROWTH_SMALL_CONTACTS", max(contacts // 100, 2))
    hist_days = [A_LAST - timedelta(days=n_files - 1 - k) for k in range(n_files)]
    small_day = A_LAST + timedelta(days=2)
    hist_start = epoch(A_LAST) - span * DAY

    def hist_ts(ids: np.ndarray) -> np.ndarray:
        # Spread over the `span` days before the last history day, in id order (file
        # k's events end before its landing day), jitter under an hour.
        return hist_start + (ids.astype(np.int64) * (span * DAY)) // events + (mix(ids) % np.uint64(3600)).astype(np.int64)

    def small_ts(ids: np.ndarray) -> np.ndarray:
        return epoch(small_day) - 2 * DAY + (mix(ids) % np.uint64(2 * DAY)).astype(np.int64)

    def build(folder: Path) -> dict:
        files = []
        bounds = np.linspace(0, events, n_files + 1).astype(np.int64)
        for k in range(n_files):
            ids = np.arange(bounds[k], bounds[k + 1], dtype=np.int64)
            rel = f"contact_event/history-{k:03d}.jsonl.gz"
            stats = write_events(
                folder / Path(rel).name, ids, hist_ts, np.empty(0, np.int64), np.empty(0, np.int64),
                prefix="ev-", contacts=contacts, seed=100 + k, dup_frac=0.05, invalid_frac=0.005,
            )  # fmt: skip
            files.append({"rel": rel, "src": Path(rel).name, "day": hist_days[k].isoformat(), **stats})
        rng = np.random.default_rng(7)
        base = [contact_record(i, full_props(i)) for i in range(contacts)]
        stats = write_contacts(folder / "contacts-000.jsonl.gz", base, max(contacts // 200, 1), seed=8)
        files.append({"rel": "contact/contacts-000.jsonl.gz", "src": "contacts-000.jsonl.gz", "day": hist_days[0].isoformat(), **stats})
        updated = rng.choice(contacts, size=max(contacts // 10, 1), replace=False)
        ups = [contact_record(int(i), {"plan": str(PLANS[(i + 1) % 3]), "score": int(i % 100)}) for i in updated]
        stats = write_contacts(folder / "contacts-001.jsonl.gz", ups, max(len(ups) // 200, 1), seed=9)
        mid = hist_days[min(2, n_files - 1)].isoformat()
        files.append({"rel": "contact/contacts-001.jsonl.gz", "src": "contacts-001.jsonl.gz", "day": mid, **stats})

        # The small day.
        new = np.arange(events, events + small_events, dtype=np.int64)
        recent = np.arange(max(0, events - max(events // 50, 1)), events, dtype=np.int64)  # the last ~2 days of history
        rep = rng.choice(recent, size=min(len(recent), round(small_events * 0.025)), replace=False)
        rep_ts = hist_ts(rep)
        moved = rng.random(len(rep)) < 0.25
        shift = rng.integers(3600, 36 * 3600, len(rep))
        rep_ts = np.where(moved, rep_ts + shift, rep_ts)
        stats = write_events(
            folder / "small-events.jsonl.gz", new, small_ts, rep, rep_ts,
            prefix="ev-", contacts=contacts, seed=11, dup_frac=0.025, invalid_frac=0.005,
        )  # fmt: skip
        stats["moved"] = int(moved.sum())
        small = [{"rel": "contact_event/small-day.jsonl.gz", "src": "small-events.jsonl.gz", "day": small_day.isoformat(), **stats}]
        half = small_contacts // 2
        records = [contact_record(i, full_props(i)) for i in range(contacts, contacts + small_contacts - half)]
        kinds = {"null_seats": 0, "new_email": 0, "new_prop": 0}
        for j, i in enumerate(rng.choice(contacts, size=half, replace=False).tolist()):
            if j % 3 == 0:
                records.append(contact_record(i, {"plan": "team", "seats": None}))
                kinds["null_seats"] += 1
            elif j % 3 == 1:
                records.append(contact_record(i, {"plan": "pro", "last_login": "2026-01-11"}))
                kinds["new_prop"] += 1
            else:
                records.append(contact_record(i, {"score": 99}, email=f"moved{i}@example.org"))
                kinds["new_email"] += 1
        stats = write_contacts(folder / "small-contacts.jsonl.gz", records, max(small_contacts // 200, 1), seed=12)
        small.append(
            {"rel": "contact/small-day.jsonl.gz", "src": "small-contacts.jsonl.gz", "day": small_day.isoformat(),
             **stats, "new": small_contacts - half, "updates": half, **kinds}
        )  # fmt: skip
        return {"history": files, "small": small}

    gen_dir = WORK / f"gen-A{GEN_VERSION}-e{events}-c{contacts}-f{n_files}-s{span}-se{small_events}-sc{small_contacts}"
    start = time.perf_counter()
    gen = cached(gen_dir, build)
    timings["(A) generation"] = time.perf_counter() - start

    work = WORK / "A"
    shutil.rmtree(work, ignore_errors=True)
    hist_landing, full_landing, small_landing = work / "landing-history", work / "landing-full", work / "landing-small"
    for i, f in enumerate(gen["history"]):
        when = at(date.fromisoformat(f["day"]), LANDED_AT + timedelta(seconds=i))
        land(hist_landing, gen_dir / f["src"], f["rel"], when)
        land(full_landing, gen_dir / f["src"], f["rel"], when)
    for i, f in enumerate(gen["small"]):
        when = at(date.fromisoformat(f["day"]), LANDED_AT + timedelta(seconds=i))
        land(full_landing, gen_dir / f["src"], f["rel"], when)
        land(small_landing, gen_dir / f["src"], f["rel"], when)

    held = work / "held"
    print(f"(A) ingesting the history into {held}", file=sys.stderr)
    build = ingest(hist_landing, held, work / "logs" / "history.log")
    timings["(A) history ingest"] = build.secs
    print(f"(A) history ingested in {build.secs:.1f} s, peak {mib(build.rss)}", file=sys.stderr)
    held_check = query(held, LEDGER_SUMS)[0]
    size = sum(p.stat().st_size for p in held.rglob("*") if p.is_file())

    results: dict[str, list[Run]] = {"i": [], "ii": []}
    start = time.perf_counter()
    for rep in range(reps):
        for case in ("i", "ii") if rep % 2 == 0 else ("ii", "i"):
            wh = work / f"run-{case}"
            if case == "i":
                copy_tree(held, wh)
                r = ingest(full_landing, wh, work / "logs" / f"rep{rep + 1}-i.log")
            else:
                shutil.rmtree(wh, ignore_errors=True)
                r = ingest(small_landing, wh, work / "logs" / f"rep{rep + 1}-ii.log")
            results[case].append(r)
            print(f"(A) rep {rep + 1}/{reps} ({case}) {r.secs:.2f} s, cpu {r.cpu:.2f} s, {mib(r.rss)}, load {r.load:.1f}", file=sys.stderr)
    timings["(A) repetitions (with copies)"] = time.perf_counter() - start

    med = {k: statistics.median(r.secs for r in v) for k, v in results.items()}
    cpu = {k: statistics.median(r.cpu for r in v) for k, v in results.items()}
    rss = {k: statistics.median(r.rss for r in v) for k, v in results.items()}
    ratio = med["i"] / med["ii"]
    ev, ct = gen["small"]
    hist_events = [f for f in gen["history"] if f["rel"].startswith("contact_event/")]
    lines = [
        f"### (A) A small day into a warehouse holding {events:,} events and {contacts:,} contacts",
        "",
        f"History: {len(hist_events)} contact_event files ({sum(f['lines'] for f in hist_events):,} lines: "
        f"{events:,} events, {sum(f['dup'] for f in hist_events):,} within-file repeats, "
        f"{sum(f['invalid'] for f in hist_events):,} invalid) with event timestamps over {span} days, and 2 contact files "
        f"({contacts:,} contacts, then {contacts // 10:,} updated), on {n_files} landing days {hist_days[0]} .. {hist_days[-1]}; "
        f"ingested in one CLI call in {build.secs:.1f} s (CPU {build.cpu:.1f} s, peak {mib(build.rss)}). The warehouse: {held_check['table_rows']:,} "
        f"contact_events, {size / 2**20:,.0f} MiB on disk, copied (`cp -r`, not timed) before each run of (i).",
        "",
        f"Small day ({small_day}): {ev['new']:,} new events + {ev['dup']:,} within-file repeats + {ev['repeats']:,} repeats of "
        f"events of the last two history days ({ev['moved']:,} with a moved timestamp) + {ev['invalid']:,} invalid lines; "
        f"{ct['records']:,} contact records ({ct['new']:,} new contacts, {ct['updates']:,} updates: {ct['null_seats']:,} "
        f"remove `seats` with a JSON null, {ct['new_email']:,} change the email, {ct['new_prop']:,} add a property) + "
        f"{ct['invalid']:,} invalid emails.",
        "",
        "| case | median s | runs (s, in order) | median CPU s | CPU s of the runs | peak RSS (median) | load at each start |",
        "|---|---:|---|---:|---|---:|---|",
        *(
            f"| {label} | {med[k]:.2f} | {fmt_runs([r.secs for r in results[k]])} | {cpu[k]:.2f} | "
            f"{fmt_runs([r.cpu for r in results[k]])} | {mib(rss[k])} | {fmt_runs([r.load for r in results[k]], 1)} |"
            for k, label in (("i", "(i) into a copy of the big warehouse"), ("ii", "(ii) into an empty warehouse"))
        ),
        "",
        f"**(i)/(ii) = {ratio:.2f}** in wall time (target <= 1.5: {'met' if ratio <= 1.5 else '**not met**'}); "
        f"{cpu['i'] / cpu['ii']:.2f} in CPU time. {reps} repetitions, alternating which case goes first.",
        "",
    ]
    # Reconciliation of the last repetition's warehouses.
    expected_i = events + ev["new"]
    lines += reconcile(work / "run-i", expected_i, "(i) after the small day")
    lines += reconcile(work / "run-ii", ev["new"] + ev["repeats"], "(ii) after the small day")
    contact_sql = (
        "select count(*) as contacts, count(*) filter (where properties not like '%\"seats\"%') as without_seats, "
        "count(*) filter (where email like 'moved%') as moved_email from contacts"
    )
    id_ranges = [
        (0, events, f"{hist_start} + ({{id}} * {span * DAY}) // {events} + {{mix}} % 3600"),
        (events, events + small_events, f"{epoch(small_day) - 2 * DAY} + {{mix}} % {2 * DAY}"),
    ]
    for case in ("i", "ii"):
        lines.append(moved_check(work / f"run-{case}", "ev-", id_ranges, ev["moved"], f"contact_events in ({case})"))
    for case, exp in (
        ("i", (contacts + ct["new"], ct["null_seats"], ct["new_email"])),
        ("ii", (ct["new"] + ct["updates"], ct["updates"], ct["new_email"])),
    ):
        c = query(work / f"run-{case}", contact_sql)[0]
        got = (c["contacts"], c["without_seats"], c["moved_email"])
        lines.append(
            f"- contacts in ({case}): {got[0]:,} rows (expected {exp[0]:,}), {got[1]:,} without `seats` (expected {exp[1]:,}), "
            f"{got[2]:,} with the changed email (expected {exp[2]:,}): {'ok' if got == exp else 'MISMATCH'}"
        )
    return lines + [""]


# --- (B) a day-by-day backfill -----------------------------------------------


def scenario_b(timings: dict[str, float]) -> list[str]:
    per_day = env_int("BENCH_GROWTH_DAY_EVENTS", 250_000)
    days = env_int("BENCH_GROWTH_DAYS", 20)
    first = min(B_FIRST, datetime.now(UTC).date() - timedelta(days=days + 1))
    landing_days = [first + timedelta(days=d) for d in range(days)]

    def ts_of(ids: np.ndarray) -> np.ndarray:
        day_start = np.array([epoch(d) for d in landing_days], np.int64)[ids // per_day]
        return day_start - 2 * DAY + (mix(ids) % np.uint64(2 * DAY)).astype(np.int64)

    def build(folder: Path) -> dict:
        rng = np.random.default_rng(21)
        files = []
        newest_moved: dict[int, bool] = {}  # repeated event -> whether its newest copy moved
        for d in range(days):
            new = np.arange(d * per_day, (d + 1) * per_day, dtype=np.int64)
            pool = np.arange(max(0, d - 3) * per_day, d * per_day, dtype=np.int64)
            rep = rng.choice(pool, size=min(len(pool), round(per_day * 0.03)), replace=False) if d else np.empty(0, np.int64)
            moved = rng.random(len(rep)) < 0.3
            shift = rng.integers(3600, 36 * 3600, len(rep)) * rng.choice([-1, 1], len(rep))
            rep_ts = np.where(moved, ts_of(rep) + shift, ts_of(rep))
            newest_moved.update(zip(rep.tolist(), moved.tolist()))
            name = f"day-{d + 1:03d}.jsonl.gz"
            stats = write_events(
                folder / name, new, ts_of, rep, rep_ts,
                prefix="bf-", contacts=200_000, seed=300 + d, dup_frac=0.02, invalid_frac=0.005,
            )  # fmt: skip
            files.append(
                {"rel": f"contact_event/{name}", "src": name, "day": landing_days[d].isoformat(), "moved": int(moved.sum()), **stats}
            )
        return {"files": files, "moved_newest": sum(newest_moved.values())}

    gen_dir = WORK / f"gen-B{GEN_VERSION}-n{per_day}-d{days}-{first}"
    start = time.perf_counter()
    gen = cached(gen_dir, build)
    timings["(B) generation"] = time.perf_counter() - start

    work = WORK / "B"
    shutil.rmtree(work, ignore_errors=True)
    landing, wh = work / "landing", work / "warehouse"
    landing.mkdir(parents=True)
    rows_before = 0
    per: list[dict] = []
    start = time.perf_counter()
    for d, f in enumerate(gen["files"], 1):
        land(landing, gen_dir / f["src"], f["rel"], at(date.fromisoformat(f["day"]), LANDED_AT))
        r = ingest(landing, wh, work / "logs" / f"day-{d:03d}.log")
        row = query(
            wh,
            "select (select count(*) from contact_events) as table_rows, status, rows_read, rows_loaded, rows_rejected, "
            f"rows_duplicate from ingested_files where file = '{f['rel']}'",
        )
        if len(row) != 1:
            raise SystemExit(f"(B) day {d}: expected one ledger row for {f['rel']}, got {row}")
        per.append({"day": d, "landing_day": f["day"], "history": rows_before, "run": r, **row[0]})
        print(
            f"(B) day {d}/{days} ({f['day']}): {r.secs:.2f} s, cpu {r.cpu:.2f} s, {mib(r.rss)}, load {r.load:.1f}, "
            f"table {row[0]['table_rows']:,} rows",
            file=sys.stderr,
        )
        rows_before = row[0]["table_rows"]
    timings["(B) backfill (with per-day queries)"] = time.perf_counter() - start

    secs = [p["run"].secs for p in per]
    cpus = [p["run"].cpu for p in per]
    hist = np.array([p["history"] for p in per], float) / 1e6
    fit = np.polyfit(hist, secs, 1) if days >= 2 else [float("nan")] * 2
    cpu_fit = np.polyfit(hist, cpus, 1) if days >= 2 else [float("nan")] * 2
    k = min(3, days)
    head, tail = statistics.median(secs[:k]), statistics.median(secs[-k:])
    cpu_head, cpu_tail = statistics.median(cpus[:k]), statistics.median(cpus[-k:])
    ratio = secs[-1] / secs[0]
    moved = sum(f["moved"] for f in gen["files"])
    lines = [
        f"### (B) A {days}-day backfill of {per_day:,} events a day, one landing day per ingest",
        "",
        f"Landing days {landing_days[0]} .. {landing_days[-1]}; each day {per_day:,} new events (timestamps in the two days "
        f"before it) + {round(per_day * 0.02):,} within-file repeats + {round(per_day * 0.005):,} invalid lines, and from day 2, "
        f"{round(per_day * 0.03):,} repeats of the previous three days' events ({moved:,} of all repeats with a timestamp moved "
        "by 1-36 h either way).",
        "",
        "| day | landing day | rows before | seconds | CPU s | peak RSS | read | loaded | rejected | duplicate | status | load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for p in per:
        lines.append(
            f"| {p['day']} | {p['landing_day']} | {p['history']:,} | {p['run'].secs:.2f} | {p['run'].cpu:.2f} | {mib(p['run'].rss)} | "
            f"{p['rows_read']:,} | {p['rows_loaded']:,} | {p['rows_rejected']:,} | {p['rows_duplicate']:,} | {p['status']} | "
            f"{p['run'].load:.1f} |"
        )
    lines += [
        "",
        f"- day 1: {secs[0]:.2f} s, day {days}: {secs[-1]:.2f} s: **day {days} / day 1 = {ratio:.2f}** "
        f"(target <= 1.3: {'met' if ratio <= 1.3 else '**not met**'}); in CPU time {cpus[0]:.2f} s and {cpus[-1]:.2f} s: "
        f"{cpus[-1] / cpus[0]:.2f}",
        f"- median of days 1-{k}: {head:.2f} s, of days {days - k + 1}-{days}: {tail:.2f} s: ratio {tail / head:.2f} "
        f"(CPU: {cpu_head:.2f} s and {cpu_tail:.2f} s: {cpu_tail / cpu_head:.2f})",
        f"- day 2 (the first into a non-empty warehouse): {secs[1]:.2f} s; day {days} / day 2 = {secs[-1] / secs[1]:.2f} "
        f"(CPU {cpus[-1] / cpus[1]:.2f})"
        if days >= 2
        else "",
        f"- least-squares fit over the {days} days: {fit[0]:+.3f} s per million rows of history, intercept {fit[1]:.2f} s "
        f"(CPU: {cpu_fit[0]:+.3f} s per million rows, intercept {cpu_fit[1]:.2f} s); the table held "
        f"{per[-1]['history']:,} rows before day {days}",
        "",
    ]
    lines += reconcile(wh, days * per_day, f"(B) after day {days}")
    expr = f"{epoch(landing_days[0]) - 2 * DAY} + ({{id}} // {per_day}) * {DAY} + {{mix}} % {2 * DAY}"
    lines += [moved_check(wh, "bf-", [(0, days * per_day, expr)], gen["moved_newest"], f"contact_events after day {days}"), ""]
    return lines


# --- main --------------------------------------------------------------------


def machine() -> str:
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("polars", "deltalake", "duckdb", "pyarrow", "dagster"))
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    git = subprocess.run(["git", "-C", str(ROOT.parent), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT.parent), "status", "--porcelain"], capture_output=True, text=True).stdout.splitlines()
    tree = f"commit {git}" + (f" + uncommitted changes ({len(dirty)} paths)" if dirty else "")
    return f"{os.cpu_count()} CPUs, {ram:.0f} GiB RAM, Python {platform.python_version()}; {versions}; {tree}"


def package_fingerprint() -> str:
    """sha256 of the package's Python sources: the package is edited while benchmarks
    run, so the summary says whether it changed during the run."""
    digest = hashlib.sha256()
    for path in sorted((ROOT.parent / "ingestion_pipeline").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT.parent)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def command() -> str:
    names = ["BENCH_REPS", "BENCH_GROWTH_EVENTS", "BENCH_GROWTH_CONTACTS", "BENCH_GROWTH_HISTORY_FILES", "BENCH_GROWTH_HISTORY_DAYS",
             "BENCH_GROWTH_SMALL_EVENTS", "BENCH_GROWTH_SMALL_CONTACTS", "BENCH_GROWTH_DAY_EVENTS", "BENCH_GROWTH_DAYS",
             "BENCH_GROWTH_SCENARIOS"]  # fmt: skip
    set_ = [f"{n}={os.environ[n]!r}" if " " in os.environ[n] else f"{n}={os.environ[n]}" for n in names if os.environ.get(n)]
    return " ".join([*set_, "make bench-growth"])


def main() -> None:
    reps = env_int("BENCH_REPS", 3)
    scenarios = os.environ.get("BENCH_GROWTH_SCENARIOS", "A B").upper().split()
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    when = datetime.now(UTC)
    load_start = os.getloadavg()
    source_start = package_fingerprint()
    timings: dict[str, float] = {}
    sections: list[str] = []
    if "A" in scenarios:
        sections += scenario_a(reps, timings)
    if "B" in scenarios:
        sections += scenario_b(timings)
    total = time.perf_counter() - started
    load_end = os.getloadavg()
    source_end = package_fingerprint()
    source = (
        f"Package sources (sha256 of ingestion_pipeline/**/*.py): {source_start}, unchanged during the run."
        if source_start == source_end
        else f"Package sources (sha256 of ingestion_pipeline/**/*.py): {source_start} at the start, {source_end} at the end: "
        "**the package changed during the run**, so the runs may not all measure the same code."
    )
    header = [
        f"## bench-growth, {when:%Y-%m-%d %H:%M} UTC on {platform.node()}",
        "",
        f"Machine: {machine()}.",
        source,
        f"Load average (1/5/15 min) at the start {' / '.join(f'{v:.1f}' for v in load_start)}, "
        f"at the end {' / '.join(f'{v:.1f}' for v in load_end)}.",
        "",
        f"Command: `{command()}` (took {total / 60:.1f} min: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ").",
        "",
    ]
    text = "\n".join(header + sections) + "\n"
    print(text)
    with open(OUT / "growth.md", "a") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
