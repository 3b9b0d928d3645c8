"""Ingest without Dagster: one landing day of a stream, one table.

landing -> read -> parse -> validate -> normalise -> stage (`stages.stage_file`) ->
commit (`stages.commit_day`: batch rows, then the ledger) -> merge
(`stages.merge_tables`). Dagster assets and the CLI call these functions."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from . import erasure
from .lake import retry_conflicts
from .landing import LandedFile, LandingStore
from .ledger import pending_files, read_ledger
from .settings import Settings
from .stages.commit_day import append_staged, commit_ledger
from .stages.merge_tables import MergeReport, behind, merge_table
from .stages.stage_file import StagedFile, stage_file
from .status import FileStatus
from .streams import FEEDS, STREAMS, feed_for_path, feeds_of_stream
from .warehouse import LEDGER, REJECTED, Warehouse

Log = Callable[[str], None]
COUNT_COLUMNS = ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate")


def list_day_files(store: LandingStore, stream: str, day: date) -> list[LandedFile]:
    files = [f for feed in feeds_of_stream(stream) for f in store.list_files(feed.folder) if f.landing_date == day]
    return sorted(files, key=lambda f: (f.landed_at, f.path))


@dataclass
class PartitionReport:
    stream: str
    day: date
    files: list[dict]  # the day's ledger rows, in version order
    errors: list[str]
    previous: list[dict] = field(default_factory=list)  # the day's ledger rows before this run

    def changes(self) -> list[str]:
        """What this run changed in the day's per-file results (after a reprocess:
        what a normaliser or limit change did), one line per changed file."""
        before = {r["file_id"]: r for r in self.previous}
        lines = []
        for r in self.files:
            old = before.pop(r["file_id"], None)
            if old is None:
                continue
            diffs = [f"{k} {old[k]} -> {r[k]} ({r[k] - old[k]:+d})" for k in COUNT_COLUMNS if old[k] != r[k]]
            if old["status"] != r["status"]:
                diffs.insert(0, f"status {old['status']} -> {r['status']}")
            if diffs:
                lines.append(f"{r['file']}: " + ", ".join(diffs))
        return lines

    @property
    def rows_loaded(self) -> int:
        return sum(r["rows_loaded"] for r in self.files)


def ingest_partition(
    settings: Settings,
    store: LandingStore,
    stream: str,
    day: date,
    run_id: str,
    reprocess: bool = False,
    log: Log = lambda msg: None,
) -> PartitionReport:
    """Stage the day's files that need it (new or failed ones; every one with
    `reprocess`), append them to the day's batch, commit the day's ledger rows and
    bring rejected_records up to date. Re-running gives the same outputs."""
    warehouse = Warehouse(settings.warehouse_dir)
    warehouse.ensure_layout(run_id)
    listed = list_day_files(store, stream, day)
    ledger = read_ledger(warehouse, ["stream", "landing_date", "file_id", "status"])
    day_rows = ledger.filter((pl.col("stream") == stream) & (pl.col("landing_date") == day))
    done = dict(day_rows.select("file_id", "status").iter_rows())
    wanted = [f for f in listed if reprocess or done.get(f.file_id) in (None, FileStatus.FAILED)]
    staged: list[StagedFile] = []
    with tempfile.TemporaryDirectory(prefix=f"ingest-{stream}-{day}-") as work:
        for i, file in enumerate(wanted):
            log(f"[{i + 1}/{len(wanted)}] staging {file.path} ({file.size} bytes)")
            staged.append(stage_file(store, file, settings, Path(work), run_id))
        # Privacy erasures: rows of an erased contact from files that landed before
        # the erasure never reach a batch (a no-op when nothing was ever erased).
        erasures = erasure.erasures_version(warehouse)
        erasure.suppress_staged(warehouse, store, stream, staged)
        append_staged(warehouse, stream, day, staged, run_id, log)
        if erasure.erasures_version(warehouse) != erasures:
            # An erase ran meanwhile: its sweep may have missed the rows appended above.
            erasure.sweep_stages(warehouse, store, staged, run_id)
        previous, rows = commit_ledger(warehouse, stream, day, staged, run_id, reprocess, log)
    errors = [f"{s.row['file']}: {type(s.error).__name__}: {s.error}" for s in staged if s.error is not None]
    merge_table(warehouse, REJECTED, run_id, log)
    return PartitionReport(stream, day, rows, errors, previous)


@dataclass
class TableSummary:
    table: str
    uri: str
    rows: int
    schema: dict
    preview: pl.DataFrame
    report: MergeReport

    @property
    def duplicate_keys(self) -> int:
        return self.report.duplicate_keys


def build_table(settings: Settings, stream: str, log: Log = lambda msg: None, run_id: str | None = None) -> TableSummary:
    """Catch a stream's current-state table up with the ledger (only the keys the
    new or changed batches touch), and rejected_records too."""
    warehouse = Warehouse(settings.warehouse_dir)
    warehouse.ensure_layout(run_id)
    spec = STREAMS[stream]
    report = merge_table(warehouse, spec.table, run_id, log)
    log(report.describe())
    lake = warehouse.lake

    def summary() -> TableSummary:
        dt = lake.table(spec.table)
        return TableSummary(
            table=spec.table,
            uri=lake.uri(spec.table),
            rows=lake.rows(spec.table, table=dt),
            schema=warehouse.table_schemas()[spec.table],
            preview=lake.scan(spec.table, table=dt).head(10).collect(),
            report=report,
        )

    return retry_conflicts(summary, f"reading {spec.table}")


def build_rejected(settings: Settings, log: Log = lambda msg: None, run_id: str | None = None) -> MergeReport:
    """Catch rejected_records up with the ledger (the landing days whose files changed)."""
    warehouse = Warehouse(settings.warehouse_dir)
    warehouse.ensure_layout(run_id)
    report = merge_table(warehouse, REJECTED, run_id, log)
    log(report.describe())
    return report


def tables_behind(settings: Settings) -> list[str]:
    """Tables that do not reflect the ledger yet (a run stopped between its ledger
    commit and its table merge): the next ingest, or the sensor, catches them up."""
    warehouse = Warehouse(settings.warehouse_dir)
    if not warehouse.lake.exists(LEDGER):
        return []
    return behind(warehouse)


def pending_by_partition(
    settings: Settings, store: LandingStore, listed: list[LandedFile] | None = None
) -> dict[tuple[str, date], list[LandedFile]]:
    """Files the ledger has not recorded as done, grouped by (stream, landing day);
    of `listed`, or of everything under the feed folders."""
    if listed is None:
        listed = list_landing(store)
    return by_partition(pending_files(Warehouse(settings.warehouse_dir), listed))


def list_landing(store: LandingStore) -> list[LandedFile]:
    """Every file version under the feed folders."""
    return [f for feed in FEEDS.values() for f in store.list_files(feed.folder)]


def by_partition(files: list[LandedFile]) -> dict[tuple[str, date], list[LandedFile]]:
    """Files grouped by (stream, landing day); files outside every feed folder are left out."""
    groups: dict[tuple[str, date], list[LandedFile]] = {}
    for f in files:
        feed = feed_for_path(f.path)
        if feed is not None:
            groups.setdefault((feed.stream.name, f.landing_date), []).append(f)
    return groups


__all__ = [
    "PartitionReport",
    "TableSummary",
    "build_rejected",
    "build_table",
    "by_partition",
    "ingest_partition",
    "list_day_files",
    "list_landing",
    "pending_by_partition",
    "read_ledger",
    "tables_behind",
]
