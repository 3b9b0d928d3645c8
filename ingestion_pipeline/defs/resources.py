"""Configuration as a Dagster resource, filled from the INGEST_* environment."""

import dagster as dg

from ..landing import LandingStore, open_landing
from ..settings import Settings
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

    @classmethod
    def from_env(cls) -> "IngestResource":
        s = Settings.from_env()
        return cls(
            landing_url=s.landing_url,
            warehouse_dir=str(s.warehouse_dir),
            max_record_bytes=s.max_record_bytes,
            max_decoded_bytes=s.max_decoded_bytes,
        )

    def settings(self) -> Settings:
        return Settings.from_env(
            landing_url=self.landing_url,
            warehouse_dir=self.warehouse_dir,
            max_record_bytes=self.max_record_bytes,
            max_decoded_bytes=self.max_decoded_bytes,
        )

    def store(self) -> LandingStore:
        return open_landing(self.landing_url)

    def warehouse(self) -> Warehouse:
        return Warehouse(self.warehouse_dir)
