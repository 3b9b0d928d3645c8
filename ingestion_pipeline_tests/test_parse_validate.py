"""JSON parsing (parse.JsonParser) and validation (validate.Validator): SPEC sections 1 and 2.1-2.3."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from ingestion_pipeline.parse import JsonParser
from ingestion_pipeline.streams import STREAMS
from ingestion_pipeline.validate import Validator

LANDED = datetime(2024, 6, 1, tzinfo=UTC)
LINE_SCHEMA = {"line": pl.Int64, "raw": pl.String, "error": pl.String, "message": pl.String}

BASE = {
    "contact": {"contact_id": "c1", "email": "a@b.com", "contact_properties": {"plan": "pro"}},
    "account": {"account_id": "a1", "domain": "acme.com", "account_properties": {"tier": 1}},
    "contact_event": {
        "event_id": "e1",
        "contact_id": "c1",
        "event": "signup",
        "event_timestamp": "2024-05-01T00:00:00Z",
        "event_properties": {"src": "web"},
    },
    "account_event": {
        "event_id": "e1",
        "account_id": "a1",
        "event": "paid",
        "event_timestamp": "2024-05-01T00:00:00Z",
        "event_properties": {"amount": 10},
    },
}
DROP = object()


def record(stream: str, **changes) -> str:
    """The stream's valid base record with some fields changed (DROP removes one)."""
    rec = dict(BASE[stream])
    for key, value in changes.items():
        if value is DROP:
            rec.pop(key, None)
        else:
            rec[key] = value
    return json.dumps(rec)


def lines_frame(raws: list[str | None], errors: dict[int, tuple[str, str]] | None = None) -> pl.DataFrame:
    """A lines frame as formats builds it: line, raw, error, message."""
    errors = errors or {}
    lines = list(range(1, len(raws) + 1))
    return pl.DataFrame(
        {
            "line": lines,
            "raw": raws,
            "error": [errors.get(n, (None, None))[0] for n in lines],
            "message": [errors.get(n, (None, None))[1] for n in lines],
        },
        schema=LINE_SCHEMA,
    )


@pytest.fixture(scope="module", autouse=True)
def _close_parsers():
    yield
    for parser in _PARSERS.values():
        parser.close()
    _PARSERS.clear()


_PARSERS: dict[str, JsonParser] = {}
_VALIDATORS: dict[str, Validator] = {}


