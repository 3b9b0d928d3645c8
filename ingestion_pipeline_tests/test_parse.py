"""parse.JsonParser output, record by record (SPEC sections 1 and 2.1): the fast
path (one list-form extraction, texts and JSON types derived in polars) and the
general query must give the same frame whatever mix of records a batch holds."""

from __future__ import annotations

import json

import polars as pl
import pytest

from ingestion_pipeline import parse
from ingestion_pipeline.parse import JsonParser
from ingestion_pipeline.streams import FEEDS

LINE_SCHEMA = {"line": pl.Int64, "raw": pl.String, "error": pl.String, "message": pl.String}
EV = {
    "event_id": "e1",
    "contact_id": "c1",
    "event": "signup",
    "event_timestamp": 1714550400,
    "event_properties": {"plan": "pro", "seats": 2},
}


def compact(rec: dict) -> str:
    return json.dumps(rec, separators=(",", ":"))


def ev(**changes) -> str:
    return compact({**EV, **changes})


def lines_frame(raws: list[str | None], lines: list[int] | None = None, errors: dict | None = None) -> pl.DataFrame:
    errors = errors or {}
    lines = lines or list(range(1, len(raws) + 1))
    return pl.DataFrame(
        {
            "line": lines,
            "raw": raws,
            "error": [errors.get(i, (None, None))[0] for i in range(len(raws))],
            "message": [errors.get(i, (None, None))[1] for i in range(len(raws))],
        },
        schema=LINE_SCHEMA,
    )


@pytest.fixture(scope="module")
def parsers():
    made: dict[str, JsonParser] = {}

    def get(feed: str, fast: bool = True) -> JsonParser:
        key = f"{feed}/{fast}"
        if key not in made:
            made[key] = JsonParser(FEEDS[feed])
            made[key]._fast = made[key]._fast and fast
        return made[key]

    yield get
    for parser in made.values():
        parser.close()


def row(parsed: pl.DataFrame, line: int) -> dict:
    return parsed.filter(pl.col("line") == line).row(0, named=True)


# Records that leave the fast path for the general query, each for its own reason,
# and records that stay on it; every one in a batch of plain records.
TRICKY = [
    ev(),
    " " + ev() + " ",  # whitespace: its keys are counted
    json.dumps(json.loads(ev())),  # ", " and ": " separators
    ev(event_id='a"b'),  # escaped string
    ev(event_id="\u00e9\u4e2d"),
    '{"event_id":"\\u00e9","contact_id":"c1","event":"x","event_timestamp":1,"event_properties":{}}',
    ev(event_id="event_id"),  # a value that is a known key's name
    ev(event_id='x"event_id'),  # ... or ends with it after an escaped quote
    ev(event_properties={"event": 1}),  # a known key's name inside the properties
    ev(event_properties={"a": ["contact_id"]}),
    ev().replace('{"plan":"pro","seats":2}', '{"a":1,"a":2}'),  # a key repeated in the properties
    ev(event_properties={"price": 1e5}),  # a real is written longer than given
    ev(event_properties={"v": "1.2"}),
    ev(event_properties=[1]),
    ev(event_properties="text"),
    ev(event_properties=None),
    ev(event_properties={}),
    ev(event_timestamp=0),
    ev(event_timestamp=-5),
    ev(event_timestamp=1.5),
    ev(event_timestamp=18446744073709551615),
    ev(event_timestamp=18446744073709551616),
    ev(event_timestamp=-9223372036854775808),
    ev(event_timestamp=None),
    ev(event_timestamp=True),
    ev(contact_id={"id": 1}),
    ev(contact_id=[1]),
    ev(event_type="contact_event"),
    ev(utm="x"),  # drift
    ev(plan="free"),  # drift shared with the properties
    ev()[:-1] + ',"":0}',
    ev()[:-1] + ',"event":"again"}',  # a known key repeated
    '{"event":"first",' + ev()[1:],
    ev()[:-1] + ',"x":1,"x":2}',  # an unknown key repeated
    ev().replace('"event_id"', '"\\u0065vent_id"'),  # an escaped key
    ev().replace('"event_id"', '"\\u0065vent_id"')[:-1] + ',"y":1}',
    ev().replace('"event_timestamp":1714550400', '"event_timestamp":1e5'),
    ev().replace('"event_timestamp":1714550400', '"event_timestamp":-0'),
    ev().replace('"event_timestamp":1714550400', '"event_timestamp":NaN'),
    ev().replace('"seats":2}', '"seats":2,}'),  # trailing comma
    "[" + ev() + "]",
    "42",
    "{broken",
    "{}",
]


