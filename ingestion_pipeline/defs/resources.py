"""Configuration as a Dagster resource, filled from the INGEST_* environment."""

import os
from datetime import timedelta

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import field_validator

from ..freshness import DEFAULT_FRESHNESS_HOURS, FRESHNESS_ENV, parse_freshness_hours
from ..landing import LandingStore, open_landing
from ..landing.s3 import client_options
from ..settings import Settings
from ..streams import STREAMS
from ..warehouse import Warehouse


class IngestResource(dg.ConfigurableResource):
    """Where files land and where the warehouse lives, plus the input limits."""

    landing_url: str = Settings.landing_url
    warehouse_dir: str = "data/warehouse"
    max_record_bytes: int = Settings.max_record_bytes
    max_decoded_bytes: int = Settings.max_decoded_bytes
    # A file counts as settled once unchanged for this long (size and mtime stable).
    settle_seconds: float = 5.0
    # At most this many new files are requested by one sensor tick.
    max_files_per_tick: int = 1000
    # S3 landing (landing/listing.py): every tick lists today's and yesterday's date
    # prefixes plus at most this many keys of a sweep over the whole bucket prefix,
    # and a new sweep starts this often.
    sweep_keys_per_tick: int = 20000
    full_listing_seconds: float = 600.0
    # `landing_freshness` checks: a stream is stale when its newest loaded file landed
    # longer ago than this many hours (per-stream overrides by stream name).
    # From INGEST_FRESHNESS_HOURS, e.g. `26` or `contact_event=2,default=26`.
    freshness_default_hours: float = DEFAULT_FRESHNESS_HOURS
    freshness_hours: dict[str, float] = {}
    # S3 landing: dagster-aws' S3Resource makes the boto3 client the landing store reads
    # with (endpoint, region, credentials, profile, retries). Unset: one from the AWS_*
    # environment (landing/s3.py client_options), credentials by boto3's chain.
    s3: S3Resource | None = None

    @field_validator("freshness_default_hours")
    @classmethod
    def _positive_default(cls, hours: float) -> float:
        if not hours > 0:
            raise ValueError(f"freshness_default_hours must be a positive number of hours, got {hours}")
        return hours

    @field_validator("freshness_hours")
    @classmethod
    def _known_streams(cls, hours: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(hours) - set(STREAMS))
        if unknown:
            raise ValueError(f"freshness_hours: unknown stream(s) {', '.join(unknown)}; streams: {', '.join(STREAMS)}")
        if bad := {s: h for s, h in hours.items() if not h > 0}:
            raise ValueError(f"freshness_hours must be positive numbers of hours, got {bad}")
        return hours

    @classmethod
    def from_env(cls) -> "IngestResource":
        s = Settings.from_env()
        default_hours, hours = parse_freshness_hours(os.environ.get(FRESHNESS_ENV))
        return cls(
            landing_url=s.landing_url,
            warehouse_dir=str(s.warehouse_dir),
            max_record_bytes=s.max_record_bytes,
            max_decoded_bytes=s.max_decoded_bytes,
            freshness_default_hours=default_hours,
            freshness_hours=hours,
        )

    def settings(self) -> Settings:
        return Settings.from_env(
            landing_url=self.landing_url,
            warehouse_dir=self.warehouse_dir,
            max_record_bytes=self.max_record_bytes,
            max_decoded_bytes=self.max_decoded_bytes,
        )

    def freshness_deadline(self, stream: str) -> timedelta:
        return timedelta(hours=self.freshness_hours.get(stream, self.freshness_default_hours))

    def store(self) -> LandingStore:
        s3 = self.s3 or S3Resource(**client_options())
        return open_landing(self.landing_url, s3_client=s3.get_client() if self.landing_url.startswith("s3://") else None)

    def warehouse(self) -> Warehouse:
        return Warehouse(self.warehouse_dir)
