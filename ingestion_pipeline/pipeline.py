"""Ingest without Dagster: one file, one landing day of a stream, one table.

landing -> formats -> parse -> validate -> normalise -> merge -> warehouse, with the
ledger written last. Dagster assets and the CLI call these functions.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from . import erasure, faults, merge
from . import normalise as norm
from .formats import DecodedReader, FileRejected, detect_format, iter_records
from .landing import LandedFile, LandingStore
from .ledger import LOADED_STATUSES, pending_files, read_ledger, write_segment
from .parse import JsonParser
from .settings import Settings
from .streams import FEEDS, STREAMS, FeedSpec, StreamSpec, feed_for_path, feeds_of_stream, has_memberships
from .validate import REJECT_SCHEMA, Validator
from .warehouse import (
    LEDGER_SCHEMA,
    REJECTED_SCHEMA,
    UTC_TS,
    Warehouse,
    copy_file,
    fsync_dir,
    parquet_rows,
    scan_all,
    scan_buckets,
    table_schema,
    write_buckets,
    write_parquet,
    write_row_groups,
)

Log = Callable[[str], None]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class StagedFile:
    """A file version's results, kept under _staging until its day is committed."""

    dir: Path
    row: dict
    error: Exception | None = None  # set when the pipeline itself broke on this file

    @property
    def records(self) -> Path:
        return self.dir / "records.parquet"

    @property
    def cells(self) -> Path:
        return self.dir / "cells.parquet"

    @property
    def rejects(self) -> Path:
        return self.dir / "rejects.parquet"

    @property
    def memberships(self) -> Path:
        return self.dir / "memberships.parquet"

    @classmethod
    def load(cls, dir: Path) -> StagedFile | None:
        try:
            row = json.loads((dir / "ledger.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        row["landed_at"] = datetime.fromisoformat(row["landed_at"])
        row["processed_at"] = datetime.fromisoformat(row["processed_at"])
        row["landing_date"] = date.fromisoformat(row["landing_date"])
        return cls(dir, row)


def _ledger_row(file: LandedFile, stream: str, fmt: str, run_id: str) -> dict:
    return {
        "file": file.path,
        "stream": stream,
        "format": fmt,
        "size_bytes": file.size,
        "landed_at": file.landed_at,
        "status": "failed",
        "rows_read": 0,
        "rows_loaded": 0,
        "rows_rejected": 0,
        "rows_duplicate": 0,
        "first_error": None,
        "processed_at": _now(),
        "run_id": run_id,
        "file_version": file.version,
        "file_id": file.file_id,
        "sha256": None,
        "landing_date": file.landing_date,
        "schema_drift": None,
    }


def _first_error(rejects: pl.DataFrame) -> str | None:
    if rejects.is_empty():
        return None
    line, field, rule, message = rejects.sort("line", nulls_last=False).row(0)[:4]
    where = f"line {line}" if line is not None else "file"
    if field:
        where += f", field '{field}'"
    return f"{where}: {rule}: {message}"


def _output_columns(feed: FeedSpec, valid: pl.DataFrame) -> list[pl.Expr]:
    """The stream's batch columns from a feed's validated (and derived) records."""
    spec = feed.stream
    cols = [
        pl.col(feed.properties_column if f.kind == "properties" and feed.extras_are_properties else f"{f.name}__norm").alias(f.name)
        for f in spec.fields
    ]
    return cols + [pl.lit(None, pl.String).alias(c) for c in spec.extra_columns]


_local = threading.local()


def _thread_duckdb() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection of the calling thread (batches are parsed in threads)."""
    if getattr(_local, "con", None) is None:
        _local.con = duckdb.connect()
    return _local.con


def _track_event_id(valid: pl.DataFrame) -> pl.DataFrame:
    """track/: event_id = "trk_" + the first 32 hex digits of sha256(contact_key,
    event_text, normalised timestamp as ISO 8601 UTC with microseconds), joined by
    the unit separator (U+001F). These three are the feed's dedupe key."""
    key = pl.concat_str(
        pl.col("contact_id__norm"),
        pl.col("event__norm"),
        pl.col("event_timestamp__norm").dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"),
        separator="\x1f",
    )
    keys = valid.select(k=key)  # noqa: F841 (DuckDB reads it)
    ids = _thread_duckdb().sql("SELECT 'trk_' || left(sha256(k), 32) AS event_id FROM keys").pl()["event_id"]
    return valid.with_columns(event_id__norm=ids)


def _group_account(valid: pl.DataFrame) -> pl.DataFrame:
    """group/: the account's domain is the key itself when the key is a domain."""
    from_key = norm.domain(pl.col("account_id__norm"))
    return valid.with_columns(domain__norm=pl.when(norm.is_valid_domain(from_key)).then(from_key))


DERIVATIONS = {"track_event_id": _track_event_id, "group_account": _group_account}
MEMBERSHIP_SCHEMA = {
    "contact_id": pl.String,
    "account_id": pl.String,
    "_source_file": pl.String,
    "_source_line": pl.Int64,
    "_landed_at": UTC_TS,
    "_bucket": pl.UInt8,  # of contact_id: memberships join the contacts bucket by bucket
}


def stage_file(store: LandingStore, file: LandedFile, settings: Settings, warehouse: Warehouse, run_id: str) -> StagedFile:
    """Parse, validate and normalise one file version into its staging folder."""
    feed = feed_for_path(file.path)
    assert feed is not None, file.path
    spec = feed.stream
    final = warehouse.staging_dir(spec.name, file.landing_date.isoformat()) / file.file_id
    work = final.with_name(f".{file.file_id}.{uuid.uuid4().hex}.tmp")
    membership_parts = BucketedParts(work, "memberships", MEMBERSHIP_SCHEMA)
    work.mkdir(parents=True)
    row = _ledger_row(file, spec.name, "unknown", run_id)
    reject_parts: list[Path] = []
    record_parts = BucketedParts(work, "records", table_schema_batch(spec))
    drift: set[str] = set()
    tools = _BatchTools(feed)
    rows_read = valid_count = rows_rejected = 0
    first_error: str | None = None
    try:
        try:
            fmt = detect_format(file.path)
            row["format"] = fmt.label
            with store.open(file) as raw:
                reader = DecodedReader(raw, fmt, settings, file.path)
                # Batches are read here and parsed/validated by two threads (polars
                # and DuckDB release the GIL); results are written in batch order,
                # with at most PARSE_THREADS + 1 batches in memory.
                pending: deque[Future] = deque()

                def write_result(done: Future) -> None:
                    nonlocal valid_count, rows_rejected, first_error
                    result = done.result()
                    if result.rejects.height:
                        first_error = first_error or _first_error(result.rejects)
                        rows_rejected += result.rejects.height
                        reject_parts.append(_write_part(_reject_rows(result.rejects, file, spec), work, "rejects", len(reject_parts)))
                    if result.records.height:
                        valid_count += result.records.height
                        drift.update(result.drift)
                        record_parts.write(result.records)
                        if result.memberships is not None:
                            membership_parts.write(result.memberships)

                try:
                    with ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="parse") as pool:
                        for lines in iter_records(reader, fmt, settings, file.path, feed):
                            faults.point(f"parsed a batch of {file.path}")
                            rows_read += lines.height
                            pending.append(pool.submit(tools.process, lines, file))
                            while len(pending) > PARSE_THREADS or (pending and pending[0].done()):
                                write_result(pending.popleft())
                        while pending:
                            write_result(pending.popleft())
                finally:
                    for f in pending:
                        f.cancel()
                    row["sha256"] = reader.sha256()
            if rows_read == 0:
                raise FileRejected("empty_file", f"{file.path}: file has no records")
        except FileRejected as exc:
            for part in [*record_parts.paths, *reject_parts, *membership_parts.paths]:
                part.unlink()
            rows_read = valid_count = rows_rejected = 0
            record_parts.clear()
            membership_parts.clear()
            whole = pl.DataFrame(
                {"line": [None], "field": [None], "rule": [exc.rule], "message": [exc.message], "raw": [None]},
                schema=REJECT_SCHEMA,
            )
            first_error = _first_error(whole)
            reject_parts = [_write_part(_reject_rows(whole, file, spec), work, "rejects", 0)]
        records_path = work / "records.parquet"
        # One bucket at a time: the within-file dedupe of a large file never holds
        # more than one bucket of its records.
        dedupe = (lambda lf: merge.dedupe_within_file(lf, spec.keys)) if spec.kind == "event" else None
        rows_loaded = record_parts.combine(records_path, dedupe)
        if spec.kind == "entity":
            tools.parser().write_property_cells(records_path, work / "cells.parquet", spec.keys)
        if membership_parts.paths:
            membership_parts.combine(work / "memberships.parquet")
        rejects = pl.scan_parquet(reject_parts) if reject_parts else pl.LazyFrame(schema=REJECTED_SCHEMA)
        rejects.sink_parquet(work / "rejects.parquet", compression="zstd")
        for part in [*record_parts.paths, *reject_parts, *membership_parts.paths]:
            part.unlink()
        row.update(
            rows_read=rows_read,
            rows_loaded=rows_loaded,
            rows_rejected=rows_rejected,
            rows_duplicate=valid_count - rows_loaded,
            first_error=first_error,
            schema_drift=",".join(sorted(drift)) or None,
        )
        if rows_loaded == 0:
            row["status"] = "rejected"
        elif rows_rejected:
            row["status"] = "partially_loaded"
        else:
            row["status"] = "loaded"
    except Exception as exc:  # the pipeline itself broke: recorded, retried next run
        row.update(status="failed", first_error=f"{type(exc).__name__}: {exc}", rows_read=0)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        raise_later = exc
    else:
        raise_later = None
    finally:
        tools.close()
    if raise_later is not None and (kept := StagedFile.load(final)) is not None and kept.row["status"] != "failed":
        # A reprocess that broke (e.g. the store is unreachable) keeps the file's
        # previous result: its loaded rows stay in the tables, the run fails.
        shutil.rmtree(work)
        kept.error = raise_later
        return kept
    (work / "ledger.json").write_text(json.dumps(row, default=str))
    _publish(work, final)
    return StagedFile(final, row, error=raise_later)


PARSE_THREADS = 2


@dataclass
class BatchResult:
    records: pl.DataFrame  # the stream's batch columns and `_bucket`
    rejects: pl.DataFrame  # REJECT_SCHEMA rows, by line
    drift: list[str]
    memberships: pl.DataFrame | None


class _BatchTools:
    """Per-thread parsers and validators of one feed (a DuckDB connection is
    used by one thread at a time)."""

    def __init__(self, feed: FeedSpec):
        self.feed = feed
        self._local = threading.local()
        self._parsers: list[JsonParser] = []
        self._lock = threading.Lock()

    def parser(self) -> JsonParser:
        if getattr(self._local, "parser", None) is None:
            self._local.parser = JsonParser(self.feed)
            self._local.validator = Validator(self.feed)
            with self._lock:
                self._parsers.append(self._local.parser)
        return self._local.parser

    def process(self, lines: pl.DataFrame, file: LandedFile) -> BatchResult:
        """Parse, validate, derive and shape one batch of raw records."""
        feed, spec = self.feed, self.feed.stream
        parsed = self.parser().parse(lines)
        valid, rejects = self._local.validator.validate(parsed, file.landed_at)
        drift: list[str] = []
        records, members = pl.DataFrame(schema=table_schema_batch(spec)), None
        if valid.height:
            if feed.reports_drift:
                drift = valid["drift"].explode().drop_nulls().unique().to_list()
            if feed.derive:
                valid = DERIVATIONS[feed.derive](valid)
            lineage = {"_source_file": pl.lit(file.path), "_source_line": "line", "_landed_at": "_landed_at"}
            records = valid.select(*_output_columns(feed, valid), **lineage).with_columns(merge.bucket(spec.keys))
            if feed.memberships:
                members = valid.select(contact_id="contact_id__norm", account_id="account_id__norm", **lineage).with_columns(
                    merge.bucket("contact_id")
                )
        return BatchResult(records, rejects.sort("line") if rejects.height else rejects, drift, members)

    def close(self) -> None:
        for parser in self._parsers:
            parser.close()


def _publish(work: Path, final: Path) -> None:
    """A staged folder replaces the previous one by renames, so a staged result is
    whole or absent: a crash between the two renames leaves none (the file is
    staged again next run), never half of one."""
    for f in work.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(work)
    faults.point(f"staged {final.name} (not yet published)")
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.{uuid.uuid4().hex}.old")
        final.rename(old)
        faults.point(f"moved aside the previous staging of {final.name}")
    work.rename(final)
    fsync_dir(final.parent)
    faults.point(f"published staging of {final.name}")
    if old is not None:
        shutil.rmtree(old)


CELL_SCHEMA = {
    "_landed_at": UTC_TS,
    "_source_file": pl.String,
    "_source_line": pl.Int64,
    "prop": pl.String,
    "value": pl.String,
    "_pos": pl.Int64,
    "_bucket": pl.UInt8,
}


def _reject_rows(rejects: pl.DataFrame, file: LandedFile, spec: StreamSpec) -> pl.DataFrame:
    return rejects.select(
        file=pl.lit(file.path),
        line="line",
        stream=pl.lit(spec.name),
        field="field",
        rule="rule",
        message="message",
        raw="raw",
        landed_at=pl.lit(file.landed_at, UTC_TS),
    ).cast(REJECTED_SCHEMA)


def _write_part(frame: pl.DataFrame, work: Path, kind: str, n: int) -> Path:
    path = work / f"{kind}-{n:05d}.parquet"
    frame.write_parquet(path)
    faults.point(f"wrote staging part {path.name}")
    return path


class BucketedParts:
    """The staging parts of one file's records (or memberships), batch by batch:
    Arrow IPC files (lz4) holding one record batch per hash bucket, read back one
    bucket at a time through memory maps, so combining them holds one bucket."""

    def __init__(self, work: Path, kind: str, schema: dict):
        self.work, self.kind, self.schema = work, kind, schema
        self.arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema
        self.paths: list[Path] = []
        self.index: list[dict[int, int]] = []  # per part: bucket -> record batch
        self.rows = 0

    def clear(self) -> None:
        self.paths, self.index, self.rows = [], [], 0

    def write(self, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        frame = frame.select(list(self.schema)).cast(self.schema).sort("_bucket", maintain_order=True)
        table = frame.to_arrow().cast(self.arrow_schema)
        buckets = frame["_bucket"].to_numpy()
        starts = [0, *(np.flatnonzero(np.diff(buckets)) + 1).tolist()]
        path = self.work / f"{self.kind}-{len(self.paths):05d}.arrow"
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, self.arrow_schema, options=options) as writer:
            for start, end in zip(starts, [*starts[1:], frame.height]):
                writer.write_batch(table.slice(start, end - start).combine_chunks().to_batches()[0])
        self.paths.append(path)
        self.rows += frame.height
        self.index.append({int(buckets[start]): i for i, start in enumerate(starts)})
        faults.point(f"wrote staging part {path.name}")

    def buckets(self, buckets: range) -> pl.DataFrame:
        """The rows of a range of buckets, by bucket, in part order within one."""
        batches = []
        for b in buckets:
            for path, index in zip(self.paths, self.index):
                if b in index:
                    with pa.memory_map(str(path)) as source:
                        batches.append(pa.ipc.open_file(source).get_batch(index[b]))
        if not batches:
            return pl.DataFrame(schema=self.schema)
        return pl.from_arrow(pa.Table.from_batches(batches, self.arrow_schema)).cast(self.schema)

    def combine(self, path: Path, transform: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None) -> int:
        """Every part in one Parquet file, a bucket at a time (in part order within
        a bucket), optionally transformed per bucket; returns the rows written."""

        def passes():
            for buckets in merge.bucket_passes(self.rows):
                rows = self.buckets(buckets).lazy()
                yield (transform(rows) if transform else rows).collect()

        return write_row_groups(passes(), path, self.schema)


def _write_by_bucket(parts: list[Path], path: Path, schema: dict, key: str | tuple[str, ...]) -> None:
    """A day's batch: its staged files concatenated a bucket at a time (each
    bucket's rows in the order of `parts`), written atomically."""
    files = [str(p) for p in parts if p.exists()]
    if len(files) == 1 and list(pl.read_parquet_schema(files[0])) == list(schema):
        # One staged file is already in bucket order: the batch is a copy of it.
        copy_file(Path(files[0]), path)
        return
    bucket_of = merge.bucket(key)
    passes = (
        scan_buckets(files, schema, buckets, bucket_of).sort("_bucket", maintain_order=True).collect()
        for buckets in merge.bucket_passes(parquet_rows(files))
    )
    write_buckets(passes if files else [], path, schema)


def table_schema_batch(spec: StreamSpec) -> dict[str, pl.DataType]:
    """Columns of a staged or committed batch: the table's, without the merge
    timestamps, plus the record's hash bucket."""
    schema = table_schema(spec)
    schema.pop("first_seen_at", None)
    schema.pop("updated_at", None)
    return {**schema, "_bucket": pl.UInt8}


def list_day_files(store: LandingStore, stream: str, day: date) -> list[LandedFile]:
    files = [f for feed in feeds_of_stream(stream) for f in store.list_files(feed.folder) if f.landing_date == day]
    return sorted(files, key=lambda f: (f.landed_at, f.path))


COUNT_COLUMNS = ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate")


@dataclass
class PartitionReport:
    stream: str
    day: date
    files: list[dict]  # ledger rows, in version order
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
    """Stage every file of one landing day, then commit the day's batch, rejected
    records and ledger segment (ledger last). Re-running gives the same outputs."""
    warehouse = Warehouse(settings.warehouse_dir)
    warehouse.ensure_layout()
    with warehouse.partition_lock(stream, day.isoformat(), log):
        return _ingest_partition(settings, warehouse, store, stream, day, run_id, reprocess, log)


def _ingest_partition(
    settings: Settings, warehouse: Warehouse, store: LandingStore, stream: str, day: date, run_id: str, reprocess: bool, log: Log
) -> PartitionReport:
    spec = STREAMS[stream]
    stage_root = warehouse.staging_dir(stream, day.isoformat())
    listed = {f.file_id: f for f in list_day_files(store, stream, day)}
    staged: dict[str, StagedFile] = {}
    if stage_root.exists():
        for d in stage_root.iterdir():
            if d.name.startswith("."):
                shutil.rmtree(d)  # left by a process that died mid-staging (this run holds the day's lock)
            elif (s := StagedFile.load(d)) is not None:
                staged[d.name] = s
    # the day's ledger segment alone (the whole ledger is read once, at commit)
    segment = warehouse.segment_path("ingested_files", stream, day.isoformat())
    previous = scan_all([str(segment)] if segment.exists() else [], LEDGER_SCHEMA).collect().to_dicts()
    errors: list[str] = []
    for i, (file_id, file) in enumerate(listed.items()):
        current = staged.get(file_id)
        if current is None or reprocess or current.row["status"] == "failed":
            log(f"[{i + 1}/{len(listed)}] staging {file.path} ({file.size} bytes)")
            current = stage_file(store, file, settings, warehouse, run_id)
            staged[file_id] = current
        if current.error is not None:
            errors.append(f"{file.path}: {type(current.error).__name__}: {current.error}")
    ordered = sorted(staged.values(), key=lambda s: (s.row["landed_at"], s.row["file"]))
    with warehouse.lock(log):
        warehouse.remove_stale_temps()
        # Privacy erasures: rows of an erased contact from files that landed before
        # the erasure never reach a batch again (a no-op when nothing was erased).
        erasure.suppress_staged(warehouse, store, stream, ordered)
        # Re-read under the lock: an erase may have redacted a staged ledger row
        # (first_error quoting an erased email) since it was loaded.
        ordered = [StagedFile.load(s.dir) or s for s in ordered]
        prior = read_ledger(warehouse, ["file_id", "sha256", "status", "landed_at", "file", "stream", "landing_date"]).filter(
            ~((pl.col("stream") == stream) & (pl.col("landing_date") == day))
        )
        # Content already loaded from the same folder (another folder maps the same
        # bytes differently, so it is not a duplicate): its first version wins.
        originals: dict[tuple[str, str], tuple] = {}
        for sha, landed, path in prior.filter(pl.col("status").is_in(LOADED_STATUSES)).select("sha256", "landed_at", "file").iter_rows():
            ident = (_folder(path), sha)
            originals[ident] = min(originals.get(ident, (landed, path)), (landed, path))
        rows, loaded = [], []
        for s in ordered:
            row = dict(s.row)
            sha = row["sha256"]
            ident = (_folder(row["file"]), sha)
            original = originals.get(ident) if sha else None
            if original and original < (row["landed_at"], row["file"]) and row["status"] in LOADED_STATUSES:
                row.update(
                    status="skipped_duplicate",
                    rows_read=0,
                    rows_loaded=0,
                    rows_rejected=0,
                    rows_duplicate=0,
                    first_error=f"same content (sha256 {sha[:12]}) as already loaded {original[1]}",
                )
            elif row["status"] in LOADED_STATUSES:
                originals.setdefault(ident, (row["landed_at"], row["file"]))
                loaded.append(s)
            rows.append(row)
        batch_dir = warehouse.batch_dir(stream, day.isoformat())
        kept = [s for s, r in zip(ordered, rows) if r["status"] != "skipped_duplicate"]
        _write_by_bucket([s.records for s in loaded], batch_dir / "records.parquet", table_schema_batch(spec), spec.keys)
        if spec.kind == "entity":
            _write_by_bucket([s.cells for s in loaded], batch_dir / "cells.parquet", cell_schema(spec), spec.keys)
        if has_memberships(stream):
            _write_by_bucket([s.memberships for s in loaded], batch_dir / "memberships.parquet", MEMBERSHIP_SCHEMA, "contact_id")
        _write_concat([s.rejects for s in kept], warehouse.segment_path("rejected_records", stream, day.isoformat()), REJECTED_SCHEMA)
        write_segment(warehouse, stream, day, rows)
    return PartitionReport(stream, day, rows, errors, previous)


def _folder(path: str) -> str:
    return path.partition("/")[0]


def _write_concat(parts: list[Path], path: Path, schema: dict) -> None:
    write_parquet(scan_all([str(p) for p in parts if p.exists()], schema), path)


def cell_schema(spec: StreamSpec) -> dict:
    return dict.fromkeys(spec.keys, pl.String) | CELL_SCHEMA


@dataclass
class TableSummary:
    table: str
    path: Path
    rows: int
    distinct_keys: int
    schema: dict
    preview: pl.DataFrame


def table_inputs(warehouse: Warehouse, stream: str) -> list[str]:
    """The batch files a stream's current-state table is built from."""
    spec = STREAMS[stream]
    files = glob.glob(warehouse.batch_glob(stream, "*.parquet"))
    if "account_id" in spec.extra_columns:
        files += [
            p for source in STREAMS if has_memberships(source) for p in glob.glob(warehouse.batch_glob(source, "memberships.parquet"))
        ]
    return sorted(files)


def stale_tables(settings: Settings) -> list[str]:
    """Streams whose table is older than a batch it is built from: a run stopped
    after committing a day but before rebuilding the table (the next ingest
    rebuilds it; the ledger already counts that day as done)."""
    warehouse = Warehouse(settings.warehouse_dir)
    stale = []
    for stream, spec in STREAMS.items():
        inputs = table_inputs(warehouse, stream)
        if not inputs:
            continue
        table = warehouse.table_path(spec.table)
        built = table.stat().st_mtime_ns if table.exists() else -1
        if max(os.stat(p).st_mtime_ns for p in inputs) > built:
            stale.append(stream)
    return stale


def uncommitted_days(settings: Settings) -> list[tuple[str, date]]:
    """Landing days whose batch or rejected records are newer than their ledger
    segment: a run (typically a reprocess, whose files are not pending) stopped
    between committing the day's batch and its ledger segment. Running the day
    again commits its staged results, ledger last."""
    warehouse = Warehouse(settings.warehouse_dir)
    days = []
    for folder in sorted(glob.glob(str(warehouse.root / "_batches" / "*" / "*"))):
        stream, day = Path(folder).parts[-2:]
        if stream not in STREAMS or day.startswith("."):
            continue
        written = [os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(glob.escape(folder), "*.parquet"))]
        rejected = warehouse.segment_path("rejected_records", stream, day)
        if rejected.exists():
            written.append(rejected.stat().st_mtime_ns)
        ledger = warehouse.segment_path("ingested_files", stream, day)
        if written and max(written) > (ledger.stat().st_mtime_ns if ledger.exists() else -1):
            days.append((stream, date.fromisoformat(day)))
    return days


