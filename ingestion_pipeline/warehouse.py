"""The warehouse: which Delta tables live under the root, their columns and layout,
and DuckDB views named after the tables (docs/CONTRACT.md, "Tables").

Contract tables: `contacts`, `accounts`, `crm_leads` (partitioned by `_bucket`, a
hash of the key), `contact_events`, `account_events` (partitioned by `event_date`),
`rejected_records`, `ingested_files` (the ledger) and `erasures`. Their inputs, the
per-landing-day batches, are Delta tables too: `_batches/<stream>/<kind>` with kind
`records`, `cells` (property values of entity records), `memberships` (group/) and
`rejects`, partitioned by `landing_date`. Storage itself is `lake`."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from .lake import Lake, Spec, is_remote, retry_conflicts
from .streams import STREAMS, StreamSpec, has_memberships

UTC_TS = pl.Datetime("us", "UTC")
LINEAGE = {"_source_file": pl.String, "_source_line": pl.Int64, "_landed_at": UTC_TS}

LEDGER = "ingested_files"
REJECTED = "rejected_records"
ERASURES = "erasures"

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
    # The staged result this row commits: its rows in the batch tables carry it.
    "stage_id": pl.String,
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
    "landing_date": pl.Date,
}
# The erasure ledger (see erasure.py): hashes only, never the erased email or id.
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

# Entity tables are stored in BUCKETS partitions by a hash of the key (`_bucket`):
# a merge rewrites only the partitions of the keys it touches.
BUCKETS = 64
BUCKET = pl.Int16
KEY_HASH = pl.Int64
EVENT_DATE = "event_date"

COLUMN_TYPES = {"timestamp": UTC_TS, "boolean": pl.Boolean, "number": pl.Float64}


def table_schema(spec: StreamSpec) -> dict[str, pl.DataType]:
    """The columns of a stream's current-state table."""
    cols: dict[str, pl.DataType] = {}
    for f in spec.fields:
        if f.kind == "properties":
            cols.update(dict.fromkeys(spec.extra_columns, pl.String))
        cols[f.name] = COLUMN_TYPES.get(f.kind, pl.String)
    if spec.kind == "entity":
        cols["first_seen_at"] = UTC_TS
        cols["updated_at"] = UTC_TS
    cols.update(LINEAGE)
    if spec.kind == "entity":
        cols["_bucket"] = BUCKET
    else:
        cols[EVENT_DATE] = pl.Date
    return cols


def partition_column(spec: StreamSpec) -> str:
    return "_bucket" if spec.kind == "entity" else EVENT_DATE


def table_spec(spec: StreamSpec) -> Spec:
    return Spec(
        table_schema(spec),
        partition_by=(partition_column(spec),),
        stats=("first_seen_at", "updated_at", "_landed_at") if spec.kind == "entity" else ("event_timestamp", "_landed_at"),
    )


# --- batches: per landing day, what the tables are merged from ----------------------

# Columns every batch row carries besides its stream's: the staged result it belongs
# to, its landing day (the partition), and a hash of its key (a 64-bit integer:
# finding every version of a set of keys reads this one column).
BATCH_COLUMNS = {"_stage_id": pl.String, "landing_date": pl.Date, "_key_hash": KEY_HASH, "_bucket": BUCKET}
CELL_SCHEMA = {
    "_landed_at": UTC_TS,
    "_source_file": pl.String,
    "_source_line": pl.Int64,
    "prop": pl.String,
    "value": pl.String,
    "_pos": pl.Int64,
}
MEMBERSHIP_SCHEMA = {"contact_id": pl.String, "account_id": pl.String, **LINEAGE}
BATCH_STATS = ("_bucket", "_landed_at")


def record_schema(spec: StreamSpec) -> dict[str, pl.DataType]:
    """A batch's records: the table's columns without merge timestamps or partition."""
    schema = table_schema(spec)
    for column in ("first_seen_at", "updated_at", "_bucket", EVENT_DATE):
        schema.pop(column, None)
    return schema