def run(stream: str, raws: list[str | None], errors=None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse and validate; one parser and validator per stream for the whole module."""
    spec = STREAMS[stream]
    if stream not in _PARSERS:
        _PARSERS[stream] = JsonParser(spec)
    parser = _PARSERS[stream]
    if stream not in _VALIDATORS:
        _VALIDATORS[stream] = Validator(spec)
    validator = _VALIDATORS[stream]
    parsed = parser.parse(lines_frame(raws, errors))
    return validator.validate(parsed, LANDED)


def reject_rows(rejects: pl.DataFrame) -> list[tuple]:
    return sorted(rejects.select("line", "field", "rule").iter_rows())


def check_one_bad_line(stream: str, bad: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Line 2 is the record under test, lines 1 and 3 are valid records."""
    good1 = record(stream)
    good3 = record(stream, **{STREAMS[stream].keys[0]: "k3"})
    return run(stream, [good1, bad, good3])


# --- rejected records: (stream, line 2 text, field, rule) ---------------------------

REJECT_CASES = [
    # parse errors (field is null)
    ("invalid_json_truncated", "contact", '{"contact_id":"c2","email":"a@b.com"', None, "invalid_json"),
    ("invalid_json_garbage", "account", "not json at all", None, "invalid_json"),
    ("invalid_json_trailing_text", "contact", record("contact") + " trailing", None, "invalid_json"),
    ("nan_value", "contact", '{"contact_id":"c2","email":"a@b.com","contact_properties":{"x":NaN}}', None, "invalid_json"),
    (
        "nan_top_level_with_space",
        "contact",
        '{"contact_id":"c2","email":"a@b.com","contact_properties":{},"score": NaN}',
        None,
        "invalid_json",
    ),
    ("infinity_value", "contact_event", record("contact_event")[:-1] + ', "x": Infinity}', None, "invalid_json"),
    (
        "negative_infinity_value",
        "account",
        '{"account_id":"a2","domain":"acme.com","account_properties":{"x":-Infinity}}',
        None,
        "invalid_json",
    ),
    ("infinity_in_array", "account_event", record("account_event")[:-1] + ', "v": [1, Infinity]}', None, "invalid_json"),
    ("json_array_line", "contact", "[1, 2]", None, "not_an_object"),
    ("json_array_of_object_line", "contact", "[" + record("contact") + "]", None, "not_an_object"),
    ("json_string_line", "account", '"hello"', None, "not_an_object"),
    ("json_number_line", "contact_event", "42", None, "not_an_object"),
    ("json_null_line", "account_event", "null", None, "not_an_object"),
    # required fields
    ("missing_contact_id", "contact", record("contact", contact_id=DROP), "contact_id", "missing_field"),
    ("missing_email", "contact", record("contact", email=DROP), "email", "missing_field"),
    ("missing_contact_properties", "contact", record("contact", contact_properties=DROP), "contact_properties", "missing_field"),
    ("missing_domain", "account", record("account", domain=DROP), "domain", "missing_field"),
    ("missing_event", "contact_event", record("contact_event", event=DROP), "event", "missing_field"),
    ("missing_event_timestamp", "account_event", record("account_event", event_timestamp=DROP), "event_timestamp", "missing_field"),
    ("missing_account_id_on_account_event", "account_event", record("account_event", account_id=DROP), "account_id", "missing_field"),
    ("null_contact_id", "contact", record("contact", contact_id=None), "contact_id", "missing_field"),
    ("null_email", "contact", record("contact", email=None), "email", "missing_field"),
    ("null_properties", "account", record("account", account_properties=None), "account_properties", "missing_field"),
    ("null_event_id", "contact_event", record("contact_event", event_id=None), "event_id", "missing_field"),
    ("empty_string_id", "contact", record("contact", contact_id=""), "contact_id", "missing_field"),
    ("blank_string_id", "account", record("account", account_id="   "), "account_id", "missing_field"),
    ("blank_email", "contact", record("contact", email="  "), "email", "missing_field"),
    ("empty_event_name", "account_event", record("account_event", event=""), "event", "missing_field"),
    ("empty_timestamp", "contact_event", record("contact_event", event_timestamp=""), "event_timestamp", "missing_field"),
    # junk identifiers
    ("junk_id_undefined", "contact", record("contact", contact_id="undefined"), "contact_id", "junk_identifier"),
    ("junk_id_null_text", "account", record("account", account_id="NULL"), "account_id", "junk_identifier"),
    ("junk_id_anonymous_padded", "contact_event", record("contact_event", contact_id=" Anonymous "), "contact_id", "junk_identifier"),
    ("junk_id_none", "account_event", record("account_event", event_id="None"), "event_id", "junk_identifier"),
    ("junk_id_number_minus_one", "contact", record("contact", contact_id=-1), "contact_id", "junk_identifier"),
    ("junk_id_number_zero", "account", record("account", account_id=0), "account_id", "junk_identifier"),
    ("junk_id_string_zero", "contact_event", record("contact_event", event_id="0"), "event_id", "junk_identifier"),
    # types
    ("boolean_id", "contact", record("contact", contact_id=True), "contact_id", "invalid_type"),
    ("object_id", "account", record("account", account_id={"id": 1}), "account_id", "invalid_type"),
    ("properties_string", "contact", record("contact", contact_properties="x"), "contact_properties", "invalid_type"),
    ("properties_array", "account_event", record("account_event", event_properties=[1]), "event_properties", "invalid_type"),
    ("properties_number", "account", record("account", account_properties=5), "account_properties", "invalid_type"),
    ("email_number", "contact", record("contact", email=42), "email", "invalid_type"),
    ("domain_number", "account", record("account", domain=42), "domain", "invalid_type"),
    ("timestamp_boolean", "contact_event", record("contact_event", event_timestamp=True), "event_timestamp", "invalid_type"),
    ("timestamp_object", "account_event", record("account_event", event_timestamp={"t": 1}), "event_timestamp", "invalid_type"),
    # formats
    ("invalid_email_no_at", "contact", record("contact", email="nope"), "email", "invalid_email"),
    ("invalid_email_no_tld", "contact", record("contact", email="a@b"), "email", "invalid_email"),
    ("invalid_email_space", "contact", record("contact", email="a b@c.com"), "email", "invalid_email"),
    ("invalid_domain_no_dot", "account", record("account", domain="acme"), "domain", "invalid_domain"),
    ("invalid_domain_space", "account", record("account", domain="not a domain"), "domain", "invalid_domain"),
    (
        "unparseable_timestamp",
        "contact_event",
        record("contact_event", event_timestamp="yesterday"),
        "event_timestamp",
        "invalid_timestamp",
    ),
    (
        "unparseable_timestamp_bad_month",
        "account_event",
        record("account_event", event_timestamp="2024-13-01"),
        "event_timestamp",
        "invalid_timestamp",
    ),
    (
        "pre_1990_timestamp",
        "contact_event",
        record("contact_event", event_timestamp="1989-12-31T23:59:59Z"),
        "event_timestamp",
        "timestamp_out_of_range",
    ),
    ("pre_1990_unix_seconds", "account_event", record("account_event", event_timestamp=86400), "event_timestamp", "timestamp_out_of_range"),
    ("negative_unix", "contact_event", record("contact_event", event_timestamp=-1), "event_timestamp", "timestamp_out_of_range"),
    (
        "future_timestamp",
        "contact_event",
        record("contact_event", event_timestamp="2024-06-02T00:00:01Z"),
        "event_timestamp",
        "timestamp_out_of_range",
    ),
    # discriminator
    ("wrong_type_in_contact", "contact", record("contact", type="account"), "type", "wrong_stream"),
    ("wrong_type_in_account", "account", record("account", type="contact"), "type", "wrong_stream"),
    (
        "wrong_event_type_in_contact_event",
        "contact_event",
        record("contact_event", event_type="account_event"),
        "event_type",
        "wrong_stream",
    ),
    (
        "wrong_event_type_in_account_event",
        "account_event",
        record("account_event", event_type="contact_event"),
        "event_type",
        "wrong_stream",
    ),
]


@pytest.mark.parametrize(("stream", "bad", "field", "rule"), [c[1:] for c in REJECT_CASES], ids=[c[0] for c in REJECT_CASES])
def test_bad_record_is_rejected_with_line_field_rule_and_others_load(stream, bad, field, rule):
    valid, rejects = check_one_bad_line(stream, bad)
    assert reject_rows(rejects) == [(2, field, rule)]
    assert rejects["raw"].to_list() == [bad]
    assert valid["line"].to_list() == [1, 3]


def test_reject_frame_schema():
    _, rejects = check_one_bad_line("contact", "[1]")
    assert rejects.schema == pl.Schema({"line": pl.Int64, "field": pl.String, "rule": pl.String, "message": pl.String, "raw": pl.String})


def test_record_breaking_several_rules_is_reported_once_under_first_field():
    bad = json.dumps({"contact_id": "", "email": "nope", "contact_properties": "x", "type": "account"})
    _, rejects = run("contact", [bad])
    assert reject_rows(rejects) == [(1, "contact_id", "missing_field")]


def test_many_bad_lines_in_one_batch_each_get_their_own_line():
    raws = [
        record("contact"),
        "{oops",
        record("contact", contact_id="c3", email="bad"),
        record("contact", contact_id="c4"),
        "",  # formats never produces this, but an empty raw is not valid JSON
        record("contact", contact_id="null"),
        record("contact", contact_id="c7", type="contact"),
    ]
    valid, rejects = run("contact", raws)
    assert reject_rows(rejects) == [
        (2, None, "invalid_json"),
        (3, "email", "invalid_email"),
        (5, None, "invalid_json"),
        (6, "contact_id", "junk_identifier"),
    ]
    assert valid["line"].to_list() == [1, 4, 7]


def test_errors_from_formats_pass_through_as_rejects():
    raws = [record("contact"), None, "x" * 40]
    errors = {2: ("invalid_utf8", "line is not valid UTF-8"), 3: ("record_too_large", "record of 41 bytes exceeds")}
    valid, rejects = run("contact", raws, errors)
    assert sorted(rejects.select("line", "field", "rule", "message", "raw").iter_rows()) == [
        (2, None, "invalid_utf8", "line is not valid UTF-8", None),
        (3, None, "record_too_large", "record of 41 bytes exceeds", "x" * 40),
    ]
    assert valid["line"].to_list() == [1]


# --- accepted records -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "raw"),
    [
        ("contact", record("contact", contact_properties={"s": "NaN", "t": "x: Infinity}"})),
        ("contact", record("contact", type="contact")),
        ("account", record("account", type="account")),
        ("contact_event", record("contact_event", event_type="contact_event")),
        ("account_event", record("account_event", event_type="account_event")),
        ("contact", "  " + record("contact") + "  "),
        ("contact", record("contact", contact_properties={})),
        ("account", record("account", account_properties={"nested": {"a": [1, None]}})),
    ],
    ids=[
        "nan_inside_string_is_fine",
        "matching_type_contact",
        "matching_type_account",
        "matching_event_type_contact_event",
        "matching_event_type_account_event",
        "surrounding_whitespace",
        "empty_properties_object",
        "nested_properties",
    ],
)
def test_valid_record_is_accepted(stream, raw):
    valid, rejects = run(stream, [raw])
    assert rejects.height == 0
    assert valid["line"].to_list() == [1]


