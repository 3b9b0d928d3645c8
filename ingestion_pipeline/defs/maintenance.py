"""The `maintenance` job: compaction and vacuum of every Delta table (see
ingestion_pipeline/maintenance.py), daily and launchable from the UI."""

import dagster as dg

from ..maintenance import maintain
from .resources import IngestResource


@dg.op(description="Catch every table up, remove unreferenced staged rows, compact small files, vacuum old versions.")
def maintain_warehouse(context: dg.OpExecutionContext, ingest: IngestResource) -> dg.Output:
    report = maintain(ingest.settings(), log=context.log.info, run_id=context.run_id)
    context.log.info(report.describe())
    return dg.Output(
        None,
        metadata={
            "retention_hours": report.retention_hours,
            "files_compacted": sum(report.compacted.values()),
            "files_vacuumed": sum(report.vacuumed.values()),
            "unreferenced_staged_rows_removed": report.rows_removed,
            "summary": report.describe(),
        },
    )


@dg.job(
    name="maintenance",
    description="Compacts small files and vacuums files older than INGEST_RETENTION_HOURS (168 by default) in every "
    "Delta table of the warehouse. Safe while ingests and queries run.",
    tags={"ingestion/maintenance": "true"},
)
def maintenance_job():
    maintain_warehouse()


maintenance_schedule = dg.ScheduleDefinition(
    name="maintenance_schedule",
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    job=maintenance_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily at 03:30 UTC: the maintenance job (compaction and vacuum).",
)