def build_table(settings: Settings, stream: str, log: Log = lambda msg: None) -> TableSummary:
    """Rebuild a current-state table from every committed day batch of its stream,
    a range of hash buckets at a time (merge.bucket_passes): every version of a key
    is in the same bucket, so memory holds one pass, not the whole stream."""
    warehouse = Warehouse(settings.warehouse_dir)
    warehouse.ensure_layout()
    spec = STREAMS[stream]
    schema = table_schema(spec)
    path = warehouse.table_path(spec.table)
    key_bucket = merge.bucket(spec.keys)
    not_null = pl.all_horizontal(pl.col(k).is_not_null() for k in spec.keys)
    counts = {"rows": 0, "distinct": 0}

    def passes(record_files: list[str], cell_files: list[str], membership_files: list[str]):
        for buckets in merge.bucket_passes(parquet_rows(record_files)):
            records = scan_buckets(record_files, table_schema_batch(spec), buckets, key_bucket)
            if spec.kind == "event":
                table = merge.current_events(records, spec.keys)
            else:
                table = merge.current_entities(records, scan_buckets(cell_files, cell_schema(spec), buckets, key_bucket), spec.keys)
            if membership_files:
                current = merge.current_memberships(scan_buckets(membership_files, MEMBERSHIP_SCHEMA, buckets, merge.bucket("contact_id")))
                table = table.drop("account_id").join(current, on="contact_id", how="left").sort(spec.keys)
            frame = table.select(list(schema)).cast(schema).collect()
            keys = frame.select(spec.keys).filter(not_null)
            # A key outside this pass's buckets (stored buckets from another hash)
            # could also be in another pass's rows: counted as a duplicate.
            misplaced = keys.select((~key_bucket.is_between(buckets.start, buckets.stop - 1)).sum()).item()
            counts["rows"] += frame.height
            counts["distinct"] += keys.n_unique() - misplaced
            yield frame

    with warehouse.lock(log):
        warehouse.remove_stale_temps()
        record_files = sorted(glob.glob(warehouse.batch_glob(stream, "records.parquet")))
        cell_files = sorted(glob.glob(warehouse.batch_glob(stream, "cells.parquet"))) if spec.kind == "entity" else []
        membership_files = []
        if "account_id" in spec.extra_columns:
            membership_files = sorted(
                p for source in STREAMS if has_memberships(source) for p in glob.glob(warehouse.batch_glob(source, "memberships.parquet"))
            )
        write_buckets(passes(record_files, cell_files, membership_files) if record_files else [], path, schema)
    return TableSummary(
        table=spec.table,
        path=path,
        rows=counts["rows"],
        distinct_keys=counts["distinct"],
        schema=schema,
        preview=pl.read_parquet(path, n_rows=10),
    )


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
