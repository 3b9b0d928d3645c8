"""The ledger (`ingested_files`): one row per landed file version, the source of
truth for what was processed. Stored as one segment per (stream, landing day)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import polars as pl

from .landing import LandedFile
from .warehouse import LEDGER_SCHEMA, Warehouse, write_parquet

DONE_STATUSES = ("loaded", "partially_loaded", "rejected", "skipped_duplicate")
LOADED_STATUSES = ("loaded", "partially_loaded")


def read_ledger(warehouse: Warehouse, columns: list[str] | None = None) -> pl.DataFrame:
    return warehouse.scan_segments("ingested_files", LEDGER_SCHEMA).select(columns or list(LEDGER_SCHEMA)).collect()


def write_segment(warehouse: Warehouse, stream: str, day: date, rows: list[dict]) -> None:
    frame = pl.DataFrame(rows, schema=LEDGER_SCHEMA) if rows else pl.DataFrame(schema=LEDGER_SCHEMA)
    write_parquet(frame.sort("landed_at", "file"), warehouse.segment_path("ingested_files", stream, day.isoformat()))


def pending_files(warehouse: Warehouse, listed: Iterable[LandedFile]) -> list[LandedFile]:
    """Listed file versions that the ledger has not recorded as done (new, or `failed`)."""
    done = read_ledger(warehouse, ["file_id", "status"]).filter(pl.col("status").is_in(DONE_STATUSES))
    done_ids = set(done["file_id"].to_list())
    return [f for f in listed if f.file_id not in done_ids]
