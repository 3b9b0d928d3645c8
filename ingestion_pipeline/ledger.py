"""The ledger (`ingested_files`): one row per landed file version, the source of
truth for what was processed (a Delta table; `stages.commit_day` writes it)."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from . import status
from .lake import retry_conflicts
from .landing import LandedFile
from .warehouse import LEDGER, LEDGER_SCHEMA, Warehouse


def read_ledger(warehouse: Warehouse, columns: list[str] | None = None, version: int | None = None) -> pl.DataFrame:
    def read() -> pl.DataFrame:
        return warehouse.scan(LEDGER, version).select(columns or list(LEDGER_SCHEMA)).collect()

    return retry_conflicts(read, "reading the ledger")


def pending_files(warehouse: Warehouse, listed: Iterable[LandedFile]) -> list[LandedFile]:
    """Listed file versions that the ledger has not recorded as done (new, or `failed`)."""
    done = read_ledger(warehouse, ["file_id", "status"]).filter(pl.col("status").is_in(status.values(status.DONE)))
    done_ids = set(done["file_id"].to_list())
    return [f for f in listed if f.file_id not in done_ids]
