"""Stage one landed file version: read, parse, validate, normalise and dedupe it into
local Parquet files (its records, property cells, memberships and rejected
records) plus its ledger row. Nothing here touches the warehouse: `commit_day`
appends a run's staged files to the batch tables and commits the ledger."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .. import faults, merge
from .. import normalise as norm
from .. import status as file_status
from ..formats import DecodedReader, FileRejected, detect_format, iter_records
from ..landing import LandedFile, LandingStore
from ..parse import JsonParser
from ..settings import Settings
from ..streams import FeedSpec, StreamSpec, feed_for_path
from ..validate import REJECT_SCHEMA, Validator
from ..warehouse import REJECTED_SCHEMA, UTC_TS, batch_schemas

PARSE_THREADS = 2


def now() -> datetime:
    return datetime.now(UTC)


def new_stage_id() -> str:
    """A staged result's id: when it was made (sortable), and random."""
    return f"{now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:16]}"


@dataclass
class StagedFile:
    """A file version's staged result: local Parquet files, one per batch kind, and
    its ledger row. `error` is set when the pipeline itself broke on the file."""

    dir: Path
    row: dict
    error: Exception | None = None

    def path(self, kind: str) -> Path:
        return self.dir / f"{kind}.parquet"

    @property
    def stage_id(self) -> str | None:
        return self.row["stage_id"]


def ledger_row(file: LandedFile, stream: str, fmt: str, run_id: str, stage_id: str | None) -> dict:
    return {
        "file": file.path,
        "stream": stream,
        "format": fmt,
        "size_bytes": file.size,
        "landed_at": file.landed_at,
        "status": file_status.FileStatus.FAILED.value,
        "rows_read": 0,
        "rows_loaded": 0,
        "rows_rejected": 0,
        "rows_duplicate": 0,
        "first_error": None,
        "processed_at": now(),
        "run_id": run_id,
        "file_version": file.version,
        "file_id": file.file_id,
        "sha256": None,
        "landing_date": file.landing_date,
        "schema_drift": None,
        "stage_id": stage_id,
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


def _reject_rows(rejects: pl.DataFrame, file: LandedFile, spec: StreamSpec, stage_id: str) -> pl.DataFrame:
    return rejects.select(
        file=pl.lit(file.path),
        line="line",
        stream=pl.lit(spec.name),
        field="field",
        rule="rule",
        message="message",
        raw="raw",
        landed_at=pl.lit(file.landed_at, UTC_TS),
        landing_date=pl.lit(file.landing_date),
        _stage_id=pl.lit(stage_id),
    ).cast({**REJECTED_SCHEMA, "_stage_id": pl.String})


def stage_file(store: LandingStore, file: LandedFile, settings: Settings, work_root: Path, run_id: str) -> StagedFile:
    """Parse, validate and normalise one file version into `work_root/<file_id>/`."""
    feed = feed_for_path(file.path)
    assert feed is not None, file.path
    spec = feed.stream
    schemas = batch_schemas(spec.name)
    work = work_root / file.file_id
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    stage_id = new_stage_id()
    row = ledger_row(file, spec.name, "unknown", run_id, stage_id)
    batch = {"_stage_id": pl.lit(stage_id), "landing_date": pl.lit(file.landing_date)}
    record_parts = BucketedParts(work, "records", schemas["records"])
    membership_parts = BucketedParts(work, "memberships", schemas.get("memberships", {}))
    reject_parts: list[Path] = []
    drift: set[str] = set()
    tools = _BatchTools(feed, batch)
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
                        reject_parts.append(
                            _write_part(_reject_rows(result.rejects, file, spec, stage_id), work, "rejects", len(reject_parts))
                        )
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
            reject_parts = [_write_part(_reject_rows(whole, file, spec, stage_id), work, "rejects", 0)]
        staged = StagedFile(work, row)
        # One bucket at a time: the within-file dedupe of a large file never holds
        # more than one bucket of its records.
        dedupe = (lambda lf: merge.dedupe_within_file(lf, spec.keys)) if spec.kind == "event" else None
        rows_loaded = record_parts.combine(staged.path("records"), dedupe)
        if spec.kind == "entity":
            tools.parser().write_property_cells(staged.path("records"), staged.path("cells"), spec.keys)
        if membership_parts.paths:
            membership_parts.combine(staged.path("memberships"))
        rejects = pl.scan_parquet(reject_parts) if reject_parts else pl.LazyFrame(schema=schemas["rejects"])
        rejects.sink_parquet(staged.path("rejects"), compression="zstd")
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
        file_status.stage(row, rows_loaded, rows_rejected)
        faults.point(f"staged {file.path}")
        return staged
    except Exception as exc:  # the pipeline itself broke: recorded, retried next run
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        row["stage_id"] = None
        file_status.fail(row, exc)
        return StagedFile(work, row, error=exc)
    finally:
        tools.close()


@dataclass
class BatchResult:
    records: pl.DataFrame  # the stream's batch columns
    rejects: pl.DataFrame  # REJECT_SCHEMA rows, by line
    drift: list[str]
    memberships: pl.DataFrame | None


class _BatchTools:
    """Per-thread parsers and validators of one feed (a DuckDB connection is
    used by one thread at a time)."""

    def __init__(self, feed: FeedSpec, batch: dict[str, pl.Expr]):
        self.feed = feed
        self.batch = batch  # the batch columns every staged row gets (stage id, landing day)
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
        records, members = pl.DataFrame(), None
        if valid.height:
            if feed.reports_drift:
                drift = valid["drift"].explode().drop_nulls().unique().to_list()
            if feed.derive:
                valid = DERIVATIONS[feed.derive](valid)
            lineage = {"_source_file": pl.lit(file.path), "_source_line": "line", "_landed_at": "_landed_at"}
            records = valid.select(*_output_columns(feed, valid), **lineage).with_columns(**self.batch, **merge.key_columns(spec.keys))
            if feed.memberships:
                members = valid.select(contact_id="contact_id__norm", account_id="account_id__norm", **lineage).with_columns(
                    **self.batch, **merge.key_columns("contact_id")
                )
        return BatchResult(records, rejects.sort("line") if rejects.height else rejects, drift, members)

    def close(self) -> None:
        for parser in self._parsers:
            parser.close()


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
        rows = 0
        with pq.ParquetWriter(path, self.arrow_schema, compression="zstd") as writer:
            for buckets in merge.bucket_passes(self.rows):
                frame = self.buckets(buckets).lazy()
                frame = (transform(frame) if transform else frame).collect()
                if frame.height:
                    writer.write_table(frame.to_arrow().cast(self.arrow_schema), row_group_size=merge.ROWS_PER_PASS)
                    rows += frame.height
        return rows
