"""Normalisation rules of SPEC section 2.3, one polars expression each."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

JUNK_IDENTIFIERS = ["", "null", "undefined", "none", "-1", "0", "anonymous"]
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$"
DOMAIN_PATTERN = r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$"
EARLIEST_TIMESTAMP = datetime(1990, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = pl.duration(days=1)
ID_JSON_TYPES = ["VARCHAR", "BIGINT", "UBIGINT", "HUGEINT", "DOUBLE"]
TRUE_WORDS = ["true", "t", "yes", "y", "1"]
FALSE_WORDS = ["false", "f", "no", "n", "0"]
# ASCII digits only (regex `\d` is Unicode-aware); no NaN / inf / hex / separators.
NUMBER_PATTERN = r"^[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$"


def trim(value: pl.Expr) -> pl.Expr:
    return value.str.strip_chars()


def email(value: pl.Expr) -> pl.Expr:
    return trim(value).str.to_lowercase()


def is_valid_email(normalised: pl.Expr) -> pl.Expr:
    return normalised.str.contains(EMAIL_PATTERN)


def domain(value: pl.Expr) -> pl.Expr:
    """Bare lower-case host: no scheme, credentials, `www.`, path, port or trailing dot."""
    return (
        trim(value)
        .str.to_lowercase()
        .str.replace(r"^[a-z][a-z0-9+.-]*://", "")
        .str.replace(r"^[^/?#]*@", "")
        .str.replace(r"[/?#].*$", "")
        .str.replace(r":\d*$", "")
        .str.replace(r"\.+$", "")
        .str.replace(r"^www\.", "")
    )


def is_valid_domain(normalised: pl.Expr) -> pl.Expr:
    return normalised.str.contains(DOMAIN_PATTERN)


def is_junk_identifier(value: pl.Expr) -> pl.Expr:
    return trim(value).str.to_lowercase().is_in(JUNK_IDENTIFIERS)


def boolean(value: pl.Expr) -> pl.Expr:
    """true/t/yes/y/1 -> True, false/f/no/n/0 -> False (trimmed, any case); else null."""
    word = trim(value).str.to_lowercase()
    return (
        pl.when(word.is_in(TRUE_WORDS))
        .then(pl.lit(True))
        .when(word.is_in(FALSE_WORDS))
        .then(pl.lit(False))
        .otherwise(pl.lit(None, dtype=pl.Boolean))
    )


def number(value: pl.Expr) -> pl.Expr:
    """A plain decimal number (sign, digits, fraction, exponent) to Float64; else null.

    The regex guards the cast, which would otherwise accept NaN, inf and Infinity;
    values that overflow to infinity (1e400) are null too."""
    text = trim(value)
    parsed = text.cast(pl.Float64, strict=False)
    return pl.when(text.str.contains(NUMBER_PATTERN) & parsed.is_finite()).then(parsed).otherwise(pl.lit(None, dtype=pl.Float64))


def _iso(value: pl.Expr) -> pl.Expr:
    iso = (
        value.str.replace(r"^(\d{4}-\d\d-\d\d)[ tT]", "${1}T")
        .str.replace(r"[zZ]$", "+00:00")
        .str.replace(r"(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?[+-]\d\d)$", "${1}:00")
    )
    parse = iso.str.to_datetime
    return pl.coalesce(
        parse("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_zone="UTC", time_unit="us"),
        parse("%Y-%m-%dT%H:%M%z", strict=False, time_zone="UTC", time_unit="us"),
        parse("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us").dt.replace_time_zone("UTC"),
        parse("%Y-%m-%dT%H:%M", strict=False, time_unit="us").dt.replace_time_zone("UTC"),
        parse("%Y-%m-%d", strict=False, time_unit="us").dt.replace_time_zone("UTC"),
    )


def _unix(value: pl.Expr) -> pl.Expr:
    """Unix seconds, milliseconds or microseconds, told apart by magnitude."""
    as_int = value.cast(pl.Int64, strict=False)
    as_float = value.cast(pl.Float64, strict=False)
    magnitude = as_float.abs()
    micros = (
        pl.when(as_int.is_not_null() & (magnitude < 1e11))
        .then(as_int * 1_000_000)
        .when(as_int.is_not_null() & (magnitude < 1e14))
        .then(as_int * 1_000)
        .when(as_int.is_not_null() & (magnitude < 1e17))
        .then(as_int)
        .when(magnitude < 1e11)
        .then((as_float * 1e6).round().cast(pl.Int64, strict=False))
        .when(magnitude < 1e14)
        .then((as_float * 1e3).round().cast(pl.Int64, strict=False))
        .when(magnitude < 1e17)
        .then(as_float.round().cast(pl.Int64, strict=False))
    )
    return micros.cast(pl.Datetime("us", "UTC"))


def timestamp(value: pl.Expr) -> pl.Expr:
    """Any accepted timestamp text to a UTC datetime; null when it does not parse."""
    text = trim(value)
    numeric = text.str.contains(r"^-?\d+(?:\.\d+)?$")
    return pl.when(numeric).then(_unix(text)).otherwise(_iso(text))


def is_timestamp_in_range(ts: pl.Expr, landed_at: pl.Expr) -> pl.Expr:
    """Not before 1990 and not more than one day after the file landed (the landing
    time, not the processing time, so reprocessing gives the same answer)."""
    return (ts >= pl.lit(EARLIEST_TIMESTAMP)) & (ts <= landed_at + FUTURE_TOLERANCE)
