"""Upkeep of the warehouse's Delta tables (the `maintenance` job, daily, and
`ingestion-pipeline maintain`): every table caught up with the ledger, staged
rows no ledger row will ever reference removed, small files compacted, and files
that only versions older than the retention need deleted.

Safe beside running ingests and readers: a compaction is a commit like any other
(Delta orders it with concurrent ones; the loser retries), and a vacuum deletes
only files no version younger than the retention references, so a reader of a
recent version or a writer that read one keeps its files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl

from .lake import ORPHAN_HOURS, retry_conflicts
from .settings import Settings
from .stages.merge_tables import derived_tables, merge_table
from .warehouse import ERASURES, LEDGER, Warehouse

Log = Callable[[str], None]

# Staged rows no ledger row references are a run that died before its ledger
# commit (or a result a reprocess replaced). A run references its rows within
# minutes; these are removed once older than this.
UNREFERENCED_STAGE_HOURS = 24


@dataclass
class MaintenanceReport:
    retention_hours: float
    stages_removed: int = 0
    rows_removed: int = 0
    compacted: dict[str, int] = field(default_factory=dict)  # table -> files removed by compaction
    vacuumed: dict[str, int] = field(default_factory=dict)  # table -> files deleted

    def describe(self) -> str:
        return (
            f"compacted {sum(self.compacted.values())} file(s) in {len([n for n in self.compacted.values() if n])} table(s); "
            f"vacuumed {sum(self.vacuumed.values())} file(s) older than {self.retention_hours:g} h; "
            f"removed {self.rows_removed} unreferenced staged row(s) of {self.stages_removed} stage(s)"
        )


def maintain(settings: Settings, log: Log = lambda msg: None, run_id: str | None = None, now: datetime | None = None) -> MaintenanceReport:
    warehouse = Warehouse(settings.warehouse_dir)
    warehouse.ensure_layout(run_id)
    lake = warehouse.lake
    report = MaintenanceReport(settings.retention_hours)
    # 1. Every table at the latest ledger version: a table's next merge compares
    #    ledger versions, whose files the vacuum below must not have deleted.
    for table in derived_tables():
        merge_table(warehouse, table, run_id, log, force=True)
    # 2. Staged rows no ledger row references, old enough not to be a run in flight.
    cutoff = (now or datetime.now(UTC)) - timedelta(hours=UNREFERENCED_STAGE_HOURS)
    _remove_unreferenced_stages(warehouse, cutoff, run_id, log, report)
    # 3. Compaction and 4. vacuum, table by table.
    for name in warehouse.specs():
        result = retry_conflicts(lambda name=name: lake.compact(name, run_id), f"compacting {name}", log)
        report.compacted[name] = int(result.get("numFilesRemoved", 0))
        if name == ERASURES:
            continue  # hashes only; its history is the erasure ledger's
        deleted = lake.vacuum(name, settings.retention_hours)
        # Untracked files younger than ORPHAN_HOURS may be a commit in progress.
        deleted += lake.vacuum(name, max(settings.retention_hours, ORPHAN_HOURS), full=True)
        report.vacuumed[name] = len(deleted)
    return report


def _remove_unreferenced_stages(warehouse: Warehouse, cutoff: datetime, run_id, log: Log, report: MaintenanceReport) -> None:
    lake = warehouse.lake
    referenced = set(lake.scan(LEDGER).select("stage_id").drop_nulls().unique().collect()["stage_id"].to_list())
    older = f"{cutoff:%Y%m%dT%H%M%S}"  # stage ids start with the time they were made
    stages: set[str] = set()
    for name in warehouse.specs():
        if not name.startswith("_batches/"):
            continue
        found = (
            lake.scan(name)
            .select("landing_date", "_stage_id")
            .unique()
            .filter(pl.col("_stage_id") < older)
            .collect()
            .filter(~pl.col("_stage_id").is_in(list(referenced)))
        )
        if found.height:
            stages.update(found["_stage_id"].to_list())
            report.rows_removed += lake.delete_matching(name, found, ["landing_date", "_stage_id"], run_id=run_id)
    report.stages_removed = len(stages)
    if stages:
        log(f"removed {report.rows_removed} staged row(s) of {len(stages)} stage(s) no ledger row references")