@pytest.mark.parametrize(
    ("stream", "field", "value", "expected"),
    [
        ("contact", "contact_id", 12345, "12345"),
        ("contact", "contact_id", 12345678901234567890, "12345678901234567890"),
        ("account", "account_id", 7, "7"),
        ("contact_event", "event_id", 42, "42"),
        ("contact_event", "contact_id", 99, "99"),
        ("account_event", "account_id", 1001, "1001"),
        ("contact", "contact_id", "  c9  ", "c9"),
    ],
)
def test_numeric_or_padded_id_is_accepted_as_trimmed_string(stream, field, value, expected):
    valid, rejects = run(stream, [record(stream, **{field: value})])
    assert rejects.height == 0
    assert valid.schema[f"{field}__norm"] == pl.String
    assert valid[f"{field}__norm"].to_list() == [expected]


def test_valid_rows_keep_their_line_numbers():
    raws = ["", "[]", record("contact", contact_id="c3"), "{", record("contact", contact_id="c5")]
    valid, _ = run("contact", raws)
    assert valid.select("line", "contact_id__norm").rows() == [(3, "c3"), (5, "c5")]


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        (" Alice@Example.COM ", "alice@example.com"),
        ("Bob.Smith+tag@Mail.Example.ORG", "bob.smith+tag@mail.example.org"),
        ("a@b.com", "a@b.com"),
    ],
)
def test_email_is_normalised_in_email_norm(email, expected):
    valid, rejects = run("contact", [record("contact", email=email)])
    assert rejects.height == 0
    assert valid["email__norm"].to_list() == [expected]
    assert valid["email"].to_list() == [email]  # the raw value is kept as given


