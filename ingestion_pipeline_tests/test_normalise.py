"""Table-driven tests of the normalisation rules (SPEC section 2.3)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from ingestion_pipeline import normalise as norm

UTC = timezone.utc


def _apply(fn, value):
    """Run a normalise expression on a one-row String column and return the cell."""
    frame = pl.DataFrame({"v": [value]}, schema={"v": pl.String})
    return frame.select(out=fn(pl.col("v")))["out"][0]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- timestamp -------------------------------------------------------------

TIMESTAMP_CASES = [
    # ISO 8601 with Z
    ("2024-03-01T12:00:00Z", utc(2024, 3, 1, 12, 0, 0)),
    ("2024-03-01T12:00:00z", utc(2024, 3, 1, 12, 0, 0)),
    ("2024-03-01t12:00:00Z", utc(2024, 3, 1, 12, 0, 0)),
    # offsets: +hh:mm, -hhmm, +hhmm, minutes-only precision with offset
    ("2024-03-01T12:00:00+02:00", utc(2024, 3, 1, 10, 0, 0)),
    ("2024-03-01T12:00:00-0530", utc(2024, 3, 1, 17, 30, 0)),
    ("2024-03-01T12:00:00-05:30", utc(2024, 3, 1, 17, 30, 0)),
    ("2024-03-01T12:00:00+0200", utc(2024, 3, 1, 10, 0, 0)),
    ("2024-03-01T12:00+02:00", utc(2024, 3, 1, 10, 0, 0)),
    # ISO 8601 also allows an hours-only offset (±hh)
    ("2024-03-01T12:00:00+02", utc(2024, 3, 1, 10, 0, 0)),
    # fractions
    ("2024-03-01T12:00:00.123Z", utc(2024, 3, 1, 12, 0, 0, 123000)),
    ("2024-03-01T12:00:00.123456Z", utc(2024, 3, 1, 12, 0, 0, 123456)),
    ("2024-03-01T12:00:00.5+01:00", utc(2024, 3, 1, 11, 0, 0, 500000)),
    ("2024-03-01T12:00:00.123456789Z", utc(2024, 3, 1, 12, 0, 0, 123456)),  # ns truncated to us
    # naive times are UTC; space separator accepted
    ("2024-03-01T12:00:00", utc(2024, 3, 1, 12, 0, 0)),
    ("2024-03-01 12:00:00", utc(2024, 3, 1, 12, 0, 0)),
    ("2024-03-01T12:00", utc(2024, 3, 1, 12, 0, 0)),
    # date only -> midnight UTC
    ("2024-03-01", utc(2024, 3, 1, 0, 0, 0)),
    # surrounding whitespace is trimmed
    ("  2024-03-01T12:00:00Z ", utc(2024, 3, 1, 12, 0, 0)),
    # unix seconds / milliseconds / microseconds, detected by magnitude
    ("1709294400", utc(2024, 3, 1, 12, 0, 0)),
    ("1709294400123", utc(2024, 3, 1, 12, 0, 0, 123000)),
    ("1709294400123456", utc(2024, 3, 1, 12, 0, 0, 123456)),
    ("946684800", utc(2000, 1, 1, 0, 0, 0)),
    ("946684800250", utc(2000, 1, 1, 0, 0, 0, 250000)),
    ("946684800250000", utc(2000, 1, 1, 0, 0, 0, 250000)),
    ("  1709294400  ", utc(2024, 3, 1, 12, 0, 0)),
    # unix time with a fraction
    ("1709294400.5", utc(2024, 3, 1, 12, 0, 0, 500000)),
    ("946684800.25", utc(2000, 1, 1, 0, 0, 0, 250000)),
    ("1709294400.123456", utc(2024, 3, 1, 12, 0, 0, 123456)),
    ("1709294400123.5", utc(2024, 3, 1, 12, 0, 0, 123500)),
    # junk -> null
    ("abc", None),
    ("", None),
    ("   ", None),
    ("2024-13-01", None),
    ("2024-02-30", None),
    ("2024-03-01T25:00:00Z", None),
    ("12:00", None),
    ("Mar 1 2024", None),
    ("1e9", None),
    (None, None),
]


@pytest.mark.parametrize(("text", "expected"), TIMESTAMP_CASES)
def test_timestamp_parses_iso_and_unix_text_to_utc_or_null(text, expected):
    assert _apply(norm.timestamp, text) == expected


def test_timestamp_returns_utc_microsecond_datetime_dtype():
    frame = pl.DataFrame({"v": ["2024-03-01T12:00:00+02:00", "1709294400"]})
    out = frame.select(t=norm.timestamp(pl.col("v")))
    assert out.schema["t"] == pl.Datetime("us", "UTC")
    assert out["t"].to_list() == [utc(2024, 3, 1, 10), utc(2024, 3, 1, 12)]


# --- is_timestamp_in_range ---------------------------------------------------

LANDED = utc(2024, 6, 1, 12, 0, 0)

RANGE_CASES = [
    ("pre_1990_rejected", utc(1989, 12, 31, 23, 59, 59), False),
    ("unix_epoch_rejected", utc(1970, 1, 1), False),
    ("exactly_1990_accepted", utc(1990, 1, 1), True),
    ("before_landing_accepted", utc(2024, 5, 31), True),
    ("at_landing_accepted", LANDED, True),
    ("exactly_one_day_after_landing_accepted", LANDED + timedelta(days=1), True),
    ("one_microsecond_past_one_day_rejected", LANDED + timedelta(days=1, microseconds=1), False),
    ("two_days_after_landing_rejected", LANDED + timedelta(days=2), False),
]


@pytest.mark.parametrize(("ts", "expected"), [c[1:] for c in RANGE_CASES], ids=[c[0] for c in RANGE_CASES])
def test_is_timestamp_in_range_bounds_1990_and_landed_plus_one_day(ts, expected):
    frame = pl.DataFrame(
        {"ts": [ts], "landed": [LANDED]},
        schema={"ts": pl.Datetime("us", "UTC"), "landed": pl.Datetime("us", "UTC")},
    )
    assert frame.select(ok=norm.is_timestamp_in_range(pl.col("ts"), pl.col("landed")))["ok"][0] is expected


def test_is_timestamp_in_range_is_relative_to_landed_at_not_now():
    # A timestamp far in today's future is fine if the file landed later still.
    landed = utc(2100, 1, 1)
    frame = pl.DataFrame(
        {"ts": [utc(2099, 12, 31)], "landed": [landed]},
        schema={"ts": pl.Datetime("us", "UTC"), "landed": pl.Datetime("us", "UTC")},
    )
    assert frame.select(ok=norm.is_timestamp_in_range(pl.col("ts"), pl.col("landed")))["ok"][0] is True


# --- domain ------------------------------------------------------------------

DOMAIN_CASES = [
    ("example.com", "example.com", True),
    ("https://www.Example.com/path?q=1", "example.com", True),
    ("http://example.com", "example.com", True),
    ("ftp://Files.Example.org", "files.example.org", True),
    ("www.example.com", "example.com", True),
    ("WWW.EXAMPLE.COM", "example.com", True),
    ("example.com/some/path", "example.com", True),
    ("example.com?x=1", "example.com", True),
    ("example.com#frag", "example.com", True),
    ("example.com:8080", "example.com", True),
    ("https://example.com:443/x", "example.com", True),
    ("EXAMPLE.COM.", "example.com", True),
    ("example.com..", "example.com", True),
    ("Example.Com", "example.com", True),
    ("http://user:pw@example.com:443/x", "example.com", True),
    ("user@example.com", "example.com", True),
    ("  sub.example.co.uk  ", "sub.example.co.uk", True),
    ("https://www.acme-corp.io/", "acme-corp.io", True),
    # invalid after normalisation
    ("example", "example", False),
    ("localhost", "localhost", False),
    ("exa mple.com", "exa mple.com", False),
    ("-bad.com", "-bad.com", False),
    ("www.", "www", False),
    ("", "", False),
]


@pytest.mark.parametrize(("raw", "expected", "valid"), DOMAIN_CASES)
def test_domain_normalises_to_bare_lowercase_host(raw, expected, valid):
    assert _apply(norm.domain, raw) == expected


@pytest.mark.parametrize(("raw", "expected", "valid"), DOMAIN_CASES)
def test_is_valid_domain_on_normalised_value(raw, expected, valid):
    assert _apply(norm.is_valid_domain, expected) is valid


# --- email -------------------------------------------------------------------

EMAIL_CASES = [
    (" Alice@Example.COM ", "alice@example.com", True),
    ("bob@example.com", "bob@example.com", True),
    ("a@b.co", "a@b.co", True),
    ("A.B+Tag@Sub.Example.ORG", "a.b+tag@sub.example.org", True),
    ("a@b.c", "a@b.c", False),  # TLD of one letter
    ("no-at.com", "no-at.com", False),
    ("a@@b.com", "a@@b.com", False),
    ("a b@c.com", "a b@c.com", False),
    ("a@b", "a@b", False),
    ("@example.com", "@example.com", False),
    ("a@example.com.", "a@example.com.", False),
    ("", "", False),
]


@pytest.mark.parametrize(("raw", "expected", "valid"), EMAIL_CASES)
def test_email_is_trimmed_and_lower_cased(raw, expected, valid):
    assert _apply(norm.email, raw) == expected


@pytest.mark.parametrize(("raw", "expected", "valid"), EMAIL_CASES)
def test_is_valid_email_on_normalised_value(raw, expected, valid):
    assert _apply(norm.is_valid_email, expected) is valid


# --- junk identifiers --------------------------------------------------------

JUNK_CASES = [
    ("", True),
    ("   ", True),
    ("null", True),
    ("NULL", True),
    ("Null", True),
    ("undefined", True),
    (" Undefined ", True),
    ("none", True),
    ("None", True),
    ("NONE", True),
    ("-1", True),
    (" -1 ", True),
    ("0", True),
    ("anonymous", True),
    ("ANONYMOUS", True),
    ("\tanonymous\n", True),
    # real ids
    ("c_123", False),
    ("1", False),
    ("00", False),
    ("-2", False),
    ("-1.0", False),
    ("nil", False),
    ("nullx", False),
    ("anonymous-42", False),
    ("3f2b9c1e-0000-4000-8000-000000000001", False),
]


@pytest.mark.parametrize(("value", "junk"), JUNK_CASES)
def test_is_junk_identifier_case_insensitive_and_trimmed(value, junk):
    assert _apply(norm.is_junk_identifier, value) is junk