def batch_schemas(stream: str) -> dict[str, dict[str, pl.DataType]]:
    """Kind -> columns of the batch tables of a stream (staged files have the same)."""
    spec = STREAMS[stream]
    kinds = {"records": {**record_schema(spec), **BATCH_COLUMNS}}
    if spec.kind == "entity":
        kinds["cells"] = {**dict.fromkeys(spec.keys, pl.String), **CELL_SCHEMA, **BATCH_COLUMNS}
    if has_memberships(stream):
        kinds["memberships"] = {**MEMBERSHIP_SCHEMA, **BATCH_COLUMNS}
    kinds["rejects"] = {**REJECTED_SCHEMA, "_stage_id": pl.String}
    return kinds


def batch_table(stream: str, kind: str) -> str:
    return f"_batches/{stream}/{kind}"


class LegacyWarehouse(RuntimeError):
    """A warehouse in the first round's layout (Parquet files, no Delta log)."""


class Warehouse:
    """The tables under one root (a folder or s3://bucket/prefix)."""

    def __init__(self, root: str | os.PathLike):
        self.lake = Lake(root)
        self.root = self.lake.root

    @property
    def remote(self) -> bool:
        return is_remote(self.root)

    def specs(self) -> dict[str, Spec]:
        """Every Delta table under the root: contract tables, then batches."""
        specs = {spec.table: table_spec(spec) for spec in STREAMS.values()}
        specs[REJECTED] = Spec(REJECTED_SCHEMA, partition_by=("stream",), stats=("landing_date", "landed_at", "line"))
        specs[LEDGER] = Spec(LEDGER_SCHEMA, partition_by=("stream",), stats=("landing_date", "landed_at", "status", "processed_at"))
        specs[ERASURES] = Spec(ERASURE_SCHEMA, stats=("requested_at",))
        for stream in STREAMS:
            for kind, schema in batch_schemas(stream).items():
                stats = ("line", "landed_at") if kind == "rejects" else BATCH_STATS
                specs[batch_table(stream, kind)] = Spec(schema, partition_by=("landing_date",), stats=stats)
        return specs

    def table_schemas(self) -> dict[str, dict[str, pl.DataType]]:
        """The contract tables (what `query` shows) and their columns."""
        return {name: spec.schema for name, spec in self.specs().items() if not name.startswith("_")}

    def ensure_layout(self, run_id: str | None = None) -> None:
        """Every table exists (with 0 rows), so it can always be queried. Tables are
        created in a fixed order and never dropped: when the last one exists, all do
        (one check, not one per table)."""
        specs = self.specs()
        if self.lake.exists(list(specs)[-1]):
            return
        self.refuse_legacy()
        # Independent tables, created in parallel (on S3 each is a few round trips);
        # the last one after all the others, so that it stands for all.
        *first, last = specs.items()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda item: self.lake.ensure(item[0], item[1], run_id), first))
        self.lake.ensure(*last, run_id)

    def refuse_legacy(self) -> None:
        if self.remote:
            return
        root = Path(self.root)
        old = [p for p in (root / LEDGER / "_schema.parquet", root / "contacts" / "data.parquet") if p.exists()]
        if old:
            raise LegacyWarehouse(
                f"{root} is a warehouse of the earlier Parquet layout ({old[0].relative_to(root)}), not Delta tables. "
                "The landing store is the source of truth: move the old folder aside "
                f"(mv {root} {root}.parquet-layout) and run `ingestion-pipeline ingest`, which rebuilds every table "
                "from the landed files (docs/OPERATIONS.md, 'Moving over from the Parquet layout')."
            )

    def scan(self, name: str, version: int | None = None) -> pl.LazyFrame:
        """A table as a LazyFrame; a table not created yet reads as empty."""
        if version is None and not self.lake.exists(name):
            return self.specs()[name].empty().lazy()
        return self.lake.scan(name, version)

    def query(self, sql: str, versions: dict[str, int | str | datetime] | None = None) -> tuple[list[str], list[tuple]]:
        """(column names, rows) of one SQL statement over the tables; read again from
        the latest versions should a vacuum delete a file under the read."""

        def run() -> tuple[list[str], list[tuple]]:
            cursor = self.connect(versions).execute(sql)
            if cursor.description is None:
                return [], []
            return [d[0] for d in cursor.description], cursor.fetchall()

        return retry_conflicts(run, "reading the warehouse") if not versions else run()

    def connect(self, versions: dict[str, int | str | datetime] | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with one view per contract table; `versions` reads
        some tables at an older version (a number or a time)."""
        self.ensure_layout()
        return self.lake.duckdb(self.table_schemas(), versions)
