"""Commit a run's staged files of one landing day.

First their rows are appended to the stream's batch tables (`_batches/<stream>/*`),
where every row carries its file's stage id: rows no ledger row references are
invisible to every table. Then the day's ledger rows (`ingested_files`) are
written in one commit, each referencing the staged result it commits: that commit
is the commit point. A run killed before it leaves only unreferenced batch rows
(the next run stages those files again); a run killed after it leaves tables behind
the ledger, which `merge_tables` catches up from the ledger alone.

A ledger commit of a stream sets the Delta transaction id `ingested_files:<stream>`
to the stream's next commit sequence number, so two commits of one stream never
interleave (the later one retries on the new ledger; whether a file's content was
already loaded, `skipped_duplicate`, is decided on the whole ledger), and every
table knows which streams' commits it has merged (see merge_tables)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from .. import status as file_status
from ..lake import retry_conflicts
from ..status import FileStatus
from ..warehouse import LEDGER, LEDGER_SCHEMA, Warehouse, batch_schemas, batch_table
from .stage_file import StagedFile


def ledger_txn(stream: str) -> str:
    """The transaction id of a stream's ledger commits."""
    return f"{LEDGER}:{stream}"


Log = Callable[[str], None]


def append_staged(warehouse: Warehouse, stream: str, day: date, staged: list[StagedFile], run_id: str, log: Log) -> None:
    """The staged files' rows, appended to the day's batch tables (one commit per
    table, streamed from the local files)."""
    for kind, schema in batch_schemas(stream).items():
        paths = [str(s.path(kind)) for s in staged if s.stage_id and s.path(kind).exists()]
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
        if not rows:
            continue
        arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema

        def data(paths=paths, schema=schema, arrow_schema=arrow_schema) -> pa.RecordBatchReader:
            batches = pads.dataset(paths, format="parquet").scanner(columns=list(schema)).to_reader()
            return pa.RecordBatchReader.from_batches(arrow_schema, (b.cast(arrow_schema) for b in batches))

        warehouse.lake.add_rows(
            batch_table(stream, kind),
            data,
            run_id=run_id,
            metadata={"stream": stream, "landing_date": day.isoformat(), "files": len(paths)},
            log=log,
        )
        log(f"appended {rows} {kind} row(s) of {len(paths)} file(s) to the {stream} batch of {day}")


def commit_ledger(
    warehouse: Warehouse, stream: str, day: date, staged: list[StagedFile], run_id: str, reprocess: bool, log: Log
) -> tuple[list[dict], list[dict]]:
    """Writes the day's ledger rows; returns (the rows before, the rows now), in
    version order."""
    lake = warehouse.lake
    in_day = (pl.col("stream") == stream) & (pl.col("landing_date") == day)

    def attempt() -> tuple[list[dict], list[dict]]:
        dt = lake.table(LEDGER)
        ledger = lake.scan(LEDGER, table=dt)
        previous = ledger.filter(in_day).collect().to_dicts()
        rows = {r["file_id"]: r for r in previous}
        for s in staged:
            old = rows.get(s.row["file_id"])
            if old is not None and old["status"] != FileStatus.FAILED:
                if s.error is not None:
                    continue  # a reprocess that broke keeps the file's previous result
                if not reprocess and old["stage_id"] != s.stage_id:
                    continue  # committed meanwhile by a concurrent run of this day
            file_status.check(old["status"] if old else None, s.row["status"])
            rows[s.row["file_id"]] = dict(s.row)
        ordered = sorted(rows.values(), key=lambda r: (r["landed_at"], r["file"]))
        _skip_duplicates(ordered, ledger.filter(~in_day))
        frame = pl.DataFrame(ordered, schema=LEDGER_SCHEMA) if ordered else pl.DataFrame(schema=LEDGER_SCHEMA)
        sequence = (dt.transaction_version(ledger_txn(stream)) or 0) + 1
        lake.replace(
            LEDGER,
            frame,
            f"stream = '{stream}' AND landing_date = '{day.isoformat()}'",
            run_id=run_id,
            txns=[(ledger_txn(stream), sequence)],
            metadata={"stream": stream, "landing_date": day.isoformat(), "files": len(ordered), "rows_removed": len(previous)},
            table=dt,
        )
        return sorted(previous, key=lambda r: (r["landed_at"], r["file"])), ordered

    return retry_conflicts(attempt, f"committing the ledger of {stream} {day}", log)


def _folder(path: str) -> str:
    return path.partition("/")[0]


def _skip_duplicates(rows: list[dict], others: pl.LazyFrame) -> None:
    """A loaded file whose content (sha256) an earlier version of a file from the
    same folder already loaded becomes `skipped_duplicate` (another folder maps the
    same bytes differently, so it is not a duplicate). `rows` are the day's, in
    version order; `others` the rest of the ledger."""
    shas = [r["sha256"] for r in rows if r["sha256"] and r["status"] in file_status.LOADED]
    if not shas:
        return
    originals: dict[tuple[str, str], tuple] = {}
    prior = others.filter(pl.col("status").is_in(file_status.values(file_status.LOADED)) & pl.col("sha256").is_in(shas))
    for sha, landed, path in prior.select("sha256", "landed_at", "file").collect().iter_rows():
        ident = (_folder(path), sha)
        originals[ident] = min(originals.get(ident, (landed, path)), (landed, path))
    for row in rows:
        if row["status"] not in file_status.LOADED or not row["sha256"]:
            continue
        ident = (_folder(row["file"]), row["sha256"])
        original = originals.get(ident)
        if original and original < (row["landed_at"], row["file"]):
            file_status.skip_duplicate(row, row["sha256"], original[1])
        else:
            originals.setdefault(ident, (row["landed_at"], row["file"]))
