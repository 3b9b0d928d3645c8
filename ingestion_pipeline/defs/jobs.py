"""Run requests: one run per landing day, selecting the batch assets of the streams
with work that day plus their current-state tables."""

import hashlib
from datetime import date

import dagster as dg

from ..landing import LandedFile
from ..streams import STREAMS, tables_fed_by
from ..warehouse import REJECTED
from .assets import batch_assets, table_assets
from .checks import freshness_check_keys

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(*batch_assets, *table_assets),
    description="Ingest one landing day: that day's batches, then the current-state tables.",
)

tables_job = dg.define_asset_job(
    "tables_job",
    selection=dg.AssetSelection.assets(*table_assets),
    description="Rebuild current-state tables from the committed batches (repairs a table left "
    "behind by a run that stopped between committing a day and rebuilding the table).",
)

# Only the freshness checks, no asset: staleness is noticed although nothing lands.
freshness_job = dg.define_asset_job(
    "freshness_job",
    selection=dg.AssetSelection.checks(*freshness_check_keys),
    description="Evaluates the landing_freshness check of every stream (reads the ledger, materialises nothing).",
)


def day_run_requests(groups: dict[tuple[str, date], list[LandedFile]], key_prefix: str) -> list[dg.RunRequest]:
    by_day: dict[date, dict[str, list[LandedFile]]] = {}
    for (stream, day), files in groups.items():
        by_day.setdefault(day, {})[stream] = files
    requests = []
    for day in sorted(by_day):
        streams = sorted(by_day[day])
        ids = sorted(f.file_id for s in streams for f in by_day[day][s])
        digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
        requests.append(
            dg.RunRequest(
                job_name=ingest_job.name,
                run_key=f"{key_prefix}:{day.isoformat()}:{digest}",
                partition_key=day.isoformat(),
                asset_selection=[dg.AssetKey(STREAMS[s].batch_asset) for s in streams]
                + sorted(
                    {dg.AssetKey(t.table) for s in streams for t in tables_fed_by(s)} | {dg.AssetKey(REJECTED)},
                    key=lambda k: k.to_user_string(),
                ),
                tags={"ingestion/streams": ",".join(streams), "ingestion/files": str(len(ids))},
            )
        )
    return requests
