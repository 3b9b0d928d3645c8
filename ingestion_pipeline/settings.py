"""Runtime settings: one place that reads the INGEST_* environment variables (SPEC section 4)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class Settings:
    landing_url: str = "data/landing"
    warehouse_dir: Path = field(default_factory=lambda: Path("data/warehouse"))
    # A single record (line) larger than this is rejected with its line number.
    max_record_bytes: int = 1 * MIB
    # Decoded size cap per file: a gzip bomb is refused, never unpacked.
    max_decoded_bytes: int = 32 * 1024 * MIB
    # A `.json` document (array or upload payload) is parsed whole up to this size.
    max_document_bytes: int = 256 * MIB
    # Bytes of decoded input handed to the parser at once (bounded memory).
    batch_bytes: int = 16 * MIB

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        env = dict(
            landing_url=os.environ.get("INGEST_LANDING_URL") or cls.landing_url,
            warehouse_dir=Path(os.environ.get("INGEST_WAREHOUSE_DIR") or "data/warehouse"),
            max_record_bytes=_int_env("INGEST_MAX_RECORD_BYTES", cls.max_record_bytes),
            max_decoded_bytes=_int_env("INGEST_MAX_DECODED_BYTES", cls.max_decoded_bytes),
            max_document_bytes=_int_env("INGEST_MAX_DOCUMENT_BYTES", cls.max_document_bytes),
            batch_bytes=_int_env("INGEST_BATCH_BYTES", cls.batch_bytes),
        )
        env.update({k: v for k, v in overrides.items() if v is not None})
        if not isinstance(env["warehouse_dir"], Path):
            env["warehouse_dir"] = Path(env["warehouse_dir"])
        return cls(**env)
