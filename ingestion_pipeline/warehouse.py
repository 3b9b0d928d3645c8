"""The warehouse: Parquet tables under one root, atomic writes, a write lock, and
DuckDB views named after the tables (SPEC section 3)."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

from . import faults
from .streams import STREAMS, StreamSpec

UTC_TS = pl.Datetime("us", "UTC")
ROW_GROUP_ROWS = 256_000
LINEAGE = {"_source_file": pl.String, "_source_line": pl.Int64, "_landed_at": UTC_TS}

LEDGER_SCHEMA = {
    "file": pl.String,
    "stream": pl.String,
    "format": pl.String,
    "size_bytes": pl.Int64,
    "landed_at": UTC_TS,
    "status": pl.String,
    "rows_read": pl.Int64,
    "rows_loaded": pl.Int64,
    "rows_rejected": pl.Int64,
    "rows_duplicate": pl.Int64,
    "first_error": pl.String,
    "processed_at": UTC_TS,
    "run_id": pl.String,
    "file_version": pl.String,
    "file_id": pl.String,
    "sha256": pl.String,
    "landing_date": pl.Date,
    "schema_drift": pl.String,
}
REJECTED_SCHEMA = {
    "file": pl.String,
    "line": pl.Int64,
    "stream": pl.String,
    "field": pl.String,
    "rule": pl.String,
    "message": pl.String,
    "raw": pl.String,
    "landed_at": UTC_TS,
}
# The erasure ledger (`erasures`, one file per request; see erasure.py): hashes
# only, never the erased email or contact id.
ERASURE_SCHEMA = {
    "erasure_id": pl.String,
    "requested_at": UTC_TS,
    "subject_kind": pl.String,  # contact_id | email
    "subject_sha256": pl.String,  # sha256 of the normalised subject
    "contact_id_sha256": pl.List(pl.String),  # every contact id it resolved to
    "email_sha256": pl.List(pl.String),  # every email those contacts carried (and the subject email)
    "status": pl.String,  # in_progress | completed
    "rows_removed": pl.String,  # JSON object: table -> rows removed
    "completed_at": UTC_TS,
}


COLUMN_TYPES = {"timestamp": UTC_TS, "boolean": pl.Boolean, "number": pl.Float64}


def table_schema(spec: StreamSpec) -> dict[str, pl.DataType]:
    cols: dict[str, pl.DataType] = {}
    for f in spec.fields:
        if f.kind == "properties":
            cols.update(dict.fromkeys(spec.extra_columns, pl.String))
        cols[f.name] = COLUMN_TYPES.get(f.kind, pl.String)
    if spec.kind == "entity":
        cols["first_seen_at"] = UTC_TS
        cols["updated_at"] = UTC_TS
    return {**cols, **LINEAGE}


def scan_all(files: list[str], schema: dict) -> pl.LazyFrame:
    """Parquet files read as one frame of the current schema: a column that an
    older file lacks (written before the column existed) is null there."""
    return pl.concat(
        [pl.scan_parquet(f, missing_columns="insert", schema=schema) for f in files] if files else [pl.LazyFrame(schema=schema)],
        how="vertical",
    )


def atomic_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _label(path: Path) -> str:
    return "/".join(path.parts[-4:])


def commit(tmp: Path, path: Path) -> None:
    """fsync the temp file, rename it over the target, fsync the folder."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    faults.point(f"synced temp of {_label(path)}")
    os.replace(tmp, path)
    faults.point(f"renamed {_label(path)}")
    fsync_dir(path.parent)


