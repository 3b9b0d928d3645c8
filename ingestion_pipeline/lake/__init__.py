"""The warehouse's storage: Delta Lake tables under one root, a local folder or
`s3://bucket/prefix` (any S3-compatible store through AWS_ENDPOINT_URL). The only
module that imports deltalake: create, append, replace, merge, read (polars,
Arrow, DuckDB), history, time travel, compact and vacuum.

Commits are Delta's own: a version is written whole or not at all (put-if-absent of
the log entry), so a writer killed mid-commit leaves no partial version. Two writers
that conflict get one commit and one CommitFailedError; `retry_conflicts` retries
the loser with backoff (and says so). A commit may carry Delta transaction
identifiers (`txns`: app id and version pairs): two commits that set the same app
id concurrently always conflict, which makes them a compare-and-swap for watermarks."""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from .. import faults

T = TypeVar("T")
Log = Callable[[str], None]

# Conflicting commits are retried this many times, waiting BACKOFF_SECONDS doubled
# per attempt (capped at BACKOFF_MAX_SECONDS, with jitter) in between.
RETRY_ATTEMPTS = 30
BACKOFF_SECONDS = 0.05
BACKOFF_MAX_SECONDS = 2.0
ROW_GROUP_ROWS = 128 * 1024
CHECKPOINT_INTERVAL = 10
# A file no version references is left alone until this old: it may belong to a
# commit in progress (written, not yet in the log).
ORPHAN_HOURS = 1
TARGET_FILE_BYTES = 128 * 1024 * 1024


class CommitConflict(RuntimeError):
    """Gave up after RETRY_ATTEMPTS conflicting commits on one table."""


class VersionUnavailable(LookupError):
    """A table version that can no longer be read (vacuumed or its log cleaned up)."""


def storage_options(root: str) -> dict[str, str] | None:
    """Options for delta-rs from the AWS_* environment (None for a local folder)."""
    if not root.startswith("s3://"):
        return None
    env = os.environ
    options = {"AWS_REGION": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if env.get(name):
            options[name] = env[name]
    return options


def is_remote(root: str | os.PathLike) -> bool:
    return str(root).startswith("s3://")


@dataclass(frozen=True)
class Spec:
    """A table's shape: its columns, partition columns and the columns whose
    min/max go into the Delta log. Only listed columns get statistics, so no
    personal data (ids, emails, properties, raw text) is ever copied into the log."""

    schema: dict[str, pl.DataType]
    partition_by: tuple[str, ...] = ()
    stats: tuple[str, ...] = ()

    def arrow_schema(self) -> pa.Schema:
        return pl.DataFrame(schema=self.schema).to_arrow().schema

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema)


def vanished(exc: BaseException) -> bool:
    """A data file of the snapshot being read is gone: an erasure vacuumed it (a
    newer snapshot does not need it). Reading again from the latest version works."""
    text = str(exc)
    return (
        isinstance(exc, FileNotFoundError) or "No such file or directory" in text or ("Object at location" in text and "not found" in text)
    )


def retry_conflicts(attempt: Callable[[], T], what: str, log: Log | None = None) -> T:
    """Runs `attempt` until it commits: on a conflicting concurrent commit (or a
    file an erasure vacuumed under its read) it waits (exponential backoff with
    jitter) and runs it again from the start, re-reading whatever it read (a retry
    never reuses a stale snapshot)."""
    for n in range(1, RETRY_ATTEMPTS + 1):
        try:
            return attempt()
        except Exception as exc:
            if not isinstance(exc, CommitFailedError) and not vanished(exc):
                raise
            if n == RETRY_ATTEMPTS:
                raise CommitConflict(f"{what}: gave up after {n} conflicting commits: {exc}") from exc
            wait = min(BACKOFF_MAX_SECONDS, BACKOFF_SECONDS * 2 ** (n - 1)) * (0.5 + random.random())
            if log:
                log(f"{what}: a concurrent commit won ({exc}); retrying in {wait:.2f} s (attempt {n + 1})")
            time.sleep(wait)
    raise AssertionError("unreachable")


