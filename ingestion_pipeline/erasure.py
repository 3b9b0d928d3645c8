"""Privacy erasure (`ingestion-pipeline erase`, docs/ERASURE.md).

An erasure forgets a contact: its contact records, its events, its group/
memberships (so `contacts.account_id`), and the CRM leads and rejected records of
its emails. Its rows are deleted from the batch tables (`_batches/*`, every
staged result, committed or not), then the tables built from them are recomputed
for the keys that lost versions (`merge_tables` with `recompute`), the ledger's
error messages are redacted, and every file no table version needs any more is
vacuumed at once, so no byte of hers stays under the warehouse. Delta's log never
held her values: deletes name their columns only, and no personal column has
statistics (warehouse.Spec.stats). The request is recorded in the `erasures`
table with sha256 hashes only, never the plain email or contact id.

Never again from old files: when a run stages a file that landed at or before an
erasure (`pipeline.ingest_partition` calls `suppress_staged`), her rows are dropped
before they reach a batch; an erasure recorded while a run was between staging
and committing is applied to that run's staged rows before its ledger commit
(`sweep_stages`). So re-running or re-materialising an old day, or ingesting a
file that landed before the erasure but was not processed yet, does not bring the
contact back. A file that lands after the erasure is new data and loads.

Matching compares hashes: DuckDB computes the sha256 of the distinct values of a
column and they are joined with the erasure's hashes. The erase itself and every
later run use the same code; only the time bound differs (the erase removes every
row it finds, a run only rows of files that landed at or before an erasure).

What matches (the subject's contact ids and emails):
- contact records and their property cells: `contact_id` is erased, or (for an
  `--email` erasure) `email` is the erased email;
- contact_event records and group/ memberships: `contact_id` is erased;
- crm records and cells: `email` is one of the erased emails;
- rejected records (`raw`, the record's text as landed): an email-shaped token of
  the text is an erased email (case-insensitive, the whole token: `ann@x.io` does
  not match `joann@x.io` or `ann@x.io.uk`), or an erased contact id is the value of
  a `contact_id` / `contact_key` key (JSON: `"contact_id": "c1"` or `: 1`; CSV: the
  field in that column, the column found from the file's header row, read from the
  landing store). A contact id is never matched as free text, so erasing id `1`
  does not touch a record whose `event_id`, `seats` or line number is 1.

A file's `first_error` in the ledger quotes an invalid value (an email that failed
validation, such as `'ann@x.io.'`): an erased email in it is replaced by `<erased>`;
the ledger keeps its rows and counts.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import duckdb
import polars as pl

from . import normalise as norm
from .formats import DecodedReader, FileRejected, detect_format
from .lake import ORPHAN_HOURS, retry_conflicts
from .landing import LandedFile, LandingError, LandingStore
from .localfs import write_parquet
from .settings import Settings
from .stages.merge_tables import derived_tables, merge_table
from .streams import FEEDS, STREAMS, feed_for_path
from .warehouse import ERASURE_SCHEMA, ERASURES, EVENT_DATE, LEDGER, LINEAGE, REJECTED, UTC_TS, Warehouse, batch_schemas, batch_table

TABLE = "erasures"

# Kinds of hashes an erasure holds.
CONTACT_ID = "contact_id"  # every contact id the subject resolved to
EMAIL = "email"  # every email those contacts carried, and the subject email
SUBJECT_EMAIL = "subject_email"  # the subject of an --email erasure

# (column, kinds of hashes it is compared with): a row matching any is erased.
Rules = tuple[tuple[str, tuple[str, ...]], ...]
RECORD_RULES: dict[str, Rules] = {
    "contact": (("contact_id", (CONTACT_ID,)), ("email", (SUBJECT_EMAIL,))),
    "contact_event": (("contact_id", (CONTACT_ID,)),),
    "crm": (("email", (EMAIL,)),),
}
MEMBERSHIP_RULES: Rules = (("contact_id", (CONTACT_ID,)),)
TABLE_RULES: dict[str, Rules] = {STREAMS[stream].table: rules for stream, rules in RECORD_RULES.items()}
# What the report counts: the rows a user sees go, per table.
REPORTED = (*TABLE_RULES, "rejected_records", "memberships")

# Keys that carry a contact id in a landed record, per feed folder (CSV columns).
ID_COLUMNS = {feed.folder: f.source for feed in FEEDS.values() for f in feed.fields if f.name == "contact_id"}
_ID_KEYS = "|".join(sorted(set(ID_COLUMNS.values())))
# `"contact_id": "c1"` or `"contact_key" : 42`, in JSON text (valid or not).
JSON_ID = rf'"(?:{_ID_KEYS})"\s*:\s*(?:"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*)'
JSON_KEY_PREFIX = r'^"[^"]*"\s*:\s*'
# An email-shaped token: the longest run around an @ of characters that are not
# whitespace, quotes, brackets or separators (matched whole, never as a substring).
_TOKEN_CHARS = r"""[^\s@"(),:;<>\[\]{}\\]"""
_NOT_TOKEN = r"""[\s@"(),:;<>\[\]{}\\]"""
ERASED = "<erased>"
EMAIL_TOKEN = rf"{_TOKEN_CHARS}+@{_TOKEN_CHARS}+"
CSV_NAME = r"(?i)\.csv(?:\.gz|\.gzip)?$"
HEADER_BYTES = 64 * 1024
MARKER = "erasures.json"  # in a staged file's folder: the erasures already applied to it


class ErasureError(ValueError):
    """The erasure request itself is invalid (no subject, both, a placeholder id...)."""


@dataclass
class ErasureReport:
    erasure_id: str
    requested_at: datetime
    subject_kind: str  # contact_id | email
    contact_ids: int  # contact ids the subject resolved to
    emails: int  # emails erased with them
    rows_removed: dict[str, int]  # per table, plus stored versions in batches / staging
    warnings: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # interrupted erasures finished first

    @property
    def nothing_matched(self) -> bool:
        return not any(self.rows_removed.values())


class Staged(Protocol):
    """A staged file (pipeline.StagedFile): its folder and its ledger row."""

    dir: Path
    row: dict


# --- matching ----------------------------------------------------------------


class Matcher:
    """Erasure hashes (kind, sha256, until) and a DuckDB connection that hashes values.

    `bounded`: a row matches only if it landed at or before `until` (the erasure's
    requested_at); unbounded at erase time, when every row found is removed."""

    def __init__(self, hashes: pl.DataFrame, bounded: bool):
        self.hashes = hashes
        self.bounded = bounded
        self.latest = hashes["until"].max() if hashes.height else None
        self.con = duckdb.connect()

    def close(self) -> None:
        self.con.close()

    def sha256(self, values: pl.Series) -> pl.DataFrame:
        """(value, sha256) of the distinct non-null values."""
        vals = pl.DataFrame({"value": values.cast(pl.String)}).drop_nulls().unique()  # noqa: F841 (DuckDB reads it)
        return self.con.sql("SELECT value, sha256(value) AS sha256 FROM vals").pl()

    def json_strings(self, tokens: pl.Series) -> pl.DataFrame:
        """(tok, value): JSON scalars (`"c\\u0031"`, `42`) as the pipeline reads them."""
        toks = pl.DataFrame({"tok": tokens}).drop_nulls().unique()  # noqa: F841 (DuckDB reads it)
        return self.con.sql("SELECT tok, CASE WHEN json_valid(tok) THEN json_extract_string(tok, '$') ELSE tok END AS value FROM toks").pl()

    def match(self, values: pl.Series, kinds: Iterable[str]) -> pl.DataFrame:
        """(value, until) for the values whose hash is erased (until: the latest
        erasure naming it)."""
        wanted = self.hashes.filter(pl.col("kind").is_in(list(kinds)))
        if wanted.is_empty() or values.len() == 0:
            return pl.DataFrame(schema={"value": pl.String, "until": UTC_TS})
        return self.sha256(values).join(wanted, on="sha256").group_by("value").agg(until=pl.col("until").max()).sort("value")

    def drop_expr(self, column: str, matched: pl.DataFrame, landed: str) -> pl.Expr:
        if not self.bounded:
            return pl.col(column).is_in(matched["value"].implode())
        until = pl.col(column).replace_strict(matched["value"], matched["until"], default=None, return_dtype=UTC_TS)
        return (pl.col(landed) <= until).fill_null(False)


def _scan(path: Path) -> pl.LazyFrame:
    return pl.scan_parquet(path, glob=False)


def _filter_parquet(
    path: Path, rules: Rules, matcher: Matcher, landed: str = "_landed_at", before_write: Callable[[pl.DataFrame], None] | None = None
) -> tuple[int, pl.DataFrame]:
    """Rewrites `path` without the rows that match a rule; returns (rows removed,
    lineage of the removed rows). `before_write` gets that lineage before `path`
    is rewritten (dependent rows go first, so a crash in between is found again)."""
    lf = _scan(path)
    names = lf.collect_schema().names()
    drops = []
    for column, kinds in rules:
        if column not in names:
            continue
        src = lf.filter(pl.col(landed) <= matcher.latest) if matcher.bounded else lf
        values = src.select(pl.col(column).unique()).collect().to_series()
        matched = matcher.match(values, kinds)
        if matched.height:
            drops.append(matcher.drop_expr(column, matched, landed))
    lineage = [c for c in LINEAGE if c in names]
    if not drops:
        return 0, pl.DataFrame(schema={c: LINEAGE[c] for c in lineage})
    drop = pl.any_horizontal(drops)
    removed = lf.filter(drop).select(lineage).collect()
    if removed.height:
        if before_write is not None:
            before_write(removed)
        write_parquet(lf.filter(~drop), path)
    return removed.height, removed


def _drop_lineage(path: Path, removed: pl.DataFrame) -> int:
    """Rewrites `path` (property cells) without the rows of removed records."""
    if removed.is_empty() or not path.exists():
        return 0
    lf = _scan(path)
    keys = list(removed.columns)
    n = lf.join(removed.lazy().unique(), on=keys, how="semi").select(pl.len()).collect().item()
    if n:
        write_parquet(lf.join(removed.lazy().unique(), on=keys, how="anti", maintain_order="left"), path)
    return n


class CsvHeaders:
    """Header rows of landed CSV files, read from the landing store on demand (to
    find the contact id column of a rejected CSV row)."""

    def __init__(self, store: Callable[[], LandingStore | None], versions: Callable[[], dict] = dict):
        self._store_factory = store
        self._store: LandingStore | None = None
        self._opened = False
        self._versions_factory = versions
        self._versions: dict | None = None
        self._cache: dict[tuple, list[str] | None] = {}
        self.unreadable: list[str] = []

    def add(self, row: dict) -> None:
        """A file version (a ledger row) whose header may be asked for."""
        self.versions()[(row["file"], _as_datetime(row["landed_at"]))] = (row["size_bytes"], row["file_version"])

    def versions(self) -> dict:
        if self._versions is None:
            self._versions = dict(self._versions_factory())
        return self._versions

    def store(self) -> LandingStore | None:
        if not self._opened:
            self._opened = True
            try:
                self._store = self._store_factory()
            except Exception:  # no usable landing store (bad URL, no S3 credentials): headers unknown
                self._store = None
        return self._store

    def columns(self, file: str, landed_at: datetime) -> list[str] | None:
        key = (file, landed_at)
        if key not in self._cache:
            self._cache[key] = self._read(file, landed_at)
            if self._cache[key] is None:
                self.unreadable.append(file)
        return self._cache[key]

    def _read(self, file: str, landed_at: datetime) -> list[str] | None:
        version = self.versions().get((file, landed_at))
        store = self.store()
        if version is None or store is None:
            return None
        landed = LandedFile(path=file, size=version[0], version=version[1], landed_at=landed_at)
        try:
            fmt = detect_format(file)
            data = b""
            with store.open(landed) as raw:
                reader = DecodedReader(raw, fmt, Settings(), file)
                while len(data) < HEADER_BYTES * 16 and b"\n" not in data:
                    chunk = reader.read(HEADER_BYTES)
                    if not chunk:
                        break
                    data += chunk
        except (FileRejected, LandingError, OSError, ValueError):
            return None
        text = data.decode("utf-8", "replace").removeprefix("\ufeff").split("\n", 1)[0].rstrip("\r")
        try:
            row = next(csv.reader(io.StringIO(text)), None)
        except csv.Error:
            return None
        return [n.strip() or f"column_{i}" for i, n in enumerate(row, 1)] if row else None


def _csv_id_fields(rows: pl.DataFrame, headers: CsvHeaders) -> pl.DataFrame:
    """(_i, landed_at, value): the contact id field of rejected CSV rows, per file
    version; every field of a row when the file's header cannot be read."""
    out = [pl.DataFrame(schema={"_i": pl.UInt32, "landed_at": UTC_TS, "value": pl.String})]
    for (file, landed_at), group in rows.group_by("file", "landed_at", maintain_order=True):
        feed = feed_for_path(file)
        column = ID_COLUMNS.get(feed.folder) if feed else None
        if column is None:
            continue  # this folder's records carry no contact id
        header = headers.columns(file, landed_at)
        if header is not None and column not in header:
            continue
        index = header.index(column) if header is not None else None
        has_quote = pl.col("raw").str.contains('"', literal=True)
        plain = group.filter(~has_quote).select("_i", "landed_at", value=pl.col("raw").str.split(","))
        quoted = group.filter(has_quote)
        if quoted.height:  # error path: a quoted CSV row, split by the csv module
            split = [next(csv.reader(io.StringIO(raw)), []) for raw in quoted["raw"]]
            plain = pl.concat([plain, quoted.select("_i", "landed_at", value=pl.Series(split, dtype=pl.List(pl.String)))])
        if index is not None:
            fields = plain.with_columns(pl.col("value").list.get(index, null_on_oob=True))
        else:
            fields = plain.explode("value")
        out.append(fields.drop_nulls("value"))
    return pl.concat(out)


def _reject_matches(rows: pl.DataFrame, matcher: Matcher, headers: CsvHeaders) -> pl.Series:
    """Row indexes (`_i`) of rejected records that belong to an erased contact."""
    rows = rows.filter(pl.col("raw").is_not_null())
    if rows.is_empty():
        return pl.Series("_i", [], pl.UInt32)
    emails = (
        rows.select("_i", "landed_at", value=pl.col("raw").str.to_lowercase().str.extract_all(EMAIL_TOKEN))
        .explode("value")
        .drop_nulls("value")
        .with_columns(pl.col("value").str.strip_chars("'."))
    )
    is_csv = pl.col("file").str.contains(CSV_NAME)
    tokens = (
        rows.filter(~is_csv)
        .select("_i", "landed_at", tok=pl.col("raw").str.extract_all(JSON_ID))
        .explode("tok")
        .drop_nulls("tok")
        .with_columns(pl.col("tok").str.replace(JSON_KEY_PREFIX, ""))
    )
    json_ids = tokens.join(matcher.json_strings(tokens["tok"]), on="tok").select("_i", "landed_at", "value")
    ids = pl.concat([json_ids, _csv_id_fields(rows.filter(is_csv), headers)]).with_columns(pl.col("value").str.strip_chars())
    hits = pl.concat(
        [
            ids.join(matcher.match(ids["value"], (CONTACT_ID,)), on="value"),
            emails.join(matcher.match(emails["value"], (EMAIL,)), on="value"),
        ]
    )
    if matcher.bounded:
        hits = hits.filter(pl.col("landed_at") <= pl.col("until"))
    return hits["_i"].unique()


def _filter_rejects(path: Path, matcher: Matcher, headers: CsvHeaders) -> int:
    frame = pl.read_parquet(path, glob=False).with_row_index("_i")
    candidates = frame.filter(pl.col("landed_at") <= matcher.latest) if matcher.bounded else frame
    drop = _reject_matches(candidates.select("_i", "file", "raw", "landed_at"), matcher, headers)
    if drop.len():
        write_parquet(frame.filter(~pl.col("_i").is_in(drop.implode())).drop("_i"), path)
    return drop.len()


def _erased_emails_in(texts: pl.Series, matcher: Matcher, landed_at: datetime | None = None) -> list[str]:
    """Erased emails that occur as tokens of the texts (error messages)."""
    tokens = texts.drop_nulls().str.to_lowercase().str.extract_all(EMAIL_TOKEN).explode().drop_nulls().str.strip_chars("'.")
    matched = matcher.match(tokens, (EMAIL,))
    if matcher.bounded and landed_at is not None:
        matched = matched.filter(pl.col("until") >= landed_at)
    return matched["value"].to_list()


def _redact(text: pl.Expr, emails: list[str]) -> pl.Expr:
    """Each whole-token occurrence of the emails (any case) replaced by <erased>."""
    for email in emails:
        pattern = rf"(?i)(^|{_NOT_TOKEN})(['.]*){pl.escape_regex(email)}(['.]*)($|{_NOT_TOKEN})"
        text = text.str.replace_all(pattern, "${1}${2}" + ERASED + "${3}${4}")
    return text


def _redact_segment(path: Path, matcher: Matcher) -> int:
    """A ledger segment (ingested_files) with erased emails redacted from first_error."""
    frame = pl.read_parquet(path, glob=False)
    emails = _erased_emails_in(frame["first_error"], matcher)
    if not emails:
        return 0
    redacted = frame.with_columns(_redact(pl.col("first_error"), emails))
    changed = (redacted["first_error"] != frame["first_error"]).sum()
    write_parquet(redacted, path)
    return changed


def _redact_staged_row(unit: Path, row: dict, matcher: Matcher) -> bool:
    """The staged file's ledger row (ledger.json, and `row` in place) with erased
    emails redacted from first_error."""
    text = row.get("first_error")
    if not text:
        return False
    emails = _erased_emails_in(pl.Series([text], dtype=pl.String), matcher, _as_datetime(row["landed_at"]))
    if not emails:
        return False
    redacted = pl.select(_redact(pl.lit(text, pl.String), emails)).item()
    stored = json.loads((unit / "ledger.json").read_text())
    stored["first_error"] = row["first_error"] = redacted
    tmp = unit / f".ledger.json.{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps(stored))
    tmp.replace(unit / "ledger.json")
    return True


def _filter_unit(unit: Path, stream: str, matcher: Matcher, headers: CsvHeaders) -> Counter:
    """A day batch or a staged file's folder: records (and their cells),
    memberships and rejects. Returns rows removed per kind."""
    removed: Counter = Counter()
    records = unit / "records.parquet"
    cells = unit / "cells.parquet"
    if stream in RECORD_RULES and records.exists():
        # Property cells go first, by the lineage of the records about to go, then
        # the records: killed in between, the next pass finds the records again.
        def drop_cells(lineage: pl.DataFrame) -> None:
            removed["cells"] += _drop_lineage(cells, lineage)

        removed["records"] += _filter_parquet(records, RECORD_RULES[stream], matcher, before_write=drop_cells)[0]
    if stream in RECORD_RULES and cells.exists():
        # and by key, for cells whose records went in an earlier, interrupted pass
        removed["cells"] += _filter_parquet(cells, RECORD_RULES[stream], matcher)[0]
    if (memberships := unit / "memberships.parquet").exists():
        removed["memberships"] += _filter_parquet(memberships, MEMBERSHIP_RULES, matcher)[0]
    if (rejects := unit / "rejects.parquet").exists():
        removed["rejects"] += _filter_rejects(rejects, matcher, headers)
    return removed


# --- the erasure ledger --------------------------------------------------------


def read_erasures(warehouse: Warehouse) -> pl.DataFrame:
    return warehouse.scan(ERASURES).collect()


def _hash_table(erasures: pl.DataFrame) -> pl.DataFrame:
    """(kind, sha256, until) of every erasure."""
    base = erasures.select("requested_at", "subject_kind", "subject_sha256", "contact_id_sha256", "email_sha256")
    parts = [
        base.select(kind=pl.lit(CONTACT_ID), sha256="contact_id_sha256", until="requested_at").explode("sha256"),
        base.select(kind=pl.lit(EMAIL), sha256="email_sha256", until="requested_at").explode("sha256"),
        base.filter(pl.col("subject_kind") == "email").select(kind=pl.lit(SUBJECT_EMAIL), sha256="subject_sha256", until="requested_at"),
    ]
    return pl.concat(parts).drop_nulls("sha256").cast({"until": UTC_TS})


def _as_datetime(value) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


# --- at commit time: old files never bring an erased contact back ---------------


def suppress_staged(warehouse: Warehouse, store: LandingStore | None, stream: str, staged: Iterable[Staged]) -> int:
    """Drops, from a run's staged files (local, about to be committed), every row of
    an erased contact whose file landed at or before the erasure, and redacts its
    emails from the file's first_error. Costs one read of the (small) erasures
    table when nothing was ever erased."""
    erasures = read_erasures(warehouse)
    if erasures.is_empty():
        return 0
    matcher: Matcher | None = None
    headers = CsvHeaders(lambda: store)
    removed = 0
    try:
        for s in staged:
            if s.row.get("stage_id") is None:
                continue
            landed = s.row["landed_at"]
            if erasures.filter(pl.col("requested_at") >= landed).is_empty():
                continue
            if matcher is None:
                matcher = Matcher(_hash_table(erasures), bounded=True)
            headers.add(s.row)
            removed += sum(_filter_unit(s.dir, stream, matcher, headers).values())
            _redact_row(s.row, matcher)
    finally:
        if matcher is not None:
            matcher.close()
    return removed


def erasures_version(warehouse: Warehouse) -> int:
    return warehouse.lake.version(ERASURES) if warehouse.lake.exists(ERASURES) else -1


def sweep_stages(warehouse: Warehouse, store: LandingStore | None, staged: Iterable[Staged], run_id: str | None = None) -> int:
    """For a run whose staged rows are appended but not yet committed, when an
    erasure was recorded since it filtered them: drops from the batch tables the
    rows of these stages that belong to an erased contact (bounded like
    `suppress_staged`)."""
    staged = [s for s in staged if s.row.get("stage_id")]
    erasures = read_erasures(warehouse)
    if erasures.is_empty() or not staged:
        return 0
    matcher = Matcher(_hash_table(erasures), bounded=True)
    headers = CsvHeaders(lambda: store)
    for s in staged:
        headers.add(s.row)
        _redact_row(s.row, matcher)
    try:
        removed, _ = _remove_from_batches(warehouse, matcher, headers, run_id, [s.row["stage_id"] for s in staged])
    finally:
        matcher.close()
    return sum(removed.values())


def _redact_row(row: dict, matcher: Matcher) -> bool:
    """A ledger row (in place) with erased emails redacted from first_error."""
    text = row.get("first_error")
    if not text:
        return False
    emails = _erased_emails_in(pl.Series([text], dtype=pl.String), matcher, _as_datetime(row["landed_at"]))
    if not emails:
        return False
    row["first_error"] = pl.select(_redact(pl.lit(text, pl.String), emails)).item()
    return True


# --- the erase itself --------------------------------------------------------------


def normalise_subject(contact_id: str | None = None, email: str | None = None) -> tuple[str, str]:
    """(kind, normalised subject), normalised as the pipeline normalises the field."""
    if (contact_id is None) == (email is None):
        raise ErasureError("give exactly one of a contact id or an email")
    if email is not None:
        value = pl.select(norm.email(pl.lit(email, pl.String))).item()
        if not value or "@" not in value or any(c.isspace() for c in value):
            raise ErasureError(f"not an email address: {email!r}")
        return "email", value
    value = pl.select(norm.trim(pl.lit(contact_id, pl.String))).item()
    if pl.select(norm.is_junk_identifier(pl.lit(value, pl.String))).item():
        raise ErasureError(f"{contact_id!r} is a placeholder identifier, never loaded as a contact id (nothing to erase)")
    return "contact_id", value


def _resolve(warehouse: Warehouse, kind: str, subject: str) -> tuple[list[str], list[str]]:
    """(contact ids, emails) to erase: an email resolves to every contact id that
    carried it in any stored version (committed or not); the emails are every email
    those contacts carried (and the subject email)."""
    seen = pl.concat(
        [
            warehouse.scan(batch_table("contact", "records")).select("contact_id", "email"),
            warehouse.scan(STREAMS["contact"].table).select("contact_id", "email"),
        ]
    )
    if kind == "email":
        ids = seen.filter(pl.col("email") == subject).select("contact_id").unique().collect()["contact_id"].to_list()
    else:
        ids = [subject]
    emails = seen.filter(pl.col("contact_id").is_in(ids)).select("email").unique().collect()["email"].to_list()
    if kind == "email":
        emails.append(subject)
    return sorted(set(ids)), sorted({e for e in emails if e is not None})


def _open_store(settings: Settings | None) -> Callable[[], LandingStore | None]:
    def factory() -> LandingStore | None:
        if settings is None:
            return None
        from .landing import open_landing

        return open_landing(settings.landing_url)

    return factory


def _ledger_versions(warehouse: Warehouse) -> Callable[[], dict]:
    def factory() -> dict:
        from .ledger import read_ledger

        ledger = read_ledger(warehouse, ["file", "landed_at", "size_bytes", "file_version"])
        return {(f, t): (s, v) for f, t, s, v in ledger.iter_rows()}

    return factory


def erase(
    target: Settings | Warehouse | str | Path,
    contact_id: str | None = None,
    email: str | None = None,
    *,
    requested_at: datetime | None = None,
    log: Callable[[str], None] | None = None,
) -> ErasureReport:
    """Erases a contact (by id or by email) from every table and batch under the
    warehouse, vacuums the files that held her, and records it in the `erasures`
    ledger. `target` is the Settings (whose landing store gives the header rows of
    rejected CSV files) or the warehouse alone. Runs beside ingests: Delta's commit
    protocol orders its commits with theirs."""
    settings = target if isinstance(target, Settings) else None
    if settings is not None:
        warehouse = Warehouse(settings.warehouse_dir)
    else:
        warehouse = target if isinstance(target, Warehouse) else Warehouse(target)
    kind, subject = normalise_subject(contact_id, email)
    requested_at = requested_at or datetime.now(UTC)
    if requested_at.tzinfo is None:
        raise ErasureError("requested_at must be timezone-aware")
    erasure_id = uuid.uuid4().hex
    warehouse.ensure_layout()
    resumed = _resume_interrupted(warehouse, settings, log)
    ids, emails = _resolve(warehouse, kind, subject)
    hasher = Matcher(pl.DataFrame(schema={"kind": pl.String, "sha256": pl.String, "until": UTC_TS}), bounded=False)
    try:
        hashed = {v: h for v, h in hasher.sha256(pl.Series([subject, *ids, *emails], dtype=pl.String)).iter_rows()}
    finally:
        hasher.close()
    row = {
        "erasure_id": erasure_id,
        "requested_at": requested_at,
        "subject_kind": kind,
        "subject_sha256": hashed[subject],
        "contact_id_sha256": sorted(hashed[i] for i in ids),
        "email_sha256": sorted(hashed[e] for e in emails),
        "status": "in_progress",
        "rows_removed": None,
        "completed_at": None,
    }
    # Recorded first: should the removal below break, every later commit already
    # suppresses the contact, and the next erase finishes the removal.
    recorded = pl.DataFrame([row], schema=ERASURE_SCHEMA)
    warehouse.lake.add_rows(ERASURES, lambda: recorded, run_id=f"erase-{erasure_id}", log=log)
    headers = CsvHeaders(_open_store(settings), _ledger_versions(warehouse))
    removed = _remove_everywhere(warehouse, row, headers, log)
    warnings = [
        f"rejected CSV rows of {file}: its header row could not be read from the landing store, "
        "so every field of those rows was compared with the contact id"
        for file in dict.fromkeys(headers.unreadable)
    ]
    return ErasureReport(erasure_id, requested_at, kind, len(ids), len(emails), removed, warnings, resumed)


def _resume_interrupted(warehouse: Warehouse, settings: Settings | None, log: Callable[[str], None] | None) -> list[str]:
    """Finishes every erasure left `in_progress` by a killed erase, from its stored
    hashes (matching needs no plain value)."""
    done = []
    for row in read_erasures(warehouse).filter(pl.col("status") == "in_progress").to_dicts():
        _remove_everywhere(warehouse, row, CsvHeaders(_open_store(settings), _ledger_versions(warehouse)), log)
        done.append(row["erasure_id"])
    return done


def _remove_everywhere(warehouse: Warehouse, row: dict, headers: CsvHeaders, log: Callable[[str], None] | None) -> dict[str, int]:
    """Removes an erasure's contact from the batches, then recomputes the tables from
    what is left, redacts the ledger, vacuums every file that held her and marks
    the erasure completed."""
    run_id = f"erase-{row['erasure_id']}"
    lake = warehouse.lake
    matcher = Matcher(_hash_table(pl.DataFrame([row], schema=ERASURE_SCHEMA)), bounded=False)
    changed: set[str] = set()
    try:
        counts, recompute = _remove_from_batches(warehouse, matcher, headers, run_id, changed=changed)
        counts["batches"] = sum(counts.values())
        for table, keys in recompute.items():
            if keys.is_empty():
                continue
            changed.add(table)
            if table == REJECTED:
                before = lake.rows(REJECTED)
                merge_table(warehouse, REJECTED, run_id, log, recompute=keys)
                counts[REJECTED] = before - lake.rows(REJECTED)
            else:
                counts[table] = merge_table(warehouse, table, run_id, log, recompute=keys).rows_deleted
        if _redact_ledger(warehouse, matcher, run_id, log):
            changed.add(LEDGER)
            # Every table moves its watermark past the redaction before the old
            # ledger files go: their next merge can still compare ledger versions.
            for table in derived_tables():
                merge_table(warehouse, table, run_id, log, force=True)
    finally:
        matcher.close()
    # The files that held her are no longer referenced: delete them now, whatever
    # the retention (time travel to earlier versions of these tables ends here),
    # and files of writes that were never committed.
    for name in warehouse.specs():
        if name in changed:
            lake.vacuum(name, 0)
        if name != ERASURES:
            lake.vacuum(name, ORPHAN_HOURS, full=True)
    removed = {name: counts[name] for name in (*REPORTED, "batches")}
    done = {**row, "status": "completed", "rows_removed": json.dumps(removed), "completed_at": datetime.now(UTC)}
    frame = pl.DataFrame([done], schema=ERASURE_SCHEMA)
    predicate = f"erasure_id = '{row['erasure_id']}'"
    retry_conflicts(lambda: lake.replace(ERASURES, frame, predicate, run_id=run_id), "recording the erasure", log)
    return removed


def _redact_ledger(warehouse: Warehouse, matcher: Matcher, run_id: str, log) -> int:
    """Ledger rows whose first_error quotes an erased email (an invalid value) get
    `<erased>` in its place; the rows and their counts stay."""
    lake = warehouse.lake

    def attempt() -> int:
        dt = lake.table(LEDGER)
        ledger = lake.scan(LEDGER, table=dt)
        errors = ledger.filter(pl.col("first_error").is_not_null()).select("stream", "landing_date", "first_error").collect()
        emails = _erased_emails_in(errors["first_error"], matcher)
        if not emails:
            return 0
        changed = errors.filter(_redact(pl.col("first_error"), emails) != pl.col("first_error"))
        days = changed.select("stream", "landing_date").unique().sort("stream", "landing_date")
        rows = ledger.join(days.lazy(), on=["stream", "landing_date"], how="semi").collect()
        rows = rows.with_columns(_redact(pl.col("first_error"), emails))
        predicate = " OR ".join(f"(stream = '{s}' AND landing_date = '{d.isoformat()}')" for s, d in days.iter_rows())
        lake.replace(LEDGER, rows, predicate, run_id=run_id, table=dt)
        return changed.height

    return retry_conflicts(attempt, "redacting the ledger", log)


IDENTITY = ["landing_date", "_stage_id", "_source_file", "_source_line"]


def _matching(scan: pl.LazyFrame, rules: Rules, matcher: Matcher, stage_ids: list[str] | None) -> pl.LazyFrame:
    """The rows of a batch table that belong to an erased contact."""
    if stage_ids is not None:
        scan = scan.filter(pl.col("_stage_id").is_in(stage_ids))
    names = scan.collect_schema().names()
    drops = []
    for column, kinds in rules:
        if column not in names:
            continue
        src = scan.filter(pl.col("_landed_at") <= matcher.latest) if matcher.bounded else scan
        values = src.select(pl.col(column).unique()).collect().to_series()
        matched = matcher.match(values, kinds)
        if matched.height:
            drops.append(matcher.drop_expr(column, matched, "_landed_at"))
    if not drops:
        return scan.head(0)
    return scan.filter(pl.any_horizontal(drops))


def _remove_from_batches(
    warehouse: Warehouse,
    matcher: Matcher,
    headers: CsvHeaders,
    run_id: str | None,
    stage_ids: list[str] | None = None,
    changed: set[str] | None = None,
) -> tuple[Counter, dict[str, pl.DataFrame]]:
    """Deletes the erased contact's rows from every batch table (of `stage_ids`
    only, when given), adding the tables it changed to `changed`. Returns rows
    removed per kind and, per table, the keys (for rejected_records, the days) to
    recompute."""
    lake = warehouse.lake
    changed = changed if changed is not None else set()

    def _delete(name: str, rows: pl.DataFrame, on: list[str]) -> int:
        if rows.is_empty():
            return 0
        changed.add(name)
        return lake.delete_matching(name, rows.unique(), on, run_id=run_id)

    counts: Counter = Counter()
    recompute: dict[str, list[pl.DataFrame]] = {}
    for stream, spec in STREAMS.items():
        kinds = batch_schemas(stream)
        keys = list(spec.keys)
        if stream in RECORD_RULES:
            records = lake.scan(batch_table(stream, "records"))
            located = [pl.col("event_timestamp").dt.date().alias(EVENT_DATE)] if spec.kind == "event" else []
            gone = _matching(records, RECORD_RULES[stream], matcher, stage_ids).select(*IDENTITY, *keys, *located).collect()
            if "cells" in kinds:
                # Property cells go first, by the lineage of the records about to go,
                # then by key: killed in between, the next pass finds the records again.
                counts["cells"] += _delete(batch_table(stream, "cells"), gone.select(IDENTITY), IDENTITY)
                cells = _matching(lake.scan(batch_table(stream, "cells")), RECORD_RULES[stream], matcher, stage_ids)
                counts["cells"] += _delete(batch_table(stream, "cells"), cells.select(IDENTITY).collect(), IDENTITY)
            counts["records"] += _delete(batch_table(stream, "records"), gone.select(IDENTITY), IDENTITY)
            recompute.setdefault(spec.table, []).append(gone.select(*keys, *(c.meta.output_name() for c in located)))
        if "memberships" in kinds:
            members = lake.scan(batch_table(stream, "memberships"))
            gone = _matching(members, MEMBERSHIP_RULES, matcher, stage_ids).select(*IDENTITY, "contact_id").collect()
            counts["memberships"] += _delete(batch_table(stream, "memberships"), gone.select(IDENTITY), IDENTITY)
            recompute.setdefault(STREAMS["contact"].table, []).append(gone.select("contact_id"))
        rejects = lake.scan(batch_table(stream, "rejects")).filter(pl.col("raw").is_not_null())
        if stage_ids is not None:
            rejects = rejects.filter(pl.col("_stage_id").is_in(stage_ids))
        if matcher.bounded:
            rejects = rejects.filter(pl.col("landed_at") <= matcher.latest)
        frame = rejects.select("_stage_id", "landing_date", "file", "line", "raw", "landed_at").collect().with_row_index("_i")
        hits = _reject_matches(frame.select("_i", "file", "raw", "landed_at"), matcher, headers)
        gone = frame.filter(pl.col("_i").is_in(hits.implode())).select("landing_date", "_stage_id", "file", "line")
        counts["rejects"] += _delete(batch_table(stream, "rejects"), gone, ["landing_date", "_stage_id", "file", "line"])
        recompute.setdefault(REJECTED, []).append(gone.select(stream=pl.lit(stream), landing_date="landing_date").unique())
    return counts, {t: pl.concat(frames).unique() for t, frames in recompute.items()}