@pytest.mark.parametrize("batch", ["tricky", "each_alone", "shuffled_lines"])
def test_fast_path_and_general_query_give_the_same_frame(parsers, batch):
    if batch == "each_alone":
        frames = [lines_frame([raw]) for raw in TRICKY]
    elif batch == "shuffled_lines":
        frames = [lines_frame(TRICKY, lines=list(range(len(TRICKY), 0, -1)))]
    else:
        frames = [lines_frame([ev(event_id=f"p{i}") for i in range(5)] + TRICKY + [ev(event_id="last")])]
    for frame in frames:
        fast = parsers("contact_event").parse(frame)
        general = parsers("contact_event", fast=False).parse(frame)
        assert fast.schema == general.schema
        assert fast.equals(general), frame["raw"].to_list()


def test_a_record_parses_the_same_alone_or_in_a_batch(parsers):
    parser = parsers("contact_event")
    batch = parser.parse(lines_frame(TRICKY))
    for i, raw in enumerate(TRICKY, 1):
        alone = parser.parse(lines_frame([raw]))
        assert batch.filter(pl.col("line") == i).drop("line").equals(alone.drop("line")), raw


@pytest.mark.parametrize(
    ("value", "text", "jtype"),
    [
        ("7", "7", "UBIGINT"),
        ("-5", "-5", "BIGINT"),
        ("0", "0", "UBIGINT"),
        ("-0", "0", "BIGINT"),  # written 0, typed signed: left to DuckDB
        ("1.50", "1.5", "DOUBLE"),
        ("1e5", "100000.0", "DOUBLE"),
        ("18446744073709551615", "18446744073709551615", "UBIGINT"),
        ("18446744073709551616", "18446744073709551616", "DOUBLE"),
        ("-9223372036854775808", "-9223372036854775808", "BIGINT"),
        ("true", "true", "BOOLEAN"),
        ("null", None, "NULL"),
        ('"a\\"b"', 'a"b', "VARCHAR"),
        ('"\\u00e9\\/"', "\u00e9/", "VARCHAR"),
        ('"x"', "x", "VARCHAR"),
        ('{"k": [1, 2.50]}', '{"k":[1,2.5]}', "OBJECT"),
        ("[1, {}]", "[1,{}]", "ARRAY"),
    ],
)
def test_field_text_and_json_type_whatever_the_rest_of_the_batch(parsers, value, text, jtype):
    odd = '{"event_id":' + value + ',"contact_id":"c1","event":"x","event_timestamp":1,"event_properties":{}}'
    for raws in ([odd], [ev()] * 3 + [odd] + [ev()] * 3, [odd] * 4):
        parsed = parsers("contact_event").parse(lines_frame(raws))
        got = row(parsed, raws.index(odd) + 1)
        assert (got["event_id"], got["event_id__type"], got["error"]) == (text, jtype, None)


def test_only_the_records_that_need_it_take_the_general_query(parsers, monkeypatch):
    parser = parsers("contact_event")
    general = []
    extract = parser._extract
    monkeypatch.setattr(parser, "_extract", lambda docs: general.append(docs["doc"].to_list()) or extract(docs))
    raws = [ev(event_id=f"e{i}") for i in range(10)]
    raws[3] = ev(event_id="e3", utm="x")
    raws[7] = ev(event_id='e"7')
    parsed = parser.parse(lines_frame(raws))
    assert general == [[raws[3], raws[7]]]
    assert parsed["event_id"].to_list() == [f"e{i}" if i != 7 else 'e"7' for i in range(10)]
    assert parsed["drift"].to_list() == [["utm"] if i == 3 else [] for i in range(10)]
    assert json.loads(parsed["properties"][3]) == {"utm": "x", "plan": "pro", "seats": 2}
    assert parsed["properties"][0] == '{"plan":"pro","seats":2}'


