"""Current-state tables from the committed batches, costing the increment.

Every table commit records, atomically with its rows, what it reflects: the
transaction id `ingested_files` set to the ledger version it read (its watermark),
and `ingested_files:<stream>` to the commit sequence of each stream it is built
from (so a table is behind only when one of its own streams committed since). To catch a table up,
the committed stage sets of the ledger at the watermark and now are compared:
the stages that appeared or went (new files, a reprocess, a file found to be a
duplicate) name the keys touched; every version of those keys still committed is
read from the batch tables (a scan of one integer column, `_key_hash`, then only
the matching rows), their current rows are recomputed with `merge`, and one Delta
merge writes them: an entity merge rewrites the `_bucket` partitions of the
touched keys, an event merge the `event_date` partitions of the touched events
(where a key's older copy lives too, when a later copy moved its timestamp).
Keys left with no committed version are deleted.

The same computation serves a first build, a catch-up after a crash and a
reprocess, so they give the same tables. Two writers catching up the same table
race on the transaction id: one commits, the other retries on the new state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from .. import merge
from .. import status as file_status
from ..lake import Lake, VersionUnavailable, retry_conflicts, spooled, vanished
from ..streams import STREAMS, StreamSpec, has_memberships
from ..warehouse import (
    EVENT_DATE,
    LEDGER,
    REJECTED,
    REJECTED_SCHEMA,
    Warehouse,
    batch_table,
    partition_column,
    record_schema,
    table_schema,
)
from .commit_day import ledger_txn

WATERMARK = "ingested_files"
SAMPLE_KEYS = 20
# A partition value no table holds (see _recompute).
NO_PARTITION = {"_bucket": -1, EVENT_DATE: date(1900, 1, 1)}
# A merge touching more keys than this, or more than this fraction of a table of
# at least REBUILD_MIN_ROWS rows, recomputes the whole table instead, a range of
# buckets at a time: bounded memory, and cheaper than merging most of the table.
REBUILD_KEYS = 2_000_000
REBUILD_FRACTION = 0.5
REBUILD_MIN_ROWS = 200_000
Log = Callable[[str], None]


@dataclass
class MergeReport:
    """What one catch-up did to a table."""

    table: str
    ledger_version: int | None
    rebuilt: bool = False
    inserted: list = field(default_factory=list)  # keys (tuples for composite keys)
    updated: list = field(default_factory=list)
    deleted: list = field(default_factory=list)
    n_inserted: int = 0
    n_updated: int = 0
    n_deleted: int = 0
    rows_deleted: int = 0  # rows the merge deleted (the keys deleted, and old copies of moved events)
    checked_keys: int = 0  # keys whose uniqueness was checked after the merge
    duplicate_keys: int = 0  # of those, keys held by more than one row (or null)
    days: list = field(default_factory=list)  # rejected_records: (stream, landing_date) replaced

    @property
    def changed(self) -> bool:
        return self.rebuilt or bool(self.n_inserted or self.n_updated or self.n_deleted or self.days)

    def describe(self) -> str:
        if self.rebuilt:
            return f"{self.table}: rebuilt from every committed batch ({self.n_inserted} keys)"
        if self.days:
            return f"{self.table}: replaced {len(self.days)} landing day(s)"
        if not self.changed:
            return f"{self.table}: already current"
        return f"{self.table}: {self.n_inserted} key(s) inserted, {self.n_updated} updated, {self.n_deleted} deleted"


def derived_tables() -> list[str]:
    """Every table built from the batches: one per stream, and rejected_records."""
    return [spec.table for spec in STREAMS.values()] + [REJECTED]


def spec_of(table: str) -> StreamSpec:
    return next(s for s in STREAMS.values() if s.table == table)


@dataclass(frozen=True)
class Source:
    stream: str
    kind: str  # records | cells | memberships | rejects

    @property
    def table(self) -> str:
        return batch_table(self.stream, self.kind)


def sources(table: str) -> list[Source]:
    if table == REJECTED:
        return [Source(s, "rejects") for s in STREAMS]
    spec = spec_of(table)
    out = [Source(spec.name, "records")]
    if spec.kind == "entity":
        out.append(Source(spec.name, "cells"))
    if "account_id" in spec.extra_columns:
        out += [Source(s, "memberships") for s in STREAMS if has_memberships(s)]
    return out


def committed(lake: Lake, ledger, streams: set[str], statuses) -> pl.DataFrame:
    """(stream, landing_date, stage_id) of the ledger's files with these statuses."""
    return (
        lake.scan(LEDGER, table=ledger)
        .filter(pl.col("stream").is_in(sorted(streams)) & pl.col("status").is_in(file_status.values(statuses)))
        .select("stream", "landing_date", "stage_id")
        .drop_nulls("stage_id")
        .collect()
    )


