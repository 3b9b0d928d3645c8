"""The landing-store interface: list file versions, open one as a byte stream, and
(for the ingestion API) write, stat, move and delete files atomically."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import BinaryIO, Protocol

IN_PROGRESS_SUFFIXES = (".tmp", ".part")
# API uploads wait here (outside every stream folder, so no sensor sees them) until
# confirmed; `generate-upload-url` points at `_uploads/<file_key>`.
PENDING_PREFIX = "_uploads"


def is_in_progress(name: str) -> bool:
    """Uploads in progress and markers are ignored until renamed (SPEC section 1)."""
    return name.startswith((".", "_")) or name.endswith(IN_PROGRESS_SUFFIXES)


class LandingError(Exception):
    """The landing store itself failed (unreachable, denied, changed underneath us):
    the file is not at fault, so its run fails and the next run retries it."""


@dataclass(frozen=True)
class LandedFile:
    """One version of a landed file: (path, size, version token)."""

    path: str  # posix path relative to the landing root, e.g. "contact/2026/11/a.jsonl"
    size: int
    version: str  # mtime in ns for a folder, the ETag for S3
    landed_at: datetime  # UTC; decides the landing day and the record version order

    @property
    def landing_date(self) -> date:
        return self.landed_at.date()

    @property
    def file_id(self) -> str:
        """A stable id of this file version, used to name its staged results."""
        return hashlib.sha1(f"{self.path}\0{self.size}\0{self.version}".encode()).hexdigest()[:20]


class LandingStore(Protocol):
    url: str
    # True when listing everything is costly (S3): the sensor then lists recent date
    # prefixes plus a slice of a sweep per tick (`list_page`; see listing.py).
    incremental_listing: bool
    # True when a listed file is always complete (S3 objects): no settling wait.
    atomic_writes: bool

    def list_files(self, folder: str) -> Iterator[LandedFile]:
        """File versions under a folder (a top folder or a sub-folder such as
        `contact/2026/11/23`), in-progress names excluded."""

    def open(self, file: LandedFile) -> BinaryIO:
        """The raw bytes of exactly this file version, as a stream (never whole in memory)."""

    def open_path(self, path: str) -> BinaryIO:
        """The raw bytes of whatever is at `path` now, as a stream."""

    def stat(self, path: str) -> LandedFile | None:
        """The current version at `path`, or None when nothing is there."""

    def write_bytes(self, path: str, data: bytes) -> LandedFile:
        """Writes `data` at `path` durably and atomically (no reader sees a partial file)."""

    def writer(self, path: str) -> AbstractContextManager[BinaryIO]:
        """A file object whose bytes appear at `path` only when the block exits cleanly."""

    def move(self, src: str, dst: str) -> LandedFile:
        """Makes `src` visible as `dst` (landed now) and removes `src`."""

    def delete(self, path: str) -> None:
        """Removes `path`; nothing there is not an error."""

    def presigned_put_url(self, path: str, expires_seconds: int) -> str | None:
        """A URL a client can PUT the bytes of `path` to, or None if the store has none."""
