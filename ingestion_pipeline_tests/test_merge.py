"""Deterministic dedupe and merge (SPEC section 2.4) on small hand-written frames."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import polars as pl
import pytest

from ingestion_pipeline import merge
from ingestion_pipeline.warehouse import BATCH_COLUMNS, batch_schemas

UTC_TS = pl.Datetime("us", "UTC")


def t(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 5, day, hour, tzinfo=UTC)


def shuffled(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    order = list(range(frame.height))
    random.Random(seed).shuffle(order)
    return frame[order]


SEEDS = [0, 1, 2, 3, 4, 5, 6, 7]

# --- dedupe_within_file ----------------------------------------------------------------


def _file_events(rows: list[tuple[str, int, str]]) -> pl.DataFrame:
    """(event_id, _source_line, event) rows of one file."""
    return pl.DataFrame(
        {
            "event_id": [r[0] for r in rows],
            "event": [r[2] for r in rows],
            "_source_file": ["contact_event/a.jsonl"] * len(rows),
            "_source_line": [r[1] for r in rows],
            "_landed_at": [t(1)] * len(rows),
        },
        schema={"event_id": pl.String, "event": pl.String, "_source_file": pl.String, "_source_line": pl.Int64, "_landed_at": UTC_TS},
    )


FILE_ROWS = [
    ("e1", 1, "first"),
    ("e2", 2, "only"),
    ("e1", 3, "second"),
    ("e3", 4, "a"),
    ("e1", 5, "third"),
    ("e3", 6, "b"),
]


def test_dedupe_within_file_keeps_first_line_of_each_event_id():
    out = merge.dedupe_within_file(_file_events(FILE_ROWS), "event_id")
    assert out.select("event_id", "_source_line", "event").rows() == [("e1", 1, "first"), ("e2", 2, "only"), ("e3", 4, "a")]


@pytest.mark.parametrize("seed", SEEDS)
def test_dedupe_within_file_keeps_first_line_whatever_the_row_order(seed):
    out = merge.dedupe_within_file(shuffled(_file_events(FILE_ROWS), seed), "event_id").sort("_source_line")
    assert out.select("event_id", "_source_line", "event").rows() == [("e1", 1, "first"), ("e2", 2, "only"), ("e3", 4, "a")]


def test_dedupe_within_file_without_duplicates_keeps_every_row():
    rows = [("e3", 1, "x"), ("e1", 2, "y"), ("e2", 3, "z")]
    out = merge.dedupe_within_file(_file_events(rows), "event_id")
    assert out.select("event_id", "_source_line").rows() == [("e3", 1), ("e1", 2), ("e2", 3)]


def test_dedupe_within_file_of_empty_frame_is_empty():
    out = merge.dedupe_within_file(_file_events([]), "event_id")
    assert out.height == 0
    assert out.columns == ["event_id", "event", "_source_file", "_source_line", "_landed_at"]


# --- current_events ------------------------------------------------------------------


def _events(rows: list[tuple[str, datetime, str, int, str]]) -> pl.DataFrame:
    """(event_id, _landed_at, _source_file, _source_line, event) rows of several files."""
    return pl.DataFrame(
        {
            "event_id": [r[0] for r in rows],
            "event": [r[4] for r in rows],
            "_landed_at": [r[1] for r in rows],
            "_source_file": [r[2] for r in rows],
            "_source_line": [r[3] for r in rows],
        },
        schema={"event_id": pl.String, "event": pl.String, "_landed_at": UTC_TS, "_source_file": pl.String, "_source_line": pl.Int64},
    )


EVENT_ROWS = [
    # e1: three files landed at different times -> the latest landed wins
    ("e1", t(1), "contact_event/a.jsonl", 1, "e1 from day 1"),
    ("e1", t(3), "contact_event/c.jsonl", 9, "e1 from day 3"),
    ("e1", t(2), "contact_event/z.jsonl", 1, "e1 from day 2"),
    # e2: same landed_at, different files -> the later path wins
    ("e2", t(2), "contact_event/b.jsonl", 5, "e2 from b"),
    ("e2", t(2), "contact_event/a.jsonl", 7, "e2 from a"),
    # e3: later-landed file wins even with a smaller line number and an earlier path
    ("e3", t(4), "contact_event/a.jsonl", 1, "e3 new"),
    ("e3", t(1), "contact_event/z.jsonl", 100, "e3 old"),
    # e4: a single copy
    ("e4", t(1), "contact_event/a.jsonl", 2, "e4 only"),
]
EXPECTED_EVENTS = [
    ("e1", "e1 from day 3", t(3), "contact_event/c.jsonl", 9),
    ("e2", "e2 from b", t(2), "contact_event/b.jsonl", 5),
    ("e3", "e3 new", t(4), "contact_event/a.jsonl", 1),
    ("e4", "e4 only", t(1), "contact_event/a.jsonl", 2),
]


def test_current_events_keeps_copy_from_latest_landed_at_then_source_file():
    out = merge.current_events(_events(EVENT_ROWS).lazy(), "event_id").collect()
    assert out.select("event_id", "event", "_landed_at", "_source_file", "_source_line").rows() == EXPECTED_EVENTS


@pytest.mark.parametrize("seed", SEEDS)
def test_current_events_is_independent_of_input_row_order(seed):
    out = merge.current_events(shuffled(_events(EVENT_ROWS), seed).lazy(), "event_id").collect()
    assert out.select("event_id", "event", "_landed_at", "_source_file", "_source_line").rows() == EXPECTED_EVENTS


def test_current_events_within_same_file_later_line_is_newer():
    rows = [("e1", t(1), "f.jsonl", 8, "line 8"), ("e1", t(1), "f.jsonl", 3, "line 3")]
    out = merge.current_events(_events(rows).lazy(), "event_id").collect()
    assert out.select("event", "_source_line").rows() == [("line 8", 8)]


def test_current_events_uses_landed_at_not_line_or_path():
    rows = [("e1", t(1, 12), "z.jsonl", 999, "older"), ("e1", t(1, 13), "a.jsonl", 1, "newer")]
    out = merge.current_events(_events(rows).lazy(), "event_id").collect()
    assert out["event"].to_list() == ["newer"]


def test_current_events_output_is_sorted_by_key():
    rows = [("e9", t(1), "f", 1, "x"), ("e10", t(1), "f", 2, "y"), ("e1", t(1), "f", 3, "z")]
    out = merge.current_events(_events(rows).lazy(), "event_id").collect()
    assert out["event_id"].to_list() == ["e1", "e10", "e9"]


# --- current_entities ------------------------------------------------------------------

RECORD_SCHEMA = {
    "contact_id": pl.String,
    "email": pl.String,
    "properties": pl.String,
    "_landed_at": UTC_TS,
    "_source_file": pl.String,
    "_source_line": pl.Int64,
}
CELL_SCHEMA = {k: v for k, v in batch_schemas("contact")["cells"].items() if k not in BATCH_COLUMNS}

# Each version of a contact: (contact_id, email, properties object, landed_at, file, line)
VERSIONS = [
    ("c1", "old@x.com", {"plan": "free", "seats": 1, "region": "eu"}, t(1), "contact/a.jsonl", 1),
    # newer file: plan changes, seats removed (JSON null), region absent -> unchanged
    ("c1", "new@x.com", {"plan": "pro", "seats": None, "tags": ["a", "b"]}, t(3), "contact/c.jsonl", 4),
    # middle file: its values lose to day 3 but win over day 1
    ("c1", "mid@x.com", {"plan": "team", "region": "us", "owner": {"id": 7}}, t(2), "contact/b.jsonl", 2),
    # c2: same landed_at, later line in the same file wins; a later path wins over an earlier one
    ("c2", "c2a@x.com", {"k": "line 5"}, t(1), "contact/a.jsonl", 5),
    ("c2", "c2b@x.com", {"k": "line 2", "other": True}, t(1), "contact/a.jsonl", 2),
    ("c2", "c2c@x.com", {"z": 0}, t(1), "contact/0.jsonl", 9),
    # c3: every property removed -> {}
    ("c3", "c3@x.com", {"gone": 1}, t(1), "contact/a.jsonl", 3),
    ("c3", "c3@x.com", {"gone": None}, t(2), "contact/a.jsonl", 1),
    # c4: removed, then set again later
    ("c4", "c4@x.com", {"flag": None}, t(1), "contact/a.jsonl", 6),
    ("c4", "c4@x.com", {"flag": "back"}, t(2), "contact/b.jsonl", 1),
    # c5: no properties at all
    ("c5", "c5@x.com", {}, t(2), "contact/b.jsonl", 7),
]

EXPECTED_ENTITIES = [
    # contact_id, email, properties (JSON text, keys sorted), first_seen_at, updated_at
    ("c1", "new@x.com", {"owner": {"id": 7}, "plan": "pro", "region": "us", "tags": ["a", "b"]}, t(1), t(3)),
    ("c2", "c2a@x.com", {"k": "line 5", "other": True, "z": 0}, t(1), t(1)),
    ("c3", "c3@x.com", {}, t(1), t(2)),
    ("c4", "c4@x.com", {"flag": "back"}, t(1), t(2)),
    ("c5", "c5@x.com", {}, t(2), t(2)),
]


def _records(versions) -> pl.DataFrame:
    return pl.DataFrame(
        [(cid, email, json.dumps(props), landed, f, line) for cid, email, props, landed, f, line in versions],
        schema=RECORD_SCHEMA,
        orient="row",
    )


def _cells(versions) -> pl.DataFrame:
    rows = [
        (cid, landed, f, line, json.dumps(key), json.dumps(value, separators=(",", ":")), pos)
        for cid, _email, props, landed, f, line in versions
        for pos, (key, value) in enumerate(props.items())
    ]
    return pl.DataFrame(rows, schema=CELL_SCHEMA, orient="row")


def _entities(records: pl.DataFrame, cells: pl.DataFrame) -> pl.DataFrame:
    return merge.current_entities(records.lazy(), cells.lazy(), "contact_id").collect()


def _expected_text(props: dict) -> str:
    return json.dumps(props, sort_keys=True, separators=(",", ":"))


def test_current_entities_merges_properties_key_by_key_newest_wins():
    out = _entities(_records(VERSIONS), _cells(VERSIONS))
    got = [
        (r["contact_id"], r["email"], json.loads(r["properties"]), r["first_seen_at"], r["updated_at"]) for r in out.iter_rows(named=True)
    ]
    assert got == EXPECTED_ENTITIES


def test_current_entities_properties_text_has_sorted_keys():
    out = _entities(_records(VERSIONS), _cells(VERSIONS))
    assert out["properties"].to_list() == [_expected_text(e[2]) for e in EXPECTED_ENTITIES]


def test_current_entities_json_null_removes_key_and_absent_key_is_unchanged():
    versions = [
        ("c1", "a@x.com", {"keep": 1, "drop": 2}, t(1), "contact/a.jsonl", 1),
        ("c1", "a@x.com", {"drop": None}, t(2), "contact/b.jsonl", 1),
    ]
    out = _entities(_records(versions), _cells(versions))
    assert out["properties"].to_list() == ['{"keep":1}']


def test_current_entities_string_null_is_a_value_not_a_removal():
    versions = [
        ("c1", "a@x.com", {"k": 1}, t(1), "contact/a.jsonl", 1),
        ("c1", "a@x.com", {"k": "null"}, t(2), "contact/b.jsonl", 1),
    ]
    out = _entities(_records(versions), _cells(versions))
    assert out["properties"].to_list() == ['{"k":"null"}']


def test_current_entities_nested_values_are_replaced_not_merged():
    versions = [
        ("c1", "a@x.com", {"o": {"a": 1, "b": 2}}, t(1), "contact/a.jsonl", 1),
        ("c1", "a@x.com", {"o": {"c": 3}}, t(2), "contact/b.jsonl", 1),
    ]
    out = _entities(_records(versions), _cells(versions))
    assert json.loads(out["properties"][0]) == {"o": {"c": 3}}


def test_current_entities_top_level_fields_and_lineage_come_from_newest_record():
    out = _entities(_records(VERSIONS), _cells(VERSIONS))
    assert out.select("contact_id", "email", "_landed_at", "_source_file", "_source_line").rows() == [
        ("c1", "new@x.com", t(3), "contact/c.jsonl", 4),
        ("c2", "c2a@x.com", t(1), "contact/a.jsonl", 5),
        ("c3", "c3@x.com", t(2), "contact/a.jsonl", 1),
        ("c4", "c4@x.com", t(2), "contact/b.jsonl", 1),
        ("c5", "c5@x.com", t(2), "contact/b.jsonl", 7),
    ]


@pytest.mark.parametrize("seed", SEEDS)
def test_current_entities_is_independent_of_input_row_order(seed):
    records = shuffled(_records(VERSIONS), seed)
    cells = shuffled(_cells(VERSIONS), seed + 100)
    out = _entities(records, cells)
    assert out.select("contact_id", "email", "properties", "first_seen_at", "updated_at").rows() == [
        (cid, email, _expected_text(props), first, last) for cid, email, props, first, last in EXPECTED_ENTITIES
    ]


def test_current_entities_with_no_cells_gives_empty_properties():
    versions = [("c1", "a@x.com", {}, t(1), "contact/a.jsonl", 1)]
    out = _entities(_records(versions), _cells(versions))
    assert out.select("contact_id", "properties", "first_seen_at", "updated_at").rows() == [("c1", "{}", t(1), t(1))]


def test_current_entities_output_columns():
    out = _entities(_records(VERSIONS), _cells(VERSIONS))
    assert set(out.columns) == {
        "contact_id",
        "email",
        "properties",
        "_landed_at",
        "_source_file",
        "_source_line",
        "first_seen_at",
        "updated_at",
    }
    assert out.schema["first_seen_at"] == UTC_TS
    assert out.schema["updated_at"] == UTC_TS