class Lake:
    """Delta tables under one root; a table is named by its path under the root
    (`contacts`, `_batches/contact/records`)."""

    def __init__(self, root: str | os.PathLike):
        text = str(root)
        self.root = text.rstrip("/") if is_remote(text) else str(Path(text).resolve())
        self.options = storage_options(self.root)

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    def uri(self, name: str) -> str:
        return f"{self.root}/{name}"

    # --- opening -------------------------------------------------------------

    def table(self, name: str, version: int | str | datetime | None = None) -> DeltaTable:
        """The table at its latest version (or at `version`: a number or a time)."""
        try:
            if version is None or isinstance(version, int):
                return DeltaTable(self.uri(name), version=version, storage_options=self.options)
            dt = DeltaTable(self.uri(name), storage_options=self.options)
            dt.load_as_version(version)
            return dt
        except TableNotFoundError:
            raise
        except Exception as exc:
            if version is not None:
                raise VersionUnavailable(f"{name}: version {version} cannot be read: {exc}") from exc
            raise

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(name), storage_options=self.options)

    def ensure(self, name: str, spec: Spec, run_id: str | None = None) -> None:
        """Creates the table (empty) unless it exists; safe when two processes race."""
        if self.exists(name):
            return
        configuration = {
            "delta.dataSkippingStatsColumns": ",".join(spec.stats) if spec.stats else "_none_",
            # Opening a table reads the last checkpoint plus every commit after it:
            # on object storage each is a request, so checkpoints come often.
            "delta.checkpointInterval": str(CHECKPOINT_INTERVAL),
        }
        try:
            DeltaTable.create(
                self.uri(name),
                schema=spec.arrow_schema(),
                partition_by=list(spec.partition_by) or None,
                configuration=configuration,
                mode="ignore",
                storage_options=self.options,
                commit_properties=_props(run_id),
            )
        except CommitFailedError:
            if not self.exists(name):
                raise

    # --- reading -------------------------------------------------------------

    def scan(self, name: str, version: int | None = None, table: DeltaTable | None = None) -> pl.LazyFrame:
        """The table as a polars LazyFrame (filters and projections are pushed down)."""
        dt = table if table is not None else self.table(name, version)
        return pl.scan_delta(dt)

    def version(self, name: str) -> int:
        return self.table(name).version()

    def txn_version(self, name: str, app_id: str, table: DeltaTable | None = None) -> int | None:
        dt = table if table is not None else self.table(name)
        return dt.transaction_version(app_id)

    def rows(self, name: str, table: DeltaTable | None = None) -> int:
        """Rows of the table's current version, from the log's file statistics."""
        dt = table if table is not None else self.table(name)
        counts = pa.table(dt.get_add_actions(flatten=True)).column("num_records")
        return int(pa.compute.sum(counts).as_py() or 0)

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        return self.table(name).history(limit)

    def duckdb(self, names: Iterable[str], versions: dict[str, int | str | datetime] | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with one view per table, named after the last part of
        its name; `versions` pins some tables to an older version."""
        versions = versions or {}
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        for name in names:
            view = name.rsplit("/", 1)[-1]
            # Through polars: DuckDB pushes projections and filters into the scan,
            # and polars reads every string layout delta-rs writes (a pyarrow
            # dataset fails a filter on a column a merge wrote as string_view).
            con.register(view, pl.scan_delta(self.table(name, versions.get(view))))
        return con

    # --- writing -------------------------------------------------------------

    def append(
        self,
        name: str,
        data: Any,
        *,
        run_id: str | None = None,
        txns: Sequence[tuple[str, int]] = (),
        metadata: dict[str, Any] | None = None,
        table: DeltaTable | None = None,
    ) -> None:
        """Adds rows (a frame, an Arrow table or a stream of record batches)."""
        self._write(name, data, "append", None, run_id, txns, metadata, table)

    def add_rows(
        self,
        name: str,
        data: Callable[[], Any],
        *,
        run_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        log: Log | None = None,
    ) -> None:
        """A blind append (no transaction id), retried on a conflict: delta-rs counts
        an append as a read of the table, so a concurrent delete (an erasure) makes
        it conflict. `data` makes the rows again for each attempt (a stream can be
        read once)."""
        retry_conflicts(lambda: self._write(name, data(), "append", None, run_id, (), metadata, None), f"appending to {name}", log)

    def replace(
        self,
        name: str,
        data: Any,
        predicate: str | None,
        *,
        run_id: str | None = None,
        txns: Sequence[tuple[str, int]] = (),
        metadata: dict[str, Any] | None = None,
        table: DeltaTable | None = None,
    ) -> None:
        """Replaces the rows matching `predicate` (all rows when None) by `data`, in
        one commit. `predicate` is SQL over non-personal columns only: it is
        recorded in the Delta log."""
        self._write(name, data, "overwrite", predicate, run_id, txns, metadata, table)

    def _write(self, name, data, mode, predicate, run_id, txns, metadata, table) -> None:
        faults.point(f"committing {name}")
        write_deltalake(
            table if table is not None else self.uri(name),
            _arrow(data),
            mode=mode,
            predicate=predicate,
            storage_options=None if table is not None else self.options,
            writer_properties=WRITER,
            target_file_size=TARGET_FILE_BYTES,
            commit_properties=_props(run_id, metadata, txns),
        )
        faults.point(f"committed {name}")

    def merge(
        self,
        name: str,
        source: Any,
        on: Sequence[str],
        *,
        delete_flag: str = "_delete",
        match: str | None = None,
        run_id: str | None = None,
        txns: Sequence[tuple[str, int]] = (),
        metadata: dict[str, Any] | None = None,
        table: DeltaTable | None = None,
    ) -> dict[str, Any]:
        """Upserts the source rows by the columns `on` (a partition column among them
        prunes the files read), and deletes the matched rows of source rows whose
        `delete_flag` is true. The source carries every column of the table plus
        `delete_flag`, and `match` when given: the partition value a source row is
        compared with (null: the row can only be inserted, and its partition is not
        read). One commit; returns delta-rs's metrics."""
        dt = table if table is not None else self.table(name)
        columns = [f.name for f in dt.schema().fields]
        condition = _join_condition(dt, on, match)
        upsert = {c: f"s.{c}" for c in columns}
        faults.point(f"committing {name}")
        metrics = (
            dt.merge(
                _arrow(source),
                predicate=condition,
                source_alias="s",
                target_alias="t",
                writer_properties=WRITER,
                streamed_exec=False,
                commit_properties=_props(run_id, metadata, txns),
            )
            .when_matched_delete(predicate=f"s.{delete_flag}")
            .when_matched_update(updates=upsert, predicate=f"NOT s.{delete_flag}")
            .when_not_matched_insert(updates=upsert, predicate=f"NOT s.{delete_flag}")
            .execute()
        )
        faults.point(f"committed {name}")
        return metrics

    def delete_matching(self, name: str, source: Any, on: Sequence[str], *, run_id: str | None = None, log: Log | None = None) -> int:
        """Deletes the rows that equal a source row on the columns `on` (the
        values stay out of the Delta log: only the column names are recorded), as
        one commit, retried on a conflict (deleting the same rows again is the same
        change). Returns the rows deleted."""
        source = _arrow(source)
        return retry_conflicts(lambda: self._delete_matching(name, source, on, run_id), f"deleting from {name}", log)

    def _delete_matching(self, name: str, source: Any, on: Sequence[str], run_id: str | None) -> int:
        dt = self.table(name)
        condition = _join_condition(dt, on)
        faults.point(f"committing {name}")
        metrics = (
            dt.merge(
                source,
                predicate=condition,
                source_alias="s",
                target_alias="t",
                writer_properties=WRITER,
                streamed_exec=False,
                commit_properties=_props(run_id),
            )
            .when_matched_delete()
            .execute()
        )
        faults.point(f"committed {name}")
        return int(metrics.get("num_target_rows_deleted", 0))

    # --- upkeep --------------------------------------------------------------

    def compact(self, name: str, run_id: str | None = None) -> dict[str, Any]:
        return self.table(name).optimize.compact(writer_properties=WRITER, commit_properties=_props(run_id))

    def vacuum(self, name: str, retention_hours: float, full: bool = False) -> list[str]:
        """Deletes the files that versions older than the retention needed (and, with
        `full`, files no version references that are older than the retention)."""

        def attempt() -> list[str]:
            dt = self.table(name)
            return dt.vacuum(retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=False, full=full)

        return retry_conflicts(attempt, f"vacuuming {name}")

    def checkpoint(self, name: str) -> None:
        self.table(name).create_checkpoint()


def _join_condition(dt: DeltaTable, on: Sequence[str], match: str | None = None) -> str:
    """A merge's join condition. delta-rs records the files a merge read as a
    predicate in the Delta log, built from the source's values of each compared
    column (the distinct values of a partition column, min and max of any other).
    Partition columns are compared as they are, so a merge reads only the
    partitions of its source rows; every other column is compared through an
    expression delta-rs does not turn into literals, so no key (a contact id, an
    email) is ever copied into the log."""
    partitions = set(dt.metadata().partition_columns)
    types = {f.name: f.type.type for f in dt.schema().fields}
    parts = []
    for c in on:
        if c in partitions:
            parts.append(f"t.{c} = s.{match or c}")
        elif types.get(c) == "string":
            parts.append(f"t.{c} || '' = s.{c}")
        else:
            parts.append(f"t.{c} + 0 = s.{c}")
    return " AND ".join(parts)


WRITER = WriterProperties(compression="ZSTD", max_row_group_size=ROW_GROUP_ROWS)


def _props(run_id: str | None, metadata: dict[str, Any] | None = None, txns: Sequence[tuple[str, int]] = ()) -> CommitProperties:
    custom = {"run_id": run_id} if run_id else {}
    custom.update({k: v if isinstance(v, str) else _json(v) for k, v in (metadata or {}).items()})
    return CommitProperties(
        custom_metadata=custom or None,
        app_transactions=[Transaction(app, version) for app, version in txns] or None,
    )


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _arrow(data: Any) -> Any:
    """What write_deltalake and merge take: Arrow data (a polars frame converts)."""
    if isinstance(data, pl.LazyFrame):
        data = data.collect()
    if isinstance(data, pl.DataFrame):
        return data.to_arrow()
    return data


@contextlib.contextmanager
def spooled(schema: dict[str, pl.DataType], frames: Iterable[pl.DataFrame]) -> Iterator[pa.RecordBatchReader]:
    """Frames produced one at a time (each may read Delta tables), written to a local
    temp file, then handed to a write as a stream: bounded memory, and delta-rs never
    calls back into Python code that uses delta-rs (its runtime cannot nest)."""
    arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema
    with tempfile.TemporaryDirectory(prefix="ingest-spool-") as tmp:
        path = os.path.join(tmp, "rows.parquet")
        with pq.ParquetWriter(path, arrow_schema, compression="lz4") as writer:
            for frame in frames:
                if frame.height:
                    writer.write_table(frame.select(list(schema)).cast(schema).to_arrow().cast(arrow_schema))
        yield pa.RecordBatchReader.from_batches(arrow_schema, pq.ParquetFile(path).iter_batches())


__all__ = [
    "BACKOFF_SECONDS",
    "ORPHAN_HOURS",
    "CommitConflict",
    "CommitFailedError",
    "Lake",
    "Spec",
    "TableNotFoundError",
    "VersionUnavailable",
    "spooled",
    "is_remote",
    "retry_conflicts",
    "vanished",
    "storage_options",
]
