"""Landing stores: where files arrive. `open_landing` picks the store for a URL."""

from __future__ import annotations

from .base import PENDING_PREFIX, LandedFile, LandingError, LandingStore, is_in_progress
from .local import LocalLandingStore


def open_landing(url: str, s3_client=None) -> LandingStore:
    """The store for `url`; an S3 store uses `s3_client` (a boto3 S3 client) when given,
    else one made from the AWS_* environment."""
    if url.startswith("s3://"):
        from .s3 import S3LandingStore

        return S3LandingStore(url, client=s3_client)
    return LocalLandingStore(url)


__all__ = ["PENDING_PREFIX", "LandedFile", "LandingError", "LandingStore", "LocalLandingStore", "is_in_progress", "open_landing"]