def write_parquet(frame: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
    """Atomic: a reader sees the old file or the new one, never half of one."""
    tmp = atomic_path(path)
    faults.point(f"writing temp of {_label(path)}")
    try:
        if isinstance(frame, pl.LazyFrame):
            frame.sink_parquet(tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        else:
            frame.write_parquet(tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS, statistics=True)
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def copy_file(source: Path, path: Path) -> None:
    """An atomic copy (temp file, then rename), like write_parquet."""
    tmp = atomic_path(path)
    faults.point(f"writing temp of {_label(path)}")
    try:
        shutil.copyfile(source, tmp)
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_row_groups(frames: Iterable[pl.DataFrame], path: Path, schema: dict) -> int:
    """One Parquet file from frames written in turn, each as its own row group(s)
    (for bucketed files: one bucket's rows, so a reader of one bucket skips the
    others by their `_bucket` statistics). Only one frame is in memory at a time.
    Returns the rows written."""
    rows = 0
    with pq.ParquetWriter(path, pl.DataFrame(schema=schema).to_arrow().schema, compression="zstd") as writer:
        for frame in frames:
            if frame.height:
                writer.write_table(frame.select(list(schema)).cast(schema).to_arrow(), row_group_size=ROW_GROUP_ROWS)
                rows += frame.height
    return rows


def write_buckets(frames: Iterable[pl.DataFrame], path: Path, schema: dict) -> int:
    """write_row_groups, atomic like write_parquet."""
    tmp = atomic_path(path)
    faults.point(f"writing temp of {_label(path)}")
    try:
        rows = write_row_groups(frames, tmp, schema)
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return rows


def scan_buckets(files: list[str], schema: dict, buckets: range, bucket_of: pl.Expr) -> pl.LazyFrame:
    """The rows of a range of hash buckets of Parquet files holding a `_bucket`
    column (row groups of other buckets are skipped by their statistics). A file
    written before buckets existed has no `_bucket`: its rows' bucket is computed
    with `bucket_of`. Columns missing from a file are null, as in scan_all."""
    if not files:
        return pl.LazyFrame(schema=schema)
    scan = pl.scan_parquet(files, schema=schema, missing_columns="insert", extra_columns="ignore", glob=False)
    lo, hi = buckets.start, buckets.stop - 1
    return scan.filter(pl.col("_bucket").is_between(lo, hi) | (pl.col("_bucket").is_null() & bucket_of.is_between(lo, hi))).with_columns(
        _bucket=pl.coalesce("_bucket", bucket_of)
    )


def parquet_rows(files: list[str]) -> int:
    """Rows of Parquet files, from their footers."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


class LockTimeout(RuntimeError):
    pass


@contextlib.contextmanager
def hold_lock(path: Path, what: str, log: Callable[[str], None] | None = None, wait: bool = True) -> Iterator[bool]:
    """An exclusive flock on `path` (released by the OS if the holder dies); yields
    True once held. Waits for another holder, saying so, and fails after
    INGEST_LOCK_TIMEOUT_SECONDS (default 3600); with `wait=False` yields False at
    once instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            if log:
                log(f"waiting for {what}: held by {holder}")
            timeout = float(os.environ.get("INGEST_LOCK_TIMEOUT_SECONDS") or 3600)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockTimeout(
                            f"gave up waiting for {what} after {timeout:.0f} s: held by {holder} "
                            f"(lock file {path}; INGEST_LOCK_TIMEOUT_SECONDS sets the wait)"
                        ) from None
                    time.sleep(0.2)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
            fh.flush()
            yield True
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


class Warehouse:
    """Paths of every table and working area under the warehouse root."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # current-state tables: <root>/<table>/data.parquet
    def table_path(self, table: str) -> Path:
        return self.root / table / "data.parquet"

    # per-partition segments: <root>/<table>/<stream>/<day>.parquet
    def segment_path(self, table: str, stream: str, day: str) -> Path:
        return self.root / table / stream / f"{day}.parquet"

    def scan_segments(self, table: str, schema: dict, stream: str | None = None) -> pl.LazyFrame:
        """The segments of a table (of one stream, or all), as one lazy frame."""
        folder = glob.escape(stream) if stream else "*"
        return scan_all(sorted(glob.glob(str(self.root / table / folder / "*.parquet"))), schema)

    def batch_dir(self, stream: str, day: str) -> Path:
        return self.root / "_batches" / stream / day

    def batch_glob(self, stream: str, name: str) -> str:
        return str(self.root / "_batches" / stream / "*" / name)

    def staging_dir(self, stream: str, day: str) -> Path:
        return self.root / "_staging" / stream / day

    def lock(self, log: Callable[[str], None] | None = None):
        """Serialises commits to the tables and the ledger across processes."""
        return hold_lock(self.root / ".lock", "the warehouse (a commit or table build)", log)

    def partition_lock(self, stream: str, day: str, log: Callable[[str], None] | None = None, wait: bool = True):
        """Serialises runs of one (stream, landing day): its staging folder has one
        writer. `wait=False` is for a holder of the warehouse lock, which must never
        wait for a partition lock (a run holding it may be waiting for the warehouse
        lock): it yields False at once when a run holds the day."""
        return hold_lock(self.root / "_staging" / stream / f"{day}.lock", f"landing day {day} of {stream}", log, wait)

    def remove_stale_temps(self) -> int:
        """Temp files of writes that never committed (a process killed mid-write).
        Call with the warehouse lock held: every write they could belong to takes it."""
        stale = [p for top in [*self.table_schemas(), "_batches"] for p in (self.root / top).rglob(".*.tmp")]
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)

    def table_schemas(self) -> dict[str, dict[str, pl.DataType]]:
        schemas = {spec.table: table_schema(spec) for spec in STREAMS.values()}
        schemas["rejected_records"] = REJECTED_SCHEMA
        schemas["ingested_files"] = LEDGER_SCHEMA
        schemas["erasures"] = ERASURE_SCHEMA
        return schemas

    def ensure_layout(self) -> None:
        """Every table exists (with 0 rows) so its view can always be queried."""
        missing = {t: s for t, s in self.table_schemas().items() if not (self.root / t / "_schema.parquet").exists()}
        if missing:
            with self.lock():
                for table, schema in missing.items():
                    write_parquet(pl.DataFrame(schema=schema), self.root / table / "_schema.parquet")

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with one view per table."""
        self.ensure_layout()
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        for table in self.table_schemas():
            pattern = str(self.root / table / "**" / "*.parquet").replace("'", "''")
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{pattern}', union_by_name = true)")
        return con
