"""Per stream: a daily-partitioned batch asset (that day's landed files, parsed,
validated and normalised) and a current-state table asset merged from all batches."""

from datetime import date

import dagster as dg
import polars as pl

from .. import status as file_status
from ..pipeline import PartitionReport, TableSummary, build_rejected, build_table, ingest_partition
from ..streams import STREAMS, StreamSpec, tables_fed_by
from ..warehouse import LEDGER_SCHEMA, REJECTED, batch_table
from .partitions import landing_days
from .resources import IngestResource

LEDGER_COLUMNS = ["file", "format", "status", "rows_read", "rows_loaded", "rows_rejected", "rows_duplicate", "first_error"]


class BatchConfig(dg.Config):
    """Launching with no config reuses the staged result of each unchanged file
    version; `reprocess: true` re-reads every file of the day from scratch."""

    reprocess: bool = False


def markdown_preview(frame: pl.DataFrame, rows: int = 10) -> dg.MetadataValue:
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        fmt_str_lengths=60,
        tbl_cols=-1,
        tbl_rows=rows,
    ):
        return dg.MetadataValue.md(str(frame.head(rows)) if frame.height else "_no rows_")


def column_schema(schema: pl.Schema | dict) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in dict(schema).items()])


def files_table(rows: list[dict]) -> dg.MetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "int" if LEDGER_SCHEMA[c] == pl.Int64 else "string") for c in LEDGER_COLUMNS])
    records = [dg.TableRecord({c: (r[c] if r[c] is not None else "") for c in LEDGER_COLUMNS}) for r in rows]
    return dg.MetadataValue.table(records=records, schema=schema)


def reprocess_changes(report: PartitionReport) -> dg.MetadataValue:
    """Per file, the counts before and after a reprocess (only files that changed)."""
    changes = report.changes()
    before = sum(r["rows_loaded"] for r in report.previous)
    head = f"rows_loaded {before} -> {report.rows_loaded} ({report.rows_loaded - before:+d}) over {len(report.files)} file(s)"
    return dg.MetadataValue.md("\n".join([head, ""] + [f"- {c}" for c in changes]) if changes else head + "; no file changed")


def reconciliation_check(rows: list[dict], asset_key: dg.AssetKey) -> dg.AssetCheckResult:
    broken = [r["file"] for r in rows if r["rows_read"] != r["rows_loaded"] + r["rows_rejected"] + r["rows_duplicate"]]
    return dg.AssetCheckResult(
        check_name="files_reconcile",
        asset_key=asset_key,
        passed=not broken,
        metadata={"files_checked": len(rows), "files_not_reconciling": ", ".join(broken) or "none"},
    )


def make_batch_asset(spec: StreamSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey(spec.batch_asset)

    @dg.asset(
        key=key,
        partitions_def=landing_days,
        group_name="landing_batches",
        kinds={"polars", "delta"},
        description=(
            f"Files landed under the {spec.name} folder(s) on the partition's day, parsed, "
            "validated (pandera) and normalised. Writes that day's batch, its rejected_records "
            "and its ingested_files (ledger) rows."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "files_reconcile",
                asset=key,
                blocking=True,
                description="Every file: rows_read = rows_loaded + rows_rejected + rows_duplicate",
            )
        ],
        pool=f"stream_{spec.name}",
    )
    def batch(context: dg.AssetExecutionContext, config: BatchConfig, ingest: IngestResource) -> dg.MaterializeResult:
        day = date.fromisoformat(context.partition_key)
        report = ingest_partition(
            ingest.settings(),
            ingest.store(),
            spec.name,
            day,
            run_id=context.run_id,
            reprocess=config.reprocess,
            log=context.log.info,
        )
        for r in report.files:
            context.log.info(
                f"{r['file']}: {r['status']} read={r['rows_read']} loaded={r['rows_loaded']} "
                f"rejected={r['rows_rejected']} duplicate={r['rows_duplicate']}"
                + (f" first_error={r['first_error']}" if r["first_error"] else "")
            )
        changes = report.changes()
        if config.reprocess:
            context.log.info(
                f"reprocessed {len(report.files)} file(s): " + ("; ".join(changes) if changes else "no per-file count changed")
            )
        if report.errors:
            # The day's other files are committed: their records reach the tables
            # now, although this partition fails until the failed file loads.
            for fed in tables_fed_by(spec.name):
                build_table(ingest.settings(), fed.name, log=context.log.info, run_id=context.run_id)
            raise dg.Failure(
                description=f"{len(report.errors)} file(s) failed and are recorded as `failed` "
                "(the day's other files are loaded and in the tables); "
                "re-materialise this partition after fixing the cause",
                metadata={"errors": dg.MetadataValue.md("\n".join(f"- {e}" for e in report.errors))},
            )
        warehouse = ingest.warehouse()
        batch = batch_table(spec.name, "records")
        stages = [r["stage_id"] for r in report.files if r["status"] in file_status.LOADED]
        preview = (
            warehouse.scan(batch)
            .filter((pl.col("landing_date") == day) & pl.col("_stage_id").is_in(stages))
            .drop("_stage_id", "_key_hash", "_bucket")
            .head(10)
            .collect()
        )
        statuses = pl.DataFrame(report.files, schema=LEDGER_SCHEMA)["status"].value_counts() if report.files else None
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": report.rows_loaded,
                "dagster/column_schema": column_schema(preview.schema),
                "files": files_table(report.files),
                "file_count": len(report.files),
                "rows_rejected": sum(r["rows_rejected"] for r in report.files),
                "statuses": ", ".join(f"{s}={n}" for s, n in statuses.iter_rows()) if statuses is not None else "no files",
                "preview": markdown_preview(preview),
                "path": dg.MetadataValue.path(warehouse.lake.uri(batch)),
                **({"reprocess_changes": reprocess_changes(report)} if config.reprocess else {}),
            },
            check_results=[reconciliation_check(report.files, key)],
        )

    return batch


