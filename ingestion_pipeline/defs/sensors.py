"""`landing_sensor`: notices settled new file versions and requests one run per
landing day. The ledger, not the cursor, decides what is new; the cursor only
remembers the size/version of files seen unsettled on the previous tick and, for
S3, how far the sweep of the bucket has got (`landing/listing.py`: each tick lists
the recent date prefixes plus a bounded slice of the sweep)."""

import json
import time
from datetime import date
from typing import NamedTuple

import dagster as dg

from ..landing import LandedFile
from ..landing.listing import SweepState, list_for_tick
from ..pipeline import pending_by_partition, tables_behind
from ..streams import FEEDS, STREAMS
from ..warehouse import LEDGER, REJECTED
from .jobs import day_run_requests, ingest_job, tables_job
from .partitions import FIRST_LANDING_DAY
from .resources import IngestResource

TABLE_ASSETS = {spec.table for spec in STREAMS.values()} | {REJECTED}

ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def days_with_active_runs(instance: dg.DagsterInstance, days: set[date]) -> set[date]:
    """Landing days that already have a queued or running ingest run: their new
    files wait for it to finish instead of starting a second run of the same day."""
    busy = set()
    for day in days:
        filters = dg.RunsFilter(job_name=ingest_job.name, statuses=ACTIVE_RUN_STATUSES, tags={"dagster/partition": day.isoformat()})
        if instance.get_run_records(filters=filters, limit=1):
            busy.add(day)
    return busy


def table_repair_request(instance: dg.DagsterInstance, ingest: IngestResource) -> dg.RunRequest | None:
    """A `tables_job` run for tables behind the ledger (a run whose worker died
    between its ledger commit and its table merge), once no run is active (an
    active run merges its tables itself)."""
    behind = [t for t in tables_behind(ingest.settings()) if t in TABLE_ASSETS]
    if not behind:
        return None
    # Any active run (a sensor run, a backfill, a Materialize click) may be about to
    # merge these tables itself.
    if instance.get_run_records(filters=dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES), limit=1):
        return None
    # One request per ledger version: the same state is not requested twice.
    version = ingest.warehouse().lake.version(LEDGER)
    return dg.RunRequest(
        job_name=tables_job.name,
        run_key=f"tables:{','.join(sorted(behind))}:{version}",
        asset_selection=[dg.AssetKey(t) for t in sorted(behind)],
        tags={"ingestion/repair": "tables_behind_ledger"},
    )


class Tick(NamedTuple):
    ready: dict[tuple[str, date], list[LandedFile]]  # settled files by partition, at most `limit`
    unsettled: dict[str, list]  # path -> [size, version], kept in the cursor
    held_back: int  # settled files left for the next tick
    before_first_day: list[str]  # files whose landing day has no partition


def settled_groups(
    groups: dict[tuple[str, date], list[LandedFile]],
    previous: dict[str, list],
    settle_seconds: float,
    limit: int,
    now: float,
) -> Tick:
    settled: list[tuple[tuple[str, date], LandedFile]] = []
    unsettled: dict[str, list] = {}
    first_day = date.fromisoformat(FIRST_LANDING_DAY)
    too_early = []
    for part, files in groups.items():
        for f in files:
            if f.landing_date < first_day:
                too_early.append(f.path)
            elif previous.get(f.path) == [f.size, f.version] or now - f.landed_at.timestamp() >= settle_seconds:
                settled.append((part, f))
            else:
                unsettled[f.path] = [f.size, f.version]
    settled.sort(key=lambda pf: (pf[1].landed_at, pf[1].path))
    ready: dict[tuple[str, date], list[LandedFile]] = {}
    for part, f in settled[:limit]:
        ready.setdefault(part, []).append(f)
    return Tick(ready, unsettled, max(0, len(settled) - limit), sorted(too_early))


@dg.sensor(
    name="landing_sensor",
    jobs=[ingest_job, tables_job],
    # The daemon evaluates sensors in a 5 s loop, so 5 means every loop. A file is taken
    # once it is settle_seconds (5 s) old or unchanged since the previous tick, so it is
    # requested 5-10 s after it lands (5-20 s with 10 here; docs/PERFORMANCE.md).
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests one ingest run per landing day for settled files the ledger has not recorded.",
)
def landing_sensor(context: dg.SensorEvaluationContext, ingest: IngestResource):
    cursor = json.loads(context.cursor) if context.cursor else {}
    previous = cursor.get("unsettled", {})
    now = time.time()
    store = ingest.store()
    listed, sweep = list_for_tick(
        store,
        [feed.folder for feed in FEEDS.values()],
        SweepState.from_json(cursor.get("sweep")),
        now,
        keys_per_tick=ingest.sweep_keys_per_tick,
        full_listing_seconds=ingest.full_listing_seconds,
    )
    groups = pending_by_partition(ingest.settings(), store, listed)
    # An S3 object is whole once visible: nothing to wait for.
    settle_seconds = 0.0 if store.atomic_writes else ingest.settle_seconds
    tick = settled_groups(groups, previous, settle_seconds, ingest.max_files_per_tick, now)
    ready, unsettled, held_back = tick.ready, tick.unsettled, tick.held_back
    context.update_cursor(json.dumps({"unsettled": unsettled, "sweep": sweep.to_json()}, sort_keys=True))
    if tick.before_first_day:
        context.log.warning(
            f"{len(tick.before_first_day)} file(s) have an mtime before {FIRST_LANDING_DAY}, the first landing-day "
            f"partition, and are not ingested (touch them to re-land): {', '.join(tick.before_first_day[:5])}"
        )
    busy = days_with_active_runs(context.instance, {day for _, day in ready})
    ready = {part: files for part, files in ready.items() if part[1] not in busy}
    if not ready:
        repair = table_repair_request(context.instance, ingest)
        if repair is not None:
            context.log.info(f"merging {', '.join(k.to_user_string() for k in repair.asset_selection)}: behind the ledger")
            return [repair]
        waiting = f"; {len(unsettled)} file(s) still settling" if unsettled else ""
        if busy:
            waiting += f"; waiting for the active run of {', '.join(sorted(d.isoformat() for d in busy))}"
        return dg.SkipReason(f"No new settled files in {ingest.landing_url}{waiting}")
    if held_back:
        context.log.info(f"{held_back} settled file(s) left for the next tick (max_files_per_tick={ingest.max_files_per_tick})")
    return day_run_requests(ready, key_prefix="landing")
