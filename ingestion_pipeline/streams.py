"""The stream registry: what each stream and landing folder accepts (SPEC section 1).

A stream is data, not code: adding a feed means adding an entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldKind = Literal["id", "text", "email", "domain", "timestamp", "properties"]


@dataclass(frozen=True)
class FieldSpec:
    name: str  # column name in the warehouse
    kind: FieldKind
    source: str  # key in the landed record
    required: bool = True


@dataclass(frozen=True)
class StreamSpec:
    name: str  # stream name, as in landing folders and the API
    table: str  # current-state table in the warehouse
    key: str  # one row per key in the table
    kind: Literal["entity", "event"]
    fields: tuple[FieldSpec, ...]
    # Optional discriminator the API record may carry: (field, expected value).
    discriminator: tuple[str, str] | None = None
    # Text columns of the table that another feed fills (null until it does),
    # placed before the properties column.
    extra_columns: tuple[str, ...] = ()

    @property
    def properties_field(self) -> FieldSpec:
        return next(f for f in self.fields if f.kind == "properties")

    @property
    def known_keys(self) -> tuple[str, ...]:
        keys = [f.source for f in self.fields]
        if self.discriminator:
            keys.append(self.discriminator[0])
        return tuple(keys)

    @property
    def batch_asset(self) -> str:
        return f"{self.name}_batch"


@dataclass(frozen=True)
class FeedSpec:
    """A landing folder and the stream its files feed."""

    folder: str
    stream: StreamSpec


STREAMS: dict[str, StreamSpec] = {
    s.name: s
    for s in (
        StreamSpec(
            name="contact",
            table="contacts",
            key="contact_id",
            kind="entity",
            fields=(
                FieldSpec("contact_id", "id", "contact_id"),
                FieldSpec("email", "email", "email"),
                FieldSpec("properties", "properties", "contact_properties"),
            ),
            discriminator=("type", "contact"),
            extra_columns=("account_id",),  # membership, from the group feed
        ),
        StreamSpec(
            name="account",
            table="accounts",
            key="account_id",
            kind="entity",
            fields=(
                FieldSpec("account_id", "id", "account_id"),
                FieldSpec("domain", "domain", "domain"),
                FieldSpec("properties", "properties", "account_properties"),
            ),
            discriminator=("type", "account"),
        ),
        StreamSpec(
            name="contact_event",
            table="contact_events",
            key="event_id",
            kind="event",
            fields=(
                FieldSpec("event_id", "id", "event_id"),
                FieldSpec("contact_id", "id", "contact_id"),
                FieldSpec("event", "text", "event"),
                FieldSpec("event_timestamp", "timestamp", "event_timestamp"),
                FieldSpec("properties", "properties", "event_properties"),
            ),
            discriminator=("event_type", "contact_event"),
        ),
        StreamSpec(
            name="account_event",
            table="account_events",
            key="event_id",
            kind="event",
            fields=(
                FieldSpec("event_id", "id", "event_id"),
                FieldSpec("account_id", "id", "account_id"),
                FieldSpec("event", "text", "event"),
                FieldSpec("event_timestamp", "timestamp", "event_timestamp"),
                FieldSpec("properties", "properties", "event_properties"),
            ),
            discriminator=("event_type", "account_event"),
        ),
    )
}

# Landing folders: the API-shaped folders. The legacy feeds (identify/, track/,
# group/, crm/) add their own entries with a field mapping.
FEEDS: dict[str, FeedSpec] = {name: FeedSpec(folder=name, stream=spec) for name, spec in STREAMS.items()}


def feed_for_path(path: str) -> FeedSpec | None:
    """The feed a landed file belongs to: the top folder of its path, at any depth."""
    top, sep, _ = path.partition("/")
    return FEEDS.get(top) if sep else None


def feeds_of_stream(stream: str) -> list[FeedSpec]:
    return [f for f in FEEDS.values() if f.stream.name == stream]