@pytest.mark.parametrize(
    ("domain", "expected"),
    [("https://www.Acme.com/pricing", "acme.com"), ("ACME.IO.", "acme.io"), ("sub.acme.co.uk:8443", "sub.acme.co.uk")],
)
def test_domain_is_normalised_in_domain_norm(domain, expected):
    valid, rejects = run("account", [record("account", domain=domain)])
    assert rejects.height == 0
    assert valid["domain__norm"].to_list() == [expected]


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2024-05-01T10:00:00+02:00", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        (1714550400, datetime(2024, 5, 1, 8, tzinfo=UTC)),
        (1714550400000, datetime(2024, 5, 1, 8, tzinfo=UTC)),
        (1714550400123456, datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)),
        (1714550400.5, datetime(2024, 5, 1, 8, 0, 0, 500000, tzinfo=UTC)),
        ("1714550400", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-06-02T00:00:00Z", datetime(2024, 6, 2, tzinfo=UTC)),  # exactly landed_at + 1 day
        ("1990-01-01T00:00:00Z", datetime(1990, 1, 1, tzinfo=UTC)),
    ],
)
def test_event_timestamp_is_normalised_to_utc(ts, expected):
    valid, rejects = run("contact_event", [record("contact_event", event_timestamp=ts)])
    assert rejects.height == 0
    assert valid["event_timestamp__norm"].to_list() == [expected]


def test_event_name_is_trimmed():
    valid, _ = run("account_event", [record("account_event", event="  paid  ")])
    assert valid["event__norm"].to_list() == ["paid"]


# --- schema drift ----------------------------------------------------------------------


def test_unknown_top_level_field_is_kept_in_properties_and_reported_as_drift():
    raw = json.dumps({"contact_id": "c1", "email": "a@b.com", "contact_properties": {"a": 1}, "plan": "pro", "type": "contact"})
    valid, rejects = run("contact", [raw])
    assert rejects.height == 0
    assert json.loads(valid["properties"][0]) == {"a": 1, "plan": "pro"}
    assert valid["drift"].to_list() == [["plan"]]


def test_several_unknown_fields_on_event_are_kept_with_their_json_values():
    raw = json.dumps(
        {**BASE["account_event"], "source": "web", "score": 1.5, "tags": ["x", "y"], "meta": {"k": None}, "event_type": "account_event"}
    )
    valid, _ = run("account_event", [raw])
    assert json.loads(valid["properties"][0]) == {"amount": 10, "source": "web", "score": 1.5, "tags": ["x", "y"], "meta": {"k": None}}
    assert sorted(valid["drift"][0]) == ["meta", "score", "source", "tags"]


def test_drift_key_also_in_properties_object_keeps_the_properties_value():
    raw = json.dumps({"contact_id": "c1", "email": "a@b.com", "contact_properties": {"plan": "free"}, "plan": "pro"})
    valid, _ = run("contact", [raw])
    assert json.loads(valid["properties"][0]) == {"plan": "free"}
    assert valid["drift"].to_list() == [["plan"]]


def test_known_fields_and_discriminator_are_not_drift():
    valid, _ = run("contact_event", [record("contact_event", event_type="contact_event")])
    assert valid["drift"].to_list() == [[]]
    assert json.loads(valid["properties"][0]) == {"src": "web"}


def test_only_drifting_rows_get_merged_properties():
    raws = [record("contact", contact_id="c1"), record("contact", contact_id="c2", utm="x")]
    valid, _ = run("contact", raws)
    assert [json.loads(p) for p in valid["properties"]] == [{"plan": "pro"}, {"plan": "pro", "utm": "x"}]
    assert valid["drift"].to_list() == [[], ["utm"]]
