"""Landing stores: where files arrive. `open_landing` picks the store for a URL."""

from __future__ import annotations

from .base import LandedFile, LandingStore, is_in_progress
from .local import LocalLandingStore


def open_landing(url: str) -> LandingStore:
    if url.startswith("s3://"):
        raise NotImplementedError("S3 landing (s3://...) is not available yet; use a local folder")
    return LocalLandingStore(url)


__all__ = ["LandedFile", "LandingStore", "LocalLandingStore", "is_in_progress", "open_landing"]
