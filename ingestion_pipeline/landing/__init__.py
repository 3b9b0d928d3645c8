"""Landing stores: where files arrive. `open_landing` picks the store for a URL."""

from __future__ import annotations

from .base import PENDING_PREFIX, LandedFile, LandingError, LandingStore, is_in_progress
from .local import LocalLandingStore


def open_landing(url: str) -> LandingStore:
    if url.startswith("s3://"):
        from .s3 import S3LandingStore

        return S3LandingStore(url)
    return LocalLandingStore(url)


__all__ = ["PENDING_PREFIX", "LandedFile", "LandingError", "LandingStore", "LocalLandingStore", "is_in_progress", "open_landing"]
