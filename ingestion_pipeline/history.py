"""A table's versions as a user reads them (`ingestion-pipeline history TABLE`):
from the Delta log's commit information, with the run id each commit records."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from .warehouse import Warehouse

# delta-rs's operation metrics: rows added, updated and removed, per operation.
ADDED = ("num_added_rows", "num_target_rows_inserted", "num_copied_rows")
UPDATED = ("num_target_rows_updated", "num_updated_rows")
REMOVED = ("num_target_rows_deleted", "num_deleted_rows", "num_removed_rows")
# What our own commits say about themselves (commit metadata), shown as `detail`.
DETAIL = ("stream", "landing_date", "files", "ledger_version", "rebuilt", "days", "inserted", "updated", "deleted")


def _metric(metrics: dict, names: tuple[str, ...]) -> int | None:
    values = [metrics[n] for n in names if n in metrics]
    return int(values[0]) if values else None


def table_history(warehouse: Warehouse, table: str, limit: int | None = None) -> list[dict]:
    """One dict per version, newest first."""
    rows = []
    for commit in warehouse.lake.history(table, limit):
        metrics = commit.get("operationMetrics") or {}
        if isinstance(metrics, str):
            metrics = json.loads(metrics)
        operation = commit.get("operation", "")
        added = _metric(metrics, ADDED)
        if operation == "MERGE":
            added = _metric(metrics, ("num_target_rows_inserted",))
        elif operation == "OPTIMIZE":
            added = 0  # a compaction rewrites rows, it adds none
        detail = ", ".join(f"{k}={commit[k]}" for k in DETAIL if commit.get(k) not in (None, ""))
        rows.append(
            {
                "version": commit["version"],
                "committed_at": datetime.fromtimestamp(commit["timestamp"] / 1000, UTC),
                "operation": operation,
                "run_id": commit.get("run_id"),
                "rows_added": added or 0,
                "rows_updated": _metric(metrics, UPDATED) or 0,
                "rows_removed": int(commit.get("rows_removed") or _metric(metrics, REMOVED) or 0) if operation != "OPTIMIZE" else 0,
                "detail": detail or None,
            }
        )
    return rows
