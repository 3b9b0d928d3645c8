"""Property test: random mixes of good and bad records, in 1-4 files of one stream
(JSON lines, gzipped JSON lines or CSV) landed on one day at different times, always
reconcile (SPEC 2.5) and always yield the newest version of every good record (SPEC 2.4).

The model below computes the expected ledger rows, rejected lines and table contents
from the generated records alone, independently of the pipeline.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion_pipeline.landing import LocalLandingStore
from ingestion_pipeline.pipeline import build_table, ingest_partition
from ingestion_pipeline.settings import Settings
from ingestion_pipeline.warehouse import Warehouse

from .conftest import DAY1

UTC = UTC
DAY_START = datetime(DAY1.year, DAY1.month, DAY1.day, tzinfo=UTC)

CONTACT_IDS = ["c1", "c2", "c3", "C4", "c-5"]
EMAILS = ["ann@example.com", "Bob@Example.COM", "carol@example.org", "dave@mail.example.net", " eve@example.com "]
PLANS = ["free", "pro", "team"]
EVENT_IDS = ["e1", "e2", "e3", "e4", "e5"]
EVENT_NAMES = ["login", "signup", "page view"]
# (as landed, as the table holds it); all before the day's first landing, after 1990.
TIMESTAMPS = [
    ("2026-11-19T10:00:00Z", datetime(2026, 11, 19, 10, tzinfo=UTC)),
    (1763546400, datetime(2025, 11, 19, 10, tzinfo=UTC)),
    ("2026-11-19 08:30:00", datetime(2026, 11, 19, 8, 30, tzinfo=UTC)),
    ("2026-11-19T12:00:00+02:00", datetime(2026, 11, 19, 10, tzinfo=UTC)),
]
JUNK_IDS = ["null", "undefined", "0", "-1", "anonymous", "None", " NULL "]
BAD_EMAILS = ["not-an-email", "a@b", "@example.com", "ann@@example.com"]
BAD_TIMESTAMPS = ["yesterday", "2040-01-01T00:00:00Z", "1980-06-01T00:00:00Z", "2026-02-30"]
NOT_OBJECTS = ["[1, 2]", '"hello"', "42", "null", "true"]
NOT_OBJECT_PROPERTIES = [[1, 2], "plan=pro", 5, True]

BAD_KINDS = {
    "contact": ["invalid_json", "missing_field", "junk_id", "invalid_email", "not_an_object", "properties_not_object"],
    "contact_event": ["invalid_json", "missing_field", "junk_id", "bad_timestamp", "not_an_object", "properties_not_object"],
}
# The rule each kind of bad record is rejected under, per format.
RULES = {
    "invalid_json": {"jsonl": {"invalid_json"}, "csv": {"wrong_field_count"}},  # CSV: a row with an extra field
    "not_an_object": {"jsonl": {"not_an_object"}, "csv": {"wrong_field_count"}},  # CSV: a row with a missing field
    "missing_field": {"jsonl": {"missing_field"}, "csv": {"missing_field"}},
    "junk_id": {"jsonl": {"junk_identifier"}, "csv": {"junk_identifier"}},
    "invalid_email": {"jsonl": {"invalid_email"}, "csv": {"invalid_email"}},
    "bad_timestamp": {"jsonl": {"invalid_timestamp", "timestamp_out_of_range"}, "csv": {"invalid_timestamp", "timestamp_out_of_range"}},
    "properties_not_object": {"jsonl": {"invalid_type"}, "csv": {"invalid_type"}},
}
FOLDER = {"contact": "contact", "contact_event": "contact_event"}
REQUIRED = {
    "contact": ["contact_id", "email", "contact_properties"],
    "contact_event": ["event_id", "contact_id", "event", "event_timestamp", "event_properties"],
}
CSV_HEADER = {
    "contact": ["contact_id", "email", "contact_properties", "plan"],
    "contact_event": ["event_id", "contact_id", "event", "event_timestamp", "event_properties"],
}


@dataclass
class Rec:
    stream: str
    kind: str  # "good" or one of BAD_KINDS
    fields: dict  # the API-shaped record (before the defect for bad kinds)
    detail: object = None  # what the defect is (a key, a value...)
    plan: str | None = None  # contacts: the "plan" property
    ts: datetime | None = None  # events: the normalised timestamp

    @property
    def good(self) -> bool:
        return self.kind == "good"


@dataclass
class LandedSpec:
    path: str
    fmt: str  # "jsonl", "jsonl.gz" or "csv"
    landed_at: datetime
    records: list[Rec] = field(default_factory=list)

    @property
    def base_format(self) -> str:
        return "csv" if self.fmt == "csv" else "jsonl"

    def line_of(self, index: int) -> int:
        return index + (2 if self.fmt == "csv" else 1)  # a CSV header is line 1


# -- strategies ---------------------------------------------------------------------


@st.composite
def base_record(draw, stream: str) -> Rec:
    if stream == "contact":
        plan = draw(st.sampled_from(PLANS))
        fields = {
            "contact_id": draw(st.sampled_from(CONTACT_IDS)),
            "email": draw(st.sampled_from(EMAILS)),
            "contact_properties": {"plan": plan},
        }
        return Rec(stream, "good", fields, plan=plan)
    raw_ts, ts = draw(st.sampled_from(TIMESTAMPS))
    fields = {
        "event_id": draw(st.sampled_from(EVENT_IDS)),
        "contact_id": draw(st.sampled_from(CONTACT_IDS)),
        "event": draw(st.sampled_from(EVENT_NAMES)),
        "event_timestamp": raw_ts,
        "event_properties": {},
    }
    return Rec(stream, "good", fields, ts=ts)


@st.composite
def record(draw, stream: str, fmt: str) -> Rec:
    rec = draw(base_record(stream))
    if draw(st.booleans()):
        return rec
    rec.kind = kind = draw(st.sampled_from(BAD_KINDS[stream]))
    if kind == "missing_field":
        # In CSV the properties column is optional: an empty cell is no defect there.
        candidates = REQUIRED[stream] if fmt != "csv" else [k for k in REQUIRED[stream] if not k.endswith("properties")]
        rec.detail = draw(st.sampled_from(candidates))
    elif kind == "junk_id":
        key = "contact_id" if stream == "contact" else draw(st.sampled_from(["event_id", "contact_id"]))
        rec.detail = (key, draw(st.sampled_from(JUNK_IDS)))
    elif kind == "invalid_email":
        rec.detail = draw(st.sampled_from(BAD_EMAILS))
    elif kind == "bad_timestamp":
        rec.detail = draw(st.sampled_from(BAD_TIMESTAMPS))
    elif kind == "not_an_object":
        rec.detail = draw(st.sampled_from(NOT_OBJECTS))
    elif kind == "properties_not_object":
        rec.detail = draw(st.sampled_from(NOT_OBJECT_PROPERTIES))
    return rec


@st.composite
def landed_files(draw, stream: str) -> list[LandedSpec]:
    n = draw(st.integers(1, 4))
    minutes = draw(st.lists(st.integers(0, 24 * 60 - 1), min_size=n, max_size=n, unique=True))
    names = draw(st.permutations(range(n)))  # path order unrelated to landing order
    files = []
    for i in range(n):
        fmt = draw(st.sampled_from(["jsonl", "jsonl.gz", "csv"]))
        base = "csv" if fmt == "csv" else "jsonl"
        records = draw(st.lists(record(stream, base), min_size=1, max_size=8))
        files.append(
            LandedSpec(
                path=f"{FOLDER[stream]}/2026/11/20/part-{names[i]}.{fmt}",
                fmt=fmt,
                landed_at=DAY_START + timedelta(minutes=minutes[i], seconds=17),
                records=records,
            )
        )
    return files


# -- rendering ----------------------------------------------------------------------


def _with_defect(rec: Rec) -> dict:
    fields = dict(rec.fields)
    if rec.kind == "missing_field":
        del fields[rec.detail]
    elif rec.kind == "junk_id":
        key, value = rec.detail
        fields[key] = value
    elif rec.kind == "invalid_email":
        fields["email"] = rec.detail
    elif rec.kind == "bad_timestamp":
        fields["event_timestamp"] = rec.detail
    elif rec.kind == "properties_not_object":
        fields["contact_properties" if rec.stream == "contact" else "event_properties"] = rec.detail
    return fields


def jsonl_line(rec: Rec) -> str:
    if rec.kind == "not_an_object":
        return rec.detail
    text = json.dumps(_with_defect(rec))
    if rec.kind == "invalid_json":
        return text[:-1]  # the closing brace is missing
    return text


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)) or (isinstance(value, str) and any(ch in value for ch in ',"\n')):
        text = value if isinstance(value, str) else json.dumps(value)
        return '"' + text.replace('"', '""') + '"'
    return str(value)


def csv_line(rec: Rec) -> str:
    fields = _with_defect(rec)
    if rec.stream == "contact":
        props = fields.get("contact_properties")
        # A good record's properties travel in the non-standard "plan" column.
        cells = [fields.get("contact_id"), fields.get("email"), props if rec.kind == "properties_not_object" else None, rec.plan]
    else:
        props = fields.get("event_properties")
        cells = [fields.get(k) for k in CSV_HEADER["contact_event"][:4]] + [props if rec.kind == "properties_not_object" else None]
    row = [_csv_cell(v) for v in cells]
    if rec.kind == "invalid_json":
        row.append("extra")
    elif rec.kind == "not_an_object":
        row = row[:2]
    return ",".join(row)


def render(spec: LandedSpec, stream: str) -> bytes:
    if spec.base_format == "csv":
        text = ",".join(CSV_HEADER[stream]) + "\n" + "".join(csv_line(r) + "\n" for r in spec.records)
    else:
        text = "".join(jsonl_line(r) + "\n" for r in spec.records)
    data = text.encode()
    return gzip.compress(data, mtime=0) if spec.fmt.endswith(".gz") else data


# -- the model ----------------------------------------------------------------------


def expected_ledger(spec: LandedSpec, stream: str) -> tuple:
    good = [r for r in spec.records if r.good]
    bad = len(spec.records) - len(good)
    duplicate = len(good) - len({r.fields["event_id"] for r in good}) if stream == "contact_event" else 0
    loaded = len(good) - duplicate
    status = "rejected" if loaded == 0 else "partially_loaded" if bad else "loaded"
    return status, len(spec.records), loaded, bad, duplicate


def expected_table(files: list[LandedSpec], stream: str) -> dict:
    ordered = sorted(files, key=lambda f: (f.landed_at, f.path))
    current: dict = {}
    for f in ordered:  # older first: a later version overwrites
        seen_in_file: set = set()
        for i, r in enumerate(f.records):
            if not r.good:
                continue
            if stream == "contact":
                current[r.fields["contact_id"]] = (r.fields["email"].strip().lower(), {"plan": r.plan})
            else:
                eid = r.fields["event_id"]
                if eid in seen_in_file:  # within a file the first occurrence is kept
                    continue
                seen_in_file.add(eid)
                current[eid] = (r.fields["contact_id"], r.fields["event"], r.ts, f.path, f.line_of(i))
    return current


# -- the test -----------------------------------------------------------------------


def _check(stream: str, files: list[LandedSpec]) -> None:
    with tempfile.TemporaryDirectory(prefix="reconcile-") as tmp:
        root = Path(tmp) / "landing"
        contents = {}
        for f in files:
            data = render(f, stream)
            contents[f.path] = data
            path = root / f.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.utime(path, (f.landed_at.timestamp(), f.landed_at.timestamp()))
        # Identical content would (rightly) be skipped as a duplicate file: not this property.
        if len(set(contents.values())) < len(contents):
            return
        cfg = Settings(landing_url=str(root), warehouse_dir=Path(tmp) / "warehouse")
        report = ingest_partition(cfg, LocalLandingStore(root), stream, DAY1, run_id="property")
        build_table(cfg, stream)
        assert report.errors == []
        con = Warehouse(cfg.warehouse_dir).connect()

        ledger = {
            r[0]: r[1:]
            for r in con.sql("select file, status, rows_read, rows_loaded, rows_rejected, rows_duplicate from ingested_files").fetchall()
        }
        assert set(ledger) == {f.path for f in files}
        rejected = con.sql("select file, line, rule from rejected_records").fetchall()
        for f in files:
            status, read, loaded, rejected_n, duplicate = ledger[f.path]
            assert read == loaded + rejected_n + duplicate, f.path
            assert ledger[f.path] == expected_ledger(f, stream), (f.path, f.records)
            got = sorted((line, rule) for file, line, rule in rejected if file == f.path)
            want = [(f.line_of(i), r.kind) for i, r in enumerate(f.records) if not r.good]
            assert [line for line, _ in got] == [line for line, _ in want], f.path
            for (line, rule), (_, kind) in zip(got, want):
                assert rule in RULES[kind][f.base_format], (f.path, line, kind, rule)

        expected = expected_table(files, stream)
        if stream == "contact":
            rows = con.sql("select contact_id, email, properties from contacts").fetchall()
            assert {cid: (email, json.loads(props)) for cid, email, props in rows} == expected
        else:
            rows = con.sql("select event_id, contact_id, event, event_timestamp, _source_file, _source_line from contact_events").fetchall()
            assert {r[0]: tuple(r[1:]) for r in rows} == expected


PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    database=None,  # leave no .hypothesis folder in the repository
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("stream", ["contact", "contact_event"])
def test_random_good_and_bad_records_reconcile_and_newest_version_wins(stream):
    @PROPERTY_SETTINGS
    @given(files=landed_files(stream))
    def check(files):
        _check(stream, files)

    check()