def merge_metadata(summary: TableSummary) -> dict:
    """What the merge did: keys inserted, updated and deleted, and the first of each."""
    r = summary.report
    lines = [
        f"- {what} ({n}): " + ", ".join(map(str, keys)) + (" ..." if n > len(keys) else "")
        for what, n, keys in (
            ("inserted", r.n_inserted, r.inserted),
            ("updated", r.n_updated, r.updated),
            ("deleted", r.n_deleted, r.deleted),
        )
        if n
    ]
    return {
        "merge": r.describe(),
        "keys_inserted": r.n_inserted,
        "keys_updated": r.n_updated,
        "keys_deleted": r.n_deleted,
        "changed_keys": dg.MetadataValue.md("\n".join(lines) if lines else "no key changed"),
        "ledger_version": r.ledger_version if r.ledger_version is not None else -1,
    }


def make_table_asset(spec: StreamSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey(spec.table)

    @dg.asset(
        key=key,
        deps=[
            dg.AssetDep(source.batch_asset, partition_mapping=dg.AllPartitionMapping())
            for source in STREAMS.values()
            if spec in tables_fed_by(source.name)
        ],
        group_name="warehouse",
        kinds={"polars", "delta", "duckdb"},
        description=f"Current state of `{spec.table}`: one row per {spec.key_label}, merged from every {spec.name} batch"
        + (" (account_id: the newest group/ membership)." if spec.extra_columns else "."),
        check_specs=[dg.AssetCheckSpec("unique_key", asset=key, blocking=True, description=f"{spec.key_label} is unique and never null")],
        pool=f"stream_{spec.name}",
    )
    def table(context: dg.AssetExecutionContext, ingest: IngestResource) -> dg.MaterializeResult:
        summary = build_table(ingest.settings(), spec.name, log=context.log.info, run_id=context.run_id)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": summary.rows,
                "dagster/column_schema": column_schema(summary.schema),
                "preview": markdown_preview(summary.preview),
                "path": dg.MetadataValue.path(summary.uri),
                **merge_metadata(summary),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="unique_key",
                    passed=summary.duplicate_keys == 0,
                    metadata={"duplicate_or_null_keys": summary.duplicate_keys, "keys_checked": summary.report.checked_keys},
                )
            ],
        )

    return table


@dg.asset(
    key=REJECTED,
    deps=[dg.AssetDep(spec.batch_asset, partition_mapping=dg.AllPartitionMapping()) for spec in STREAMS.values()],
    group_name="warehouse",
    kinds={"delta", "duckdb"},
    description="Every rejected record (file, line, field, rule, message, raw) of the committed files of every stream. "
    "Each batch step brings it up to date with its own landing day; this asset catches it up after a run stopped in between.",
)
def rejected_records(context: dg.AssetExecutionContext, ingest: IngestResource) -> dg.MaterializeResult:
    report = build_rejected(ingest.settings(), log=context.log.info, run_id=context.run_id)
    lake = ingest.warehouse().lake
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": lake.rows(REJECTED),
            "merge": report.describe(),
            "path": dg.MetadataValue.path(lake.uri(REJECTED)),
        }
    )


batch_assets = [make_batch_asset(spec) for spec in STREAMS.values()]
table_assets = [*(make_table_asset(spec) for spec in STREAMS.values()), rejected_records]
