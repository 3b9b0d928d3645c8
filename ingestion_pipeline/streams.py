"""The stream and feed registries: what each stream and landing folder accepts
(SPEC section 1).

A stream is a current-state table and the record shape it is built from. A feed is
a landing folder: the stream its files feed and how a record of that folder maps
onto the stream's columns. Streams and feeds are data, not code: adding a feed
means adding an entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldKind = Literal["id", "text", "email", "domain", "timestamp", "properties", "boolean", "number"]


@dataclass(frozen=True)
class FieldSpec:
    name: str  # column name in the warehouse
    kind: FieldKind
    source: str  # key in the landed record (JSON key or CSV column)
    required: bool = True


@dataclass(frozen=True)
class StreamSpec:
    name: str  # stream name, as in landing folders and the API
    table: str  # current-state table in the warehouse
    keys: tuple[str, ...]  # one row per key in the table
    kind: Literal["entity", "event"]
    fields: tuple[FieldSpec, ...]  # the API record shape (and the table's columns)
    # Optional discriminator the API record may carry: (field, expected value).
    discriminator: tuple[str, str] | None = None
    # Text columns of the table that another feed fills (null until it does),
    # placed before the properties column.
    extra_columns: tuple[str, ...] = ()
    api: bool = True  # accepted by the ingestion HTTP API

    @property
    def key_label(self) -> str:
        return " + ".join(self.keys)

    @property
    def properties_field(self) -> FieldSpec:
        return next(f for f in self.fields if f.kind == "properties")

    @property
    def batch_asset(self) -> str:
        return f"{self.name}_batch"


Derivation = Literal["track_event_id", "group_account"]


@dataclass(frozen=True)
class FeedSpec:
    """A landing folder, the stream its files feed, and its record mapping.

    `fields` are what a record of this folder carries, each named by the stream
    column it fills. A legacy feed has no properties object: every top-level key
    that is not one of its fields becomes a property (`extras_are_properties`), and
    that is its documented shape, not schema drift. `derive` names the columns the
    feed computes instead of reading (see pipeline.DERIVATIONS).
    """

    folder: str
    stream: StreamSpec
    fields: tuple[FieldSpec, ...]
    discriminator: tuple[str, str] | None = None
    extras_are_properties: bool = False
    derive: Derivation | None = None
    # Each record also says which account its contact belongs to (contact_id ->
    # account_id); the newest membership fills contacts.account_id.
    memberships: bool = False

    @property
    def properties_field(self) -> FieldSpec | None:
        return next((f for f in self.fields if f.kind == "properties"), None)

    @property
    def properties_column(self) -> str:
        return self.stream.properties_field.name

    @property
    def known_keys(self) -> tuple[str, ...]:
        keys = [f.source for f in self.fields]
        if self.discriminator:
            keys.append(self.discriminator[0])
        return tuple(keys)

    @property
    def required_columns(self) -> tuple[str, ...]:
        """CSV columns a file of this folder must have (properties come from the
        non-standard columns, so the properties column itself is optional)."""
        return tuple(f.source for f in self.fields if f.required and f.kind != "properties")

    @property
    def reports_drift(self) -> bool:
        return not self.extras_are_properties


def _api_feed(spec: StreamSpec) -> FeedSpec:
    return FeedSpec(folder=spec.name, stream=spec, fields=spec.fields, discriminator=spec.discriminator)


STREAMS: dict[str, StreamSpec] = {
    s.name: s
    for s in (
        StreamSpec(
            name="contact",
            table="contacts",
            keys=("contact_id",),
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
            keys=("account_id",),
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
            keys=("event_id",),
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
            keys=("event_id",),
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
        # The optional CRM feed (crm/): leads for customer-fit training.
        StreamSpec(
            name="crm",
            table="crm_leads",
            keys=("email", "account"),
            kind="entity",
            fields=(
                FieldSpec("email", "email", "email"),
                FieldSpec("account", "id", "account"),
                FieldSpec("created_at", "timestamp", "created_at"),
                FieldSpec("is_worked", "boolean", "is_worked"),
                FieldSpec("is_converted", "boolean", "is_converted"),
                FieldSpec("amount", "number", "amount"),
                FieldSpec("is_unqualified", "boolean", "is_unqualified", required=False),
                FieldSpec("worked_date", "timestamp", "worked_date", required=False),
                FieldSpec("converted_date", "timestamp", "converted_date", required=False),
                FieldSpec("deal_amount", "number", "deal_amount", required=False),
                FieldSpec("properties", "properties", "properties", required=False),
            ),
            api=False,
        ),
    )
}

_CONTACT, _ACCOUNT, _CONTACT_EVENT = STREAMS["contact"], STREAMS["account"], STREAMS["contact_event"]

FEEDS: dict[str, FeedSpec] = {
    **{name: _api_feed(spec) for name, spec in STREAMS.items() if spec.api},
    # Legacy flat-file feeds (reference/001: identify, track, group, CRM).
    "identify": FeedSpec(
        folder="identify",
        stream=_CONTACT,
        fields=(FieldSpec("contact_id", "id", "contact_key"), FieldSpec("email", "email", "email")),
        extras_are_properties=True,
    ),
    "track": FeedSpec(
        folder="track",
        stream=_CONTACT_EVENT,
        fields=(
            FieldSpec("contact_id", "id", "contact_key"),
            FieldSpec("event", "text", "event_text"),
            FieldSpec("event_timestamp", "timestamp", "event_timestamp"),
        ),
        extras_are_properties=True,
        derive="track_event_id",  # event_id = hash(contact_key, event_text, timestamp)
    ),
    "group": FeedSpec(
        folder="group",
        stream=_ACCOUNT,
        fields=(FieldSpec("contact_id", "id", "contact_key"), FieldSpec("account_id", "id", "account_key")),
        extras_are_properties=True,  # a `domain` attribute too: the domain comes from the key
        derive="group_account",  # the domain is the key when the key is a domain
        memberships=True,
    ),
    "crm": FeedSpec(
        folder="crm",
        stream=STREAMS["crm"],
        fields=tuple(f for f in STREAMS["crm"].fields if f.kind != "properties"),
        extras_are_properties=True,
    ),
}


def feed_for_path(path: str) -> FeedSpec | None:
    """The feed a landed file belongs to: the top folder of its path, at any depth."""
    top, sep, _ = path.partition("/")
    return FEEDS.get(top) if sep else None


def feeds_of_stream(stream: str) -> list[FeedSpec]:
    return [f for f in FEEDS.values() if f.stream.name == stream]


def as_feed(spec: StreamSpec | FeedSpec) -> FeedSpec:
    """A stream stands for its API-shaped folder."""
    return spec if isinstance(spec, FeedSpec) else FEEDS[spec.name]


def has_memberships(stream: str) -> bool:
    """Whether this stream's batches hold memberships (a feed like group/)."""
    return any(f.memberships for f in feeds_of_stream(stream))


def tables_fed_by(stream: str) -> list[StreamSpec]:
    """Streams whose current-state table reads this stream's batches: its own, and
    contacts when the stream carries memberships (they fill contacts.account_id)."""
    return [STREAMS[stream]] + ([_CONTACT] if has_memberships(stream) else [])
