"""Landing freshness: deadline parsing (INGEST_FRESHNESS_HOURS) and the age of a
stream's newest loaded file."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from ingestion_pipeline.defs.resources import IngestResource
from ingestion_pipeline.freshness import parse_freshness_hours, stream_freshness
from ingestion_pipeline.warehouse import UTC_TS

from .conftest import utc


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, (26.0, {})),
        ("", (26.0, {})),
        ("12", (12.0, {})),
        ("contact_event=2", (26.0, {"contact_event": 2.0})),
        (" contact_event = 2 , default=48 ,account=0.5 ", (48.0, {"contact_event": 2.0, "account": 0.5})),
        ("default=1,crm=168", (1.0, {"crm": 168.0})),
    ],
)
def test_deadlines_parse_as_a_default_and_per_stream_hours(text, expected):
    assert parse_freshness_hours(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("contacts=2", "INGEST_FRESHNESS_HOURS: unknown stream 'contacts' in 'contacts=2'; expected HOURS or stream=HOURS"),
        ("contact=two", "INGEST_FRESHNESS_HOURS: stream 'contact' must be a positive number of hours, got 'two'"),
        ("0", "INGEST_FRESHNESS_HOURS: the default must be a positive number of hours, got '0'"),
        ("-3", "the default must be a positive number of hours, got '-3'"),
        ("default=inf", "the default must be a positive number of hours, got 'inf'"),
        ("contact=1,contact=2", "stream 'contact' is given twice"),
        ("26,default=2", "the default is given twice"),
        ("contact=", "stream 'contact' must be a positive number of hours, got ''"),
    ],
)
def test_a_bad_deadline_is_refused_with_the_variable_and_the_item(text, message):
    with pytest.raises(ValueError) as raised:
        parse_freshness_hours(text)
    assert message in str(raised.value)


def test_the_resource_takes_its_deadlines_from_the_environment(monkeypatch):
    monkeypatch.setenv("INGEST_FRESHNESS_HOURS", "contact_event=2,default=30")
    ingest = IngestResource.from_env()
    assert ingest.freshness_deadline("contact_event") == timedelta(hours=2)
    assert ingest.freshness_deadline("contact") == timedelta(hours=30)
    monkeypatch.setenv("INGEST_FRESHNESS_HOURS", "contact_evnt=2")
    with pytest.raises(ValueError, match="unknown stream 'contact_evnt'"):
        IngestResource.from_env()
    monkeypatch.delenv("INGEST_FRESHNESS_HOURS")
    assert IngestResource.from_env().freshness_deadline("account") == timedelta(hours=26)


def test_the_resource_refuses_deadlines_for_unknown_streams_or_not_positive():
    with pytest.raises(ValueError, match="freshness_hours: unknown stream.s. contacts; streams: contact, account"):
        IngestResource(freshness_hours={"contacts": 2})
    with pytest.raises(ValueError, match="freshness_hours must be positive numbers of hours"):
        IngestResource(freshness_hours={"contact": 0})
    with pytest.raises(ValueError, match="freshness_default_hours must be a positive number of hours"):
        IngestResource(freshness_default_hours=-1)


def ledger(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"stream": pl.String, "landed_at": UTC_TS, "status": pl.String}, orient="row")


NOW = utc(2026, 11, 23, 12)
DEADLINE = timedelta(hours=26)


def test_age_is_that_of_the_newest_file_whose_records_loaded():
    rows = ledger(
        ("contact", utc(2026, 11, 20, 9), "loaded"),
        ("contact", utc(2026, 11, 22, 6), "partially_loaded"),
        ("contact", utc(2026, 11, 23, 8), "rejected"),  # nothing reached the tables
        ("contact", utc(2026, 11, 23, 9), "failed"),
        ("contact", utc(2026, 11, 23, 10), "skipped_duplicate"),
        ("account", utc(2026, 11, 23, 11), "loaded"),  # another stream
    )
    f = stream_freshness(rows, "contact", DEADLINE, NOW)
    assert (f.newest_landed_at, f.age, f.files_loaded) == (utc(2026, 11, 22, 6), timedelta(hours=30), 2)
    assert not f.fresh
    assert f.describe() == "STALE: the newest loaded contact file landed 30.0 h ago (deadline 26 h)"
    assert stream_freshness(rows, "contact", timedelta(hours=30), NOW).fresh  # exactly at the deadline
    assert stream_freshness(rows, "account", DEADLINE, NOW).describe() == (
        "fresh: the newest loaded account file landed 1.0 h ago (deadline 26 h)"
    )


def test_a_stream_that_never_loaded_a_file_is_not_late():
    rows = ledger(("contact_event", utc(2026, 11, 1), "rejected"))
    f = stream_freshness(rows, "contact_event", DEADLINE, NOW)
    assert (f.newest_landed_at, f.age, f.files_loaded, f.fresh) == (None, None, 0, True)
    assert f.describe() == "no contact_event file loaded yet (deadline 26 h starts with the first file)"
    assert stream_freshness(ledger(), "crm", DEADLINE, NOW).fresh


def test_a_landing_time_ahead_of_the_clock_counts_as_age_zero():
    f = stream_freshness(ledger(("contact", NOW + timedelta(minutes=5), "loaded")), "contact", DEADLINE, NOW)
    assert (f.age, f.fresh) == (timedelta(0), True)
