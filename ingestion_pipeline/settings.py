"""Runtime settings: one place that reads the INGEST_* environment variables (SPEC section 4)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def warehouse_location(value: str | os.PathLike) -> Path | str:
    """A warehouse is a local folder (a Path) or `s3://bucket/prefix` (kept as text)."""
    text = str(value)
    return text.rstrip("/") if text.startswith("s3://") else Path(value)


@dataclass(frozen=True)
class Settings:
    landing_url: str = "data/landing"
    # A folder, or s3://bucket/prefix on any S3-compatible store (AWS_ENDPOINT_URL).
    warehouse_dir: Path | str = field(default_factory=lambda: Path("data/warehouse"))
    # A single record (line) larger than this is rejected with its line number.
    max_record_bytes: int = 1 * MIB
    # Decoded size cap per file: a gzip bomb is refused, never unpacked.
    max_decoded_bytes: int = 32 * 1024 * MIB
    # A `.json` document (array or upload payload) is parsed whole up to this size.
    max_document_bytes: int = 256 * MIB
    # Bytes of decoded input handed to the parser at once (bounded memory).
    batch_bytes: int = 16 * MIB
    # The maintenance vacuum deletes files only versions older than this need
    # (time travel reaches back this far).
    retention_hours: float = 168.0

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        env = dict(
            landing_url=os.environ.get("INGEST_LANDING_URL") or cls.landing_url,
            warehouse_dir=os.environ.get("INGEST_WAREHOUSE_DIR") or "data/warehouse",
            max_record_bytes=_int_env("INGEST_MAX_RECORD_BYTES", cls.max_record_bytes),
            max_decoded_bytes=_int_env("INGEST_MAX_DECODED_BYTES", cls.max_decoded_bytes),
            max_document_bytes=_int_env("INGEST_MAX_DOCUMENT_BYTES", cls.max_document_bytes),
            batch_bytes=_int_env("INGEST_BATCH_BYTES", cls.batch_bytes),
            retention_hours=float(os.environ.get("INGEST_RETENTION_HOURS") or cls.retention_hours),
        )
        env.update({k: v for k, v in overrides.items() if v is not None})
        env["warehouse_dir"] = warehouse_location(env["warehouse_dir"])
        return cls(**env)

    @property
    def warehouse_is_remote(self) -> bool:
        return str(self.warehouse_dir).startswith("s3://")