def _sequences(ledger, streams) -> dict[str, int]:
    """Each stream's ledger commit sequence in this ledger snapshot."""
    return {s: ledger.transaction_version(ledger_txn(s)) or 0 for s in sorted(streams)}


def behind(warehouse: Warehouse) -> list[str]:
    """Tables that have not merged every ledger commit of the streams they are built from."""
    lake = warehouse.lake
    ledger = lake.table(LEDGER)
    out = []
    for table in derived_tables():
        if not lake.exists(table):
            out.append(table)
            continue
        target = lake.table(table)
        streams = {s.stream for s in sources(table)}
        if any((target.transaction_version(ledger_txn(s)) or 0) != n for s, n in _sequences(ledger, streams).items()):
            out.append(table)
    return out


def merge_table(
    warehouse: Warehouse,
    table: str,
    run_id: str | None = None,
    log: Log | None = None,
    recompute: pl.DataFrame | None = None,
    force: bool = False,
) -> MergeReport:
    """Catches `table` up with the ledger, in one commit (retried on a conflict).
    `recompute`: keys (or, for rejected_records, (stream, landing_date) days) to
    recompute from the batches although the ledger did not change them (an erasure
    removed some of their versions). `force`: commit even when nothing changed, so
    the table's watermark reaches the latest ledger version (maintenance)."""
    return retry_conflicts(lambda: _catch_up(warehouse, table, run_id, recompute, force), f"merging {table}", log)


def _catch_up(warehouse: Warehouse, table: str, run_id: str | None, recompute: pl.DataFrame | None, force: bool) -> MergeReport:
    lake = warehouse.lake
    target = lake.table(table)  # its version is the one this commit builds on
    mark = target.transaction_version(WATERMARK)
    ledger = lake.table(LEDGER)
    version = ledger.version()
    report = MergeReport(table, version)
    streams = {s.stream for s in sources(table)}
    sequences = _sequences(ledger, streams)
    current = mark is not None and all((target.transaction_version(ledger_txn(s)) or 0) == n for s, n in sequences.items())
    if current and recompute is None and (not force or mark == version):
        return report  # none of its streams committed since
    statuses = file_status.WITH_REJECTS if table == REJECTED else file_status.LOADED
    now = committed(lake, ledger, streams, statuses)
    before = None
    if mark is not None:
        try:
            before = committed(lake, lake.table(LEDGER, mark), streams, statuses)
        except Exception as exc:
            if not (isinstance(exc, VersionUnavailable) or vanished(exc)):
                raise
            before = None  # that ledger version is vacuumed: recompute everything
    txn = [(WATERMARK, version), *((ledger_txn(s), n) for s, n in sequences.items())]
    meta = {"ledger_version": version}
    if table == REJECTED:
        return _merge_rejects(lake, target, now, before, report, run_id, txn, meta, recompute)
    spec = spec_of(table)
    if before is None:
        return _rebuild(lake, target, spec, now, report, run_id, txn, meta)
    changed = _symmetric_difference(now, before)
    touched = _touched_keys(lake, spec, changed)
    if touched.height > REBUILD_KEYS or touched.height > REBUILD_FRACTION * max(lake.rows(table, table=target), REBUILD_MIN_ROWS):
        return _rebuild(lake, target, spec, now, report, run_id, txn, meta)
    places = pl.DataFrame(
        schema={**dict.fromkeys(spec.keys, pl.String), partition_column(spec): table_schema(spec)[partition_column(spec)]}
    )
    if recompute is not None and recompute.height:
        extra = recompute.select(list(spec.keys)).with_columns(merge.key_hash(list(spec.keys)))
        touched = pl.concat([touched, extra]).unique()
        part = partition_column(spec)
        located = recompute if part in recompute.columns else recompute.with_columns(merge.bucket(list(spec.keys)))
        places = located.select(*spec.keys, part).cast(places.schema).unique()
    if touched.is_empty():
        lake.append(table, pl.DataFrame(schema=table_schema(spec)), run_id=run_id, txns=txn, metadata=meta, table=target)
        return report
    source, parts = _recompute(lake, spec, touched, now, before, report, places)
    meta.update(inserted=report.n_inserted, updated=report.n_updated, deleted=report.n_deleted)
    if source.height:
        on = [*spec.keys, partition_column(spec)]
        metrics = lake.merge(table, source, on, match="_match", run_id=run_id, txns=txn, metadata=meta, table=target)
        report.rows_deleted = int(metrics.get("num_target_rows_deleted", 0))
    else:
        lake.append(table, pl.DataFrame(schema=table_schema(spec)), run_id=run_id, txns=txn, metadata=meta, table=target)
    _check_keys(lake, spec, table, touched, parts, report)
    return report


