"""Asset checks that read the ledger: no file of a stream is left `failed`, and
every stream's newest loaded file landed within its freshness deadline."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl

from ..freshness import stream_freshness
from ..ledger import read_ledger
from ..status import FileStatus
from ..streams import STREAMS, StreamSpec
from .resources import IngestResource


def make_no_failed_files_check(spec: StreamSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=spec.table,
        name="no_failed_files",
        description=f"No {spec.name} file is left with status `failed` in the ledger.",
    )
    def check(ingest: IngestResource) -> dg.AssetCheckResult:
        ledger = read_ledger(ingest.warehouse(), ["file", "stream", "status", "first_error"])
        failed = ledger.filter((pl.col("stream") == spec.name) & (pl.col("status") == FileStatus.FAILED))
        return dg.AssetCheckResult(
            passed=failed.is_empty(),
            metadata={
                "failed_files": failed.height,
                "files": dg.MetadataValue.md(
                    "\n".join(f"- {f}: {e}" for f, e in failed.select("file", "first_error").iter_rows()) or "none"
                ),
            },
        )

    return check


no_failed_files_checks = [make_no_failed_files_check(spec) for spec in STREAMS.values()]


FRESHNESS_CHECK = "landing_freshness"
freshness_check_keys = [dg.AssetCheckKey(dg.AssetKey(spec.table), FRESHNESS_CHECK) for spec in STREAMS.values()]


@dg.multi_asset_check(
    name="landing_freshness_checks",
    specs=[
        dg.AssetCheckSpec(
            FRESHNESS_CHECK,
            asset=spec.table,
            description=f"The newest loaded {spec.name} file landed within the stream's deadline "
            "(INGEST_FRESHNESS_HOURS, default 26 h). Reads the ledger; WARN when stale.",
        )
        for spec in STREAMS.values()
    ],
    can_subset=True,
    description="Landing freshness of every stream, from the ledger (one read for all selected checks).",
)
def landing_freshness_checks(context: dg.AssetCheckExecutionContext, ingest: IngestResource):
    ledger = read_ledger(ingest.warehouse(), ["stream", "landed_at", "status"])
    now = datetime.now(UTC)
    for spec in STREAMS.values():
        key = dg.AssetCheckKey(dg.AssetKey(spec.table), FRESHNESS_CHECK)
        if key not in context.selected_asset_check_keys:
            continue
        f = stream_freshness(ledger, spec.name, ingest.freshness_deadline(spec.name), now)
        hours = timedelta(hours=1)
        metadata = {
            "deadline_hours": dg.MetadataValue.float(f.deadline / hours),
            "files_loaded": f.files_loaded,
            "status": f.describe(),
        }
        if f.newest_landed_at is not None:
            metadata["newest_landed_at"] = dg.MetadataValue.timestamp(f.newest_landed_at)
            metadata["age_hours"] = dg.MetadataValue.float(round(f.age / hours, 3))
            metadata["stale_after"] = dg.MetadataValue.timestamp(f.newest_landed_at + f.deadline)
        else:
            metadata["newest_landed_at"] = "none: no files yet"
        yield dg.AssetCheckResult(
            asset_key=key.asset_key,
            check_name=FRESHNESS_CHECK,
            passed=f.fresh,
            severity=dg.AssetCheckSeverity.WARN,
            description=f.describe(),
            metadata=metadata,
        )
