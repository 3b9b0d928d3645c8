"""The daily sweep: yesterday always, plus any day of the last week whose landed
files the ledger does not record as done (new, or left `failed`)."""

from datetime import timedelta

import dagster as dg

from ..pipeline import by_partition, list_landing, pending_by_partition
from .jobs import day_run_requests, freshness_job, ingest_job
from .resources import IngestResource

SWEEP_DAYS = 7


@dg.schedule(
    name="daily_sweep",
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    target=ingest_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sweeps yesterday and re-requests failed or missing landing days of the last 7 days.",
)
def daily_sweep(context: dg.ScheduleEvaluationContext, ingest: IngestResource):
    today = context.scheduled_execution_time.date()
    yesterday = today - timedelta(days=1)
    window = {today - timedelta(days=n) for n in range(1, SWEEP_DAYS + 1)}
    store = ingest.store()
    # One listing serves both questions (on S3 a listing of a big bucket takes seconds).
    listed = list_landing(store)
    groups = {part: files for part, files in pending_by_partition(ingest.settings(), store, listed).items() if part[1] in window}
    for part, files in by_partition([f for f in listed if f.landing_date == yesterday]).items():
        groups.setdefault(part, files)
    if not groups:
        return dg.SkipReason(f"No landed files on {yesterday} and nothing pending in the last {SWEEP_DAYS} days")
    return day_run_requests(groups, key_prefix=f"sweep:{today.isoformat()}")


freshness_schedule = dg.ScheduleDefinition(
    name="freshness_schedule",
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    target=freshness_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: evaluates every stream's landing_freshness check, so a stream that stops landing is flagged.",
)