def _symmetric_difference(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Committed stages that appeared or went."""
    on = list(a.columns)
    return pl.concat([a.join(b, on=on, how="anti"), b.join(a, on=on, how="anti")])


def _stage_ids(frame: pl.DataFrame, stream: str) -> pl.Series:
    return frame.filter(pl.col("stream") == stream)["stage_id"]


def _touched_keys(lake: Lake, spec: StreamSpec, changed: pl.DataFrame) -> pl.DataFrame:
    """Keys (and their `_key_hash`) of the batch rows of the changed stages."""
    keys = list(spec.keys)
    frames = []
    for source in sources(spec.table):
        stages = changed.filter(pl.col("stream") == source.stream)
        if stages.is_empty():
            continue
        cols = ["contact_id"] if source.kind == "memberships" else keys
        frames.append(
            lake.scan(source.table)
            .filter(
                pl.col("landing_date").is_in(stages["landing_date"].unique().implode())
                & pl.col("_stage_id").is_in(stages["stage_id"].implode())
            )
            .select(*[pl.col(c).alias(k) for c, k in zip(cols, keys)], "_key_hash")
            .unique()
            .collect()
        )
    if not frames:
        return pl.DataFrame(schema={**dict.fromkeys(keys, pl.String), "_key_hash": pl.Int64})
    return pl.concat(frames).unique().drop_nulls(keys)


def _versions(lake: Lake, source: Source, keys: list[str], touched: pl.DataFrame, stages: pl.Series) -> pl.LazyFrame:
    """Every row of `source` for the touched keys in the given stages."""
    cols = ["contact_id"] if source.kind == "memberships" else keys
    wanted = touched.select(*[pl.col(k).alias(c) for k, c in zip(keys, cols)], "_key_hash").lazy()
    return (
        lake.scan(source.table)
        .filter(pl.col("_key_hash").is_in(touched["_key_hash"].unique().implode()) & pl.col("_stage_id").is_in(stages.implode()))
        .join(wanted, on=[*cols, "_key_hash"], how="semi")
    )


def _read_versions(lake: Lake, spec: StreamSpec, touched: pl.DataFrame, stages: pl.DataFrame) -> dict[Source, pl.DataFrame]:
    """Every stored version of the touched keys in the given stages, per source
    (one scan of each batch table)."""
    keys = list(spec.keys)
    return {s: _versions(lake, s, keys, touched, _stage_ids(stages, s.stream)).collect() for s in sources(spec.table)}


def _current(spec: StreamSpec, versions: dict[Source, pl.DataFrame], stages: pl.DataFrame) -> pl.DataFrame:
    """The table rows of the touched keys as the given committed stages make them."""
    keys = list(spec.keys)

    def of(source: Source) -> pl.LazyFrame:
        return versions[source].lazy().filter(pl.col("_stage_id").is_in(_stage_ids(stages, source.stream).implode()))

    records = of(Source(spec.name, "records")).select(list(record_schema(spec)))
    if spec.kind == "event":
        rows = merge.current_events(records, keys).with_columns(pl.col("event_timestamp").dt.date().alias(EVENT_DATE))
    else:
        rows = merge.current_entities(records, of(Source(spec.name, "cells")), keys).with_columns(merge.bucket(keys))
        memberships = [s for s in sources(spec.table) if s.kind == "memberships"]
        if memberships:
            members = pl.concat([of(s) for s in memberships])
            current = merge.current_memberships(members.select("contact_id", "account_id", *merge.VERSION))
            rows = rows.drop("account_id").join(current, on="contact_id", how="left")
    schema = table_schema(spec)
    return rows.select(list(schema)).cast(schema).collect()


def _recompute(
    lake: Lake, spec: StreamSpec, touched: pl.DataFrame, now: pl.DataFrame, before: pl.DataFrame, report: MergeReport, places: pl.DataFrame
):
    """The merge source: new rows of changed keys, and delete markers (`_delete`)
    for keys with no committed version left or whose row moved partition. `places`
    are (key, partition) pairs where a touched key may also be stored (versions an
    erasure removed from the batches, which `before` no longer shows).

    `_match` is the partition where a source row can find its key in the table
    (its old row's), and NO_PARTITION, a partition value no table holds, for a key
    the table does not hold: the merge reads only the partitions of rows that
    replace or delete, and appends the new keys. (Not null: delta-rs reads every
    partition for a null.)"""
    keys = list(spec.keys)
    part = partition_column(spec)
    versions = _read_versions(lake, spec, touched, pl.concat([now, before]).unique())
    new = _current(spec, versions, now)
    old = _current(spec, versions, before)
    unchanged = new.join(old, on=list(new.columns), how="semi", nulls_equal=True)
    changed = new.join(unchanged, on=keys, how="anti")
    inserted = changed.join(old, on=keys, how="anti")
    updated = changed.join(old, on=keys, how="semi")
    deleted = old.join(new, on=keys, how="anti")
    report.n_inserted, report.n_updated, report.n_deleted = inserted.height, updated.height, deleted.height
    report.inserted, report.updated, report.deleted = (_first_keys(f, keys) for f in (inserted, updated, deleted))
    known = pl.concat([old.select(*keys, part), places.select(*keys, part)]).unique()
    markers = known.join(new.select(*keys, part), on=[*keys, part], how="anti")
    located = known.with_columns(_match=pl.col(part))
    upserts = changed.join(located, on=[*keys, part], how="left").with_columns(
        pl.col("_match").fill_null(NO_PARTITION[part]), _delete=pl.lit(False)
    )
    deletes = markers.with_columns(_match=pl.col(part), _delete=pl.lit(True))
    parts = pl.concat([new.select(part), known.select(part)]).unique()[part]
    source = pl.concat([upserts, deletes], how="diagonal_relaxed").select(*changed.columns, "_match", "_delete")
    return source, parts


def _first_keys(frame: pl.DataFrame, keys: list[str]) -> list:
    rows = frame.select(keys).sort(keys).head(SAMPLE_KEYS).iter_rows()
    return [r[0] if len(keys) == 1 else r for r in rows]


def _check_keys(lake: Lake, spec: StreamSpec, table: str, touched: pl.DataFrame, parts: pl.Series, report: MergeReport) -> None:
    """After a merge: the touched keys are unique and not null, read from the
    partitions they are in (the rest of the table did not change)."""
    keys = list(spec.keys)
    scan = lake.scan(table).filter(pl.col(partition_column(spec)).is_in(parts.implode()))
    found = scan.select(keys).join(touched.select(keys).lazy(), on=keys, how="semi").collect()
    report.checked_keys = touched.height
    report.duplicate_keys = found.height - found.unique().height + found.select(pl.any_horizontal(pl.col(keys).is_null()).sum()).item()


def _rebuild(lake: Lake, target, spec: StreamSpec, now: pl.DataFrame, report: MergeReport, run_id, txn, meta) -> MergeReport:
    """The whole table from every committed version, a range of buckets at a time."""
    keys = list(spec.keys)
    schema = table_schema(spec)
    counts = {"rows": 0, "distinct": 0}
    stages = {s.stream: _stage_ids(now, s.stream) for s in sources(spec.table)}
    records = lake.scan(batch_table(spec.name, "records"))
    total = records.filter(pl.col("_stage_id").is_in(stages[spec.name].implode())).select(pl.len()).collect().item()

    def passes():
        for buckets in merge.bucket_passes(total):
            # Every version of a key is in its key's bucket (memberships: the contact's).
            in_pass = pl.col("_bucket").is_between(buckets.start, buckets.stop - 1)
            versions = {
                s: lake.scan(s.table).filter(in_pass & pl.col("_stage_id").is_in(stages[s.stream].implode())).collect()
                for s in sources(spec.table)
            }
            frame = _current(spec, versions, now)
            counts["rows"] += frame.height
            counts["distinct"] += frame.select(keys).drop_nulls().n_unique()
            yield frame

    with spooled(schema, passes()) as rows:
        meta = {**meta, "rebuilt": True, "rows_removed": lake.rows(spec.table, table=target)}
        lake.replace(spec.table, rows, None, run_id=run_id, txns=txn, metadata=meta, table=target)
    report.rebuilt = True
    report.n_inserted = counts["rows"]
    report.checked_keys = counts["rows"]
    report.duplicate_keys = counts["rows"] - counts["distinct"]
    return report


def _merge_rejects(
    lake: Lake, target, now: pl.DataFrame, before: pl.DataFrame | None, report: MergeReport, run_id, txn, meta, recompute
) -> MergeReport:
    """rejected_records: the landing days whose committed stages changed are replaced."""
    changed = now if before is None else _symmetric_difference(now, before)
    days = changed.select("stream", "landing_date")
    if recompute is not None:
        days = pl.concat([days, recompute.select("stream", "landing_date")])
    days = days.unique()
    if days.is_empty() and before is not None:
        lake.append(REJECTED, pl.DataFrame(schema=REJECTED_SCHEMA), run_id=run_id, txns=txn, metadata=meta, table=target)
        return report
    frames = [pl.DataFrame(schema=REJECTED_SCHEMA)]
    clauses = []
    for stream, group in days.sort("stream", "landing_date").group_by("stream", maintain_order=True):
        stream = stream[0]
        dates = group["landing_date"]
        frames.append(
            lake.scan(batch_table(stream, "rejects"))
            .filter(pl.col("landing_date").is_in(dates.implode()) & pl.col("_stage_id").is_in(_stage_ids(now, stream).implode()))
            .select(list(REJECTED_SCHEMA))
            .collect()
        )
        listed = ", ".join(f"'{d.isoformat()}'" for d in dates)
        clauses.append(f"(stream = '{stream}' AND landing_date IN ({listed}))")
    rows = pl.concat(frames).sort("stream", "landing_date", "landed_at", "file", "line", nulls_last=False)
    predicate = None if before is None else " OR ".join(clauses)
    replaced = lake.scan(REJECTED, table=target)
    if before is not None:
        replaced = replaced.join(days.lazy(), on=["stream", "landing_date"], how="semi")
    meta = {**meta, "days": days.height, "rows_removed": replaced.select(pl.len()).collect().item()}
    lake.replace(REJECTED, rows, predicate, run_id=run_id, txns=txn, metadata=meta, table=target)
    report.days = [(s, d) for s, d in days.iter_rows()]
    report.n_inserted = rows.height
    return report
