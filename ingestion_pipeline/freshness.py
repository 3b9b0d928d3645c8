"""Landing freshness: how long ago the newest loaded file of a stream landed, against
a per-stream deadline (INGEST_FRESHNESS_HOURS). Pure helpers, no Dagster."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from . import status
from .streams import STREAMS

FRESHNESS_ENV = "INGEST_FRESHNESS_HOURS"
DEFAULT_FRESHNESS_HOURS = 26.0  # a daily feed plus two hours of slack


def _hours(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{FRESHNESS_ENV}: {what} must be a positive number of hours, got {text!r}")
    return value


def parse_freshness_hours(text: str | None, default: float = DEFAULT_FRESHNESS_HOURS) -> tuple[float, dict[str, float]]:
    """`26` (every stream) or `contact_event=2,default=26` -> (default hours, hours per stream).

    Unknown streams, duplicates, non-positive or non-numeric hours raise ValueError
    with a message naming the variable and the offending item."""
    per_stream: dict[str, float] = {}
    default_set = False
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip() if eq else "default"
        value = value.strip() if eq else item
        if name == "default":
            if default_set:
                raise ValueError(f"{FRESHNESS_ENV}: the default is given twice in {text!r}")
            default, default_set = _hours(value, "the default"), True
        elif name in STREAMS:
            if name in per_stream:
                raise ValueError(f"{FRESHNESS_ENV}: stream {name!r} is given twice in {text!r}")
            per_stream[name] = _hours(value, f"stream {name!r}")
        else:
            raise ValueError(
                f"{FRESHNESS_ENV}: unknown stream {name!r} in {text!r}; expected HOURS or "
                f"stream=HOURS items separated by commas, streams: {', '.join(STREAMS)}, default"
            )
    return default, per_stream


@dataclass(frozen=True)
class StreamFreshness:
    stream: str
    deadline: timedelta
    now: datetime
    newest_landed_at: datetime | None  # newest landed_at of a loaded file; None: no file loaded yet
    files_loaded: int

    @property
    def age(self) -> timedelta | None:
        if self.newest_landed_at is None:
            return None
        return max(self.now - self.newest_landed_at, timedelta(0))  # a clock ahead of ours is not negative age

    @property
    def fresh(self) -> bool:
        """No file yet counts as fresh: a stream that was never fed is not late."""
        return self.age is None or self.age <= self.deadline

    def describe(self) -> str:
        deadline = f"{self.deadline / timedelta(hours=1):g} h"
        if self.newest_landed_at is None:
            return f"no {self.stream} file loaded yet (deadline {deadline} starts with the first file)"
        age = f"{self.age / timedelta(hours=1):.1f} h"
        state = "fresh" if self.fresh else "STALE"
        return f"{state}: the newest loaded {self.stream} file landed {age} ago (deadline {deadline})"


def stream_freshness(ledger: pl.DataFrame, stream: str, deadline: timedelta, now: datetime) -> StreamFreshness:
    """Freshness of one stream from ledger rows (columns stream, landed_at, status).
    Only files whose records reached the tables count: `loaded`, `partially_loaded`."""
    loaded = ledger.filter((pl.col("stream") == stream) & pl.col("status").is_in(status.values(status.LOADED)))
    newest = loaded["landed_at"].max() if loaded.height else None
    return StreamFreshness(stream, deadline, now, newest, loaded.height)
