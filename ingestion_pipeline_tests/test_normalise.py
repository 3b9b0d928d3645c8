"""Table-driven tests of the normalisation rules (SPEC section 2.3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from ingestion_pipeline import normalise as norm

UTC = UTC


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
    ("2024-03-01T12:00:00-05", utc(2024, 3, 1, 17, 0, 0)),
    ("2024-03-01T12:00-05", utc(2024, 3, 1, 17, 0, 0)),
    ("2024-03-01T23:30:00-01:00", utc(2024, 3, 2, 0, 30, 0)),  # offset crosses midnight
    ("2024-03-01T00:30:00+01:00", utc(2024, 2, 29, 23, 30, 0)),  # ... and a leap day
    # fractions
    ("2024-03-01T12:00:00.123Z", utc(2024, 3, 1, 12, 0, 0, 123000)),
    ("2024-03-01T12:00:00.123456Z", utc(2024, 3, 1, 12, 0, 0, 123456)),
    ("2024-03-01T12:00:00.5+01:00", utc(2024, 3, 1, 11, 0, 0, 500000)),
    ("2024-03-01T12:00:00.123456789Z", utc(2024, 3, 1, 12, 0, 0, 123456)),  # ns truncated to us
    ("2024-03-01T12:00:00.123+0530", utc(2024, 3, 1, 6, 30, 0, 123000)),
    ("2024-03-01T12:00:00.123456-05:30", utc(2024, 3, 1, 17, 30, 0, 123456)),
    ("2024-03-01T12:00:00.5-05", utc(2024, 3, 1, 17, 0, 0, 500000)),
    ("2024-03-01T12:00:00.123", utc(2024, 3, 1, 12, 0, 0, 123000)),  # naive with a fraction
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
    ("1234567890", utc(2009, 2, 13, 23, 31, 30)),
    ("1234567890123", utc(2009, 2, 13, 23, 31, 30, 123000)),
    ("1234567890123456", utc(2009, 2, 13, 23, 31, 30, 123456)),
    # unix time with a fraction
    ("1709294400.5", utc(2024, 3, 1, 12, 0, 0, 500000)),
    ("946684800.25", utc(2000, 1, 1, 0, 0, 0, 250000)),
    ("1709294400.123456", utc(2024, 3, 1, 12, 0, 0, 123456)),
    ("1709294400123.5", utc(2024, 3, 1, 12, 0, 0, 123500)),
    ("1234567890.5", utc(2009, 2, 13, 23, 31, 30, 500000)),
    ("1234567890123.25", utc(2009, 2, 13, 23, 31, 30, 123250)),
    # negative unix time parses (before 1970); is_timestamp_in_range rejects it
    ("-1", utc(1969, 12, 31, 23, 59, 59)),
    ("-1234567890", utc(1930, 11, 18, 0, 28, 30)),
    ("-1234567890123", utc(1930, 11, 18, 0, 28, 29, 877000)),
    ("0", utc(1970, 1, 1)),
    # beyond microseconds (nanoseconds and larger) is not a supported unit
    ("1234567890123456789", None),
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
    ("+1709294400", None),
    ("--1709294400", None),
    ("1709294400abc", None),
    ("1709294400.", None),
    (".5", None),
    ("1.2.3", None),
    ("NaN", None),
    ("inf", None),
    ("2024-03-01T", None),
    ("2024-03-01Z", None),
    ("2024-03-01T12Z", None),
    ("2024-03-01T12:00:00+2", None),
    ("2024-03-01T12:00:00+24:00", None),
    ("2024-03-01T12:00:00,5Z", None),
    ("not a timestamp", None),
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
    ("far_future_rejected", utc(2100, 1, 1), False),
    ("year_9999_rejected", utc(9999, 12, 31, 23, 59, 59), False),
    ("year_1_rejected", utc(1, 1, 1), False),
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


# Raw text through timestamp() and is_timestamp_in_range(): True accepted, False
# rejected as out of range, None unparseable (rejected by the parse rule instead).
RAW_RANGE_CASES = [
    ("2024-06-01T12:00:00Z", True),
    ("2024-06-02T12:00:00Z", True),  # exactly one day after landing
    ("2024-06-02T12:00:00.000001Z", False),
    ("2024-06-02T13:00:00+01:00", True),  # same instant as +1 day, via an offset
    ("2024-06-02T12:00:01Z", False),
    ("2030-01-01", False),
    ("1990-01-01", True),
    ("1989-12-31T23:59:59Z", False),
    ("1990-01-01T00:30:00+01:00", False),  # 1989-12-31T23:30Z
    ("631152000", True),  # 1990-01-01 in unix seconds
    ("631151999", False),
    ("631152000000", True),  # ... milliseconds
    ("631151999999", False),
    ("631152000000000", True),  # ... microseconds
    ("631151999999999", False),
    ("4102444800", False),  # 2100-01-01 in unix seconds
    ("99999999999", False),  # largest magnitude read as seconds: year 5138
    ("100000000000", False),  # smallest read as milliseconds: 1973
    ("0", False),
    ("-1", False),
    ("-1234567890", False),
    ("20240601", False),  # a compact date is read as unix seconds (1970-08-23)
    ("garbage", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), RAW_RANGE_CASES)
def test_raw_timestamp_text_parsed_then_range_checked(text, expected):
    frame = pl.DataFrame(
        {"v": [text], "landed": [LANDED]},
        schema={"v": pl.String, "landed": pl.Datetime("us", "UTC")},
    )
    out = frame.select(ok=norm.is_timestamp_in_range(norm.timestamp(pl.col("v")), pl.col("landed")))
    assert out["ok"][0] is expected


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
    ("HTTPS://WWW.EXAMPLE.COM/", "example.com", True),
    ("https://www.example.com.:443/", "example.com", True),
    ("https://example.com:8080?x=1", "example.com", True),
    ("example.com:", "example.com", True),
    ("https://user@www.example.com", "example.com", True),
    ("http://user:p@ss@example.com/", "example.com", True),  # userinfo ends at the last @
    # an @ in the path, query or fragment is not a credential separator
    ("example.com/path@evil.com", "example.com", True),
    ("https://example.com?u=a@b.com", "example.com", True),
    ("example.com?email=a@b.com", "example.com", True),
    ("example.com#x@y.com", "example.com", True),
    ("\thttp://Example.com/\n", "example.com", True),
    ("www.www.example.com", "www.example.com", True),  # only one www. is removed
    # invalid after normalisation
    ("example", "example", False),
    ("localhost", "localhost", False),
    ("exa mple.com", "exa mple.com", False),
    ("-bad.com", "-bad.com", False),
    ("-bad-.com", "-bad-.com", False),
    ("bad-.com", "bad-.com", False),
    ("a..com", "a..com", False),
    ("ex_ample.com", "ex_ample.com", False),
    ("not a domain", "not a domain", False),
    ("http://localhost:8080/", "localhost", False),
    ("www", "www", False),
    ("   ", "", False),
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
    ("\tBob@Example.com\n", "bob@example.com", True),
    ("a@b.c", "a@b.c", False),  # TLD of one letter
    ("no-at.com", "no-at.com", False),
    ("no-at-sign", "no-at-sign", False),
    ("@x.com", "@x.com", False),
    ("a@.com", "a@.com", False),
    ("A@@B.COM", "a@@b.com", False),
    (" a b@c.com ", "a b@c.com", False),
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
    ("  Anonymous ", True),
    # real ids
    ("c_123", False),
    ("1", False),
    ("00", False),
    ("10", False),
    ("abc", False),
    ("01", False),
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


# --- boolean -----------------------------------------------------------------

BOOLEAN_CASES = [
    ("true", True),
    ("True", True),
    ("TRUE", True),
    ("t", True),
    ("T", True),
    ("yes", True),
    ("YES", True),
    ("y", True),
    ("Y", True),
    ("1", True),
    ("  true  ", True),
    ("\tyes\n", True),
    ("false", False),
    ("False", False),
    ("FALSE", False),
    ("f", False),
    ("F", False),
    ("no", False),
    ("No", False),
    ("n", False),
    ("N", False),
    ("0", False),
    (" 0 ", False),
    # anything else -> null
    ("", None),
    ("   ", None),
    ("2", None),
    ("-1", None),
    ("1.0", None),
    ("00", None),
    ("tru", None),
    ("truee", None),
    ("yes!", None),
    ("on", None),
    ("off", None),
    ("null", None),
    ("t r u e", None),
    (None, None),
]


@pytest.mark.parametrize(("text", "expected"), BOOLEAN_CASES)
def test_boolean_maps_true_false_words_or_null(text, expected):
    assert _apply(norm.boolean, text) is expected


def test_boolean_returns_boolean_dtype():
    frame = pl.DataFrame({"v": ["yes", "n", "maybe", None]}, schema={"v": pl.String})
    out = frame.select(b=norm.boolean(pl.col("v")))
    assert out.schema["b"] == pl.Boolean
    assert out["b"].to_list() == [True, False, None, None]


# --- number ------------------------------------------------------------------

NUMBER_CASES = [
    ("0", 0.0),
    ("1", 1.0),
    ("42", 42.0),
    ("-1", -1.0),
    ("+1.5", 1.5),
    ("1.5", 1.5),
    ("-0.25", -0.25),
    ("0012", 12.0),
    ("  42  ", 42.0),
    ("\t3.14\n", 3.14),
    ("1e3", 1000.0),
    ("1E3", 1000.0),
    ("1e+3", 1000.0),
    ("1.5e-3", 0.0015),
    ("-2.5E2", -250.0),
    ("123456789012345678", 123456789012345678.0),
    ("1e308", 1e308),
    # anything else -> null
    ("", None),
    ("   ", None),
    ("abc", None),
    ("1,000", None),
    ("1 000", None),
    ("1_000", None),
    ("1.000,5", None),
    ("NaN", None),
    ("nan", None),
    ("inf", None),
    ("-inf", None),
    ("Infinity", None),
    ("+Infinity", None),
    ("1e400", None),  # overflows to infinity
    ("1.", None),
    (".5", None),
    ("1e", None),
    ("e3", None),
    ("--1", None),
    ("+-1", None),
    ("1.2.3", None),
    ("0x10", None),
    ("$5", None),
    ("5%", None),
    ("\u0661\u0662", None),  # Arabic-Indic digits
    ("\uff11\uff12", None),  # full-width digits
    ("true", None),
    (None, None),
]


@pytest.mark.parametrize(("text", "expected"), NUMBER_CASES)
def test_number_parses_plain_decimals_or_null(text, expected):
    result = _apply(norm.number, text)
    if expected is None:
        assert result is None
    else:
        assert isinstance(result, float)
        assert result == expected


def test_number_returns_float64_dtype():
    frame = pl.DataFrame({"v": ["1", "2.5", "NaN", None]}, schema={"v": pl.String})
    out = frame.select(n=norm.number(pl.col("v")))
    assert out.schema["n"] == pl.Float64
    assert out["n"].to_list() == [1.0, 2.5, None, None]
