"""Validation with pandera's polars backend: a stream's rules as one schema.

Each check is named by the rule code users see in `rejected_records`
(`missing_field`, `invalid_type`, `invalid_email`...). A record that breaks several
rules is reported once, under its first broken rule in field order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pandera.polars as pa
import polars as pl

from . import normalise as norm
from .streams import FeedSpec, FieldSpec, StreamSpec, as_feed

REJECT_SCHEMA = {"line": pl.Int64, "field": pl.String, "rule": pl.String, "message": pl.String, "raw": pl.String}

TYPE_ALLOWED: dict[str, list[str]] = {
    "id": norm.ID_JSON_TYPES,
    "text": ["VARCHAR", "BIGINT", "UBIGINT", "DOUBLE"],
    "email": ["VARCHAR"],
    "domain": ["VARCHAR"],
    "timestamp": ["VARCHAR", "BIGINT", "UBIGINT", "DOUBLE"],
    "properties": ["OBJECT"],
    "boolean": ["VARCHAR", "BOOLEAN", "BIGINT", "UBIGINT"],
    "number": ["VARCHAR", "BIGINT", "UBIGINT", "HUGEINT", "DOUBLE"],
}
JSON_TYPE_NAMES = {
    "VARCHAR": "a string",
    "BIGINT": "a number",
    "UBIGINT": "a number",
    "HUGEINT": "a number",
    "DOUBLE": "a number",
    "BOOLEAN": "a boolean",
    "OBJECT": "an object",
    "ARRAY": "an array",
    "NULL": "null",
}
TYPE_WANTED = {
    "id": "a string (or a number)",
    "text": "a string",
    "email": "a string",
    "domain": "a string",
    "timestamp": "an ISO 8601 string or unix time",
    "properties": "a JSON object",
    "boolean": "a boolean (true/false)",
    "number": "a number",
}


@dataclass(frozen=True)
class Rule:
    code: str
    ok: Callable[[FieldSpec], pl.Expr]  # True when the record passes
    message: Callable[[FieldSpec], pl.Expr]


def _value(f: FieldSpec) -> pl.Expr:
    return pl.col(f.name)


def _norm(f: FieldSpec) -> pl.Expr:
    return pl.col(f"{f.name}__norm")


def _jtype(f: FieldSpec) -> pl.Expr:
    return pl.col(f"{f.name}__type")


def _present(f: FieldSpec) -> pl.Expr:
    if f.kind == "properties":
        return _jtype(f).is_not_null() & (_jtype(f) != "NULL")
    return _value(f).is_not_null() & (norm.trim(_value(f)) != "")


def _quoted(expr: pl.Expr) -> pl.Expr:
    return pl.format("'{}'", expr.str.slice(0, 200))


COMMON_RULES = [
    Rule(
        "missing_field",
        lambda f: _present(f) if f.required else pl.lit(True),
        lambda f: pl.lit(f"required field '{f.source}' is missing, null or empty"),
    ),
    Rule(
        "invalid_type",
        lambda f: ~_present(f) | _jtype(f).is_in(TYPE_ALLOWED[f.kind]),
        lambda f: pl.format(
            "field '{}' must be {}, got {}",
            pl.lit(f.source),
            pl.lit(TYPE_WANTED[f.kind]),
            _jtype(f).replace_strict(JSON_TYPE_NAMES, default="another JSON type"),
        ),
    ),
]
KIND_RULES: dict[str, list[Rule]] = {
    "id": [
        Rule(
            "junk_identifier",
            lambda f: ~_present(f) | ~norm.is_junk_identifier(_value(f)),
            lambda f: pl.format("field '{}' is a placeholder identifier {}, not a real id", pl.lit(f.source), _quoted(_value(f))),
        )
    ],
    "email": [
        Rule(
            "invalid_email",
            lambda f: ~_present(f) | norm.is_valid_email(_norm(f)),
            lambda f: pl.format("field '{}' is not a valid email address: {}", pl.lit(f.source), _quoted(_value(f))),
        )
    ],
    "domain": [
        Rule(
            "invalid_domain",
            lambda f: ~_present(f) | norm.is_valid_domain(_norm(f)),
            lambda f: pl.format("field '{}' is not a valid domain: {}", pl.lit(f.source), _quoted(_value(f))),
        )
    ],
    "timestamp": [
        Rule(
            "invalid_timestamp",
            lambda f: ~_present(f) | _norm(f).is_not_null(),
            lambda f: pl.format(
                "field '{}' is not a timestamp: {} (ISO 8601, or unix seconds/milliseconds/microseconds)",
                pl.lit(f.source),
                _quoted(_value(f)),
            ),
        ),
        Rule(
            "timestamp_out_of_range",
            lambda f: _norm(f).is_null() | norm.is_timestamp_in_range(_norm(f), pl.col("_landed_at")),
            lambda f: pl.format(
                "field '{}' is out of range: {} is before 1990 or more than one day after the file landed",
                pl.lit(f.source),
                _norm(f).dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"),
            ),
        ),
    ],
    "boolean": [
        Rule(
            "invalid_boolean",
            lambda f: ~_present(f) | _norm(f).is_not_null(),
            lambda f: pl.format("field '{}' is not a boolean: {} (true/false, yes/no, 1/0)", pl.lit(f.source), _quoted(_value(f))),
        )
    ],
    "number": [
        Rule(
            "invalid_number",
            lambda f: ~_present(f) | _norm(f).is_not_null(),
            lambda f: pl.format("field '{}' is not a number: {}", pl.lit(f.source), _quoted(_value(f))),
        )
    ],
}

NORMALISERS: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "id": norm.trim,
    "text": norm.trim,
    "email": norm.email,
    "domain": norm.domain,
    "timestamp": norm.timestamp,
    "properties": lambda e: e,
    "boolean": norm.boolean,
    "number": norm.number,
}


def rules_for(field: FieldSpec) -> list[Rule]:
    return COMMON_RULES + KIND_RULES.get(field.kind, [])


def _check(rule: Rule, field: FieldSpec) -> pa.Check:
    expr = rule.ok(field).fill_null(False)
    return pa.Check(lambda data: data.lazyframe.select(expr), name=rule.code, ignore_na=False)


def build_schema(feed: FeedSpec) -> pa.DataFrameSchema:
    columns = {f.name: pa.Column(None, nullable=True, checks=[_check(r, f) for r in rules_for(f)], required=True) for f in feed.fields}
    if feed.discriminator:
        name, expected = feed.discriminator
        columns["_discriminator"] = pa.Column(
            None,
            nullable=True,
            checks=[
                pa.Check(
                    lambda data: data.lazyframe.select(pl.col("_discriminator").is_null() | (pl.col("_discriminator") == expected)),
                    name="wrong_stream",
                    ignore_na=False,
                )
            ],
        )
    return pa.DataFrameSchema(columns, name=f"{feed.folder}/ record")


def with_candidates(parsed: pl.DataFrame, feed: FeedSpec) -> pl.DataFrame:
    """Adds the normalised value of every field next to its raw text."""
    return parsed.with_columns(NORMALISERS[f.kind](pl.col(f.name)).alias(f"{f.name}__norm") for f in feed.fields)


class Validator:
    def __init__(self, spec: FeedSpec | StreamSpec):
        self.feed = feed = as_feed(spec)
        self.schema = build_schema(feed)
        self._field_order = {f.name: i for i, f in enumerate(feed.fields)}
        self._field_order["_discriminator"] = len(feed.fields)

    def validate(self, parsed: pl.DataFrame, landed_at: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(valid records with `<field>__norm` columns, rejected records)."""
        parse_failed = parsed.filter(pl.col("error").is_not_null())
        candidates = with_candidates(
            parsed.filter(pl.col("error").is_null()).with_columns(_landed_at=pl.lit(landed_at, pl.Datetime("us", "UTC"))),
            self.feed,
        )
        rejects = [
            parse_failed.select("line", field=pl.lit(None, pl.String), rule="error", message="message", raw="raw").cast(REJECT_SCHEMA)
        ]
        try:
            self.schema.validate(candidates, lazy=True)
            return candidates, pl.concat(rejects)
        except pa.errors.SchemaErrors as exc:
            failures = exc.failure_cases
        first = (
            failures.filter(pl.col("index").is_not_null())
            .with_columns(order=pl.col("column").replace_strict(self._field_order, default=99, return_dtype=pl.Int64))
            .sort("index", "order", "check_number")
            .unique("index", keep="first", maintain_order=True)
            .select(pl.col("index").cast(pl.UInt32), "column", rule="check")
        )
        indexed = candidates.with_row_index("index")
        failed = indexed.join(first, on="index", how="inner")
        rejects.append(self._reject_rows(failed))
        valid = indexed.join(first, on="index", how="anti").drop("index")
        return valid, pl.concat(rejects)

    def _reject_rows(self, failed: pl.DataFrame) -> pl.DataFrame:
        parts = []
        for field in self.feed.fields:
            for rule in rules_for(field):
                sel = failed.filter((pl.col("column") == field.name) & (pl.col("rule") == rule.code))
                if sel.height:
                    parts.append(
                        sel.select("line", field=pl.lit(field.source), rule=pl.lit(rule.code), message=rule.message(field), raw="raw")
                    )
        if self.feed.discriminator:
            name, expected = self.feed.discriminator
            sel = failed.filter(pl.col("column") == "_discriminator")
            if sel.height:
                parts.append(
                    sel.select(
                        "line",
                        field=pl.lit(name),
                        rule=pl.lit("wrong_stream"),
                        message=pl.format(
                            "field '{}' is {} but this folder takes '{}' records",
                            pl.lit(name),
                            _quoted(pl.col("_discriminator")),
                            pl.lit(expected),
                        ),
                        raw="raw",
                    )
                )
        return pl.concat([p.cast(REJECT_SCHEMA) for p in parts]) if parts else pl.DataFrame(schema=REJECT_SCHEMA)
