"""Asset checks that read the ledger: no file of a stream is left `failed`."""

import dagster as dg
import polars as pl

from ..ledger import read_ledger
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
        failed = ledger.filter((pl.col("stream") == spec.name) & (pl.col("status") == "failed"))
        return dg.AssetCheckResult(
            passed=failed.is_empty(),
            metadata={
                "failed_files": failed.height,
                "files": dg.MetadataValue.md("\n".join(f"- {f}: {e}" for f, e in failed.select("file", "first_error").iter_rows()) or "none"),
            },
        )

    return check


no_failed_files_checks = [make_no_failed_files_check(spec) for spec in STREAMS.values()]
