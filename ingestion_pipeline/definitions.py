"""The Dagster code location: `dg dev` (`make run`) and `dg check defs` load `defs` from here."""

import dagster as dg

from .defs.assets import batch_assets, table_assets
from .defs.checks import landing_freshness_checks, no_failed_files_checks
from .defs.jobs import freshness_job, ingest_job, tables_job
from .defs.maintenance import maintenance_job, maintenance_schedule
from .defs.resources import IngestResource
from .defs.schedules import daily_sweep, freshness_schedule
from .defs.sensors import landing_sensor


def build_definitions(ingest: IngestResource | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=[*batch_assets, *table_assets],
        asset_checks=[*no_failed_files_checks, landing_freshness_checks],
        jobs=[ingest_job, tables_job, freshness_job, maintenance_job],
        sensors=[landing_sensor],
        schedules=[daily_sweep, freshness_schedule, maintenance_schedule],
        resources={"ingest": ingest or IngestResource.from_env()},
    )


defs = build_definitions()