def test_drift_and_repeated_keys_in_one_batch(parsers):
    raws = [
        '{"contact_id":"c1","email":"a@x.com","contact_properties":{"plan":"pro"}}',
        '{"contact_id":"c2","email":"a@x.com","contact_properties":{"plan":"pro"},"utm":"x"}',
        '{"contact_id":"null","contact_id":"c3","email":"a@x.com","contact_properties":{}}',
        '{"contact_id":"c4","email":"a@x.com","email":"b@x.com","contact_properties":{"a":1,"a":2}}',
        '{"contact_id":"c5","email":"a@x.com","contact_properties":{"a":1,"a":2}}',
        '{"contact_id":"c6","email":"a@x.com","contact_properties":{},"utm":"x","utm":"y"}',
        '{"contact_id":"c7","email":"a@x.com","contact_properties":{"plan":"pro"},"utm":"x","email":"c@x.com"}',
        "{broken",
    ]
    parsed = parsers("contact").parse(lines_frame(raws))
    got = parsed.select("contact_id", "email", "properties", "drift").rows()
    assert got[:7] == [
        ("c1", "a@x.com", '{"plan":"pro"}', []),
        ("c2", "a@x.com", '{"utm":"x","plan":"pro"}', ["utm"]),
        ("c3", "a@x.com", "{}", []),  # last key wins
        ("c4", "b@x.com", '{"a":2}', []),
        # No known key repeats: the properties keep their copies (the last wins
        # when their cells are written).
        ("c5", "a@x.com", '{"a":1,"a":2}', []),
        ("c6", "a@x.com", '{"utm":"y"}', ["utm"]),
        ("c7", "c@x.com", '{"utm":"x","plan":"pro"}', ["utm"]),
    ]
    assert parsed["error"].to_list() == [None] * 7 + ["invalid_json"]


def test_merged_properties_keep_record_order_then_properties_order(parsers):
    # The exact merge (a key in both, or a null in the properties): unknown fields
    # in record order, then the other properties; the properties' value wins.
    raws = [
        ev(zeta=1, plan="free", alpha=2),
        ev(event_properties={"b": None, "plan": "pro"}, utm="x"),
    ] * 20
    parsed = parsers("contact_event").parse(lines_frame(raws))
    assert set(parsed["properties"][0::2]) == {'{"zeta":1,"plan":"pro","alpha":2,"seats":2}'}
    assert set(parsed["properties"][1::2]) == {'{"utm":"x","b":null,"plan":"pro"}'}


def test_rows_keep_their_lines_across_scan_chunks(parsers):
    n = 2 * parse.SCAN_CHUNK_ROWS + 123
    raws = []
    for i in range(n):
        if i % 997 == 5:
            raws.append(ev(event_id=f"e{i}", utm=str(i)))
        elif i % 1009 == 7:
            raws.append("{broken " + str(i))
        elif i % 1013 == 9:
            raws.append(ev(event_id=f"e{i}")[:-1] + ',"event":"again"}')
        elif i % 1019 == 11:
            raws.append(ev(event_id=f"e{i}", event_timestamp=float("nan")))
        else:
            raws.append(ev(event_id=f"e{i}", event_timestamp=1714550400 + i))
    parsed = parsers("contact_event").parse(lines_frame(raws))
    assert parsed["line"].to_list() == list(range(1, n + 1))
    assert parsed["raw"].to_list() == raws
    ok = parsed.filter(pl.col("error").is_null())
    assert ok["event_id"].to_list() == [f"e{line - 1}" for line in ok["line"]]
    drifted = parsed.filter(pl.col("drift").list.len() > 0)
    assert drifted["drift"].to_list() == [["utm"]] * drifted.height
    assert [json.loads(p)["utm"] for p in drifted["properties"]] == [str(line - 1) for line in drifted["line"]]
    assert set(parsed.filter(pl.col("event_id").is_null())["error"]) == {"invalid_json"}
    assert parsed.filter(pl.col("raw").str.contains('"event":"again"'))["event"].unique().to_list() == ["again"]


def test_unsorted_input_comes_back_in_line_order(parsers):
    raws = [ev(event_id="c"), "{broken", ev(event_id="a", utm="x"), ev(event_id="b")]
    parsed = parsers("contact_event").parse(lines_frame(raws, lines=[30, 10, 20, 40]))
    assert parsed.select("line", "event_id", "error").rows() == [
        (10, None, "invalid_json"),
        (20, "a", None),
        (30, "c", None),
        (40, "b", None),
    ]


def test_failed_records_have_no_fields(parsers):
    raws = [ev(), "[1]", ev(event_properties={"x": float("inf")}), ev()[:-1] + ",}", ev()]
    errors = {4: ("record_too_large", "too large")}
    parsed = parsers("contact_event").parse(lines_frame(raws, errors=errors))
    assert parsed["error"].to_list() == [None, "not_an_object", "invalid_json", "invalid_json", "record_too_large"]
    failed = parsed.filter(pl.col("error").is_not_null()).drop("line", "raw", "error", "message")
    assert all(failed[c].null_count() == failed.height for c in failed.columns)
