"""The landing-store interface: list file versions, open one as a byte stream."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import BinaryIO, Iterator, Protocol

IN_PROGRESS_SUFFIXES = (".tmp", ".part")


def is_in_progress(name: str) -> bool:
    """Uploads in progress and markers are ignored until renamed (SPEC section 1)."""
    return name.startswith((".", "_")) or name.endswith(IN_PROGRESS_SUFFIXES)


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

    def list_files(self, folder: str) -> Iterator[LandedFile]:
        """Settled-or-not file versions under a top folder, in-progress names excluded."""

    def open(self, file: LandedFile) -> BinaryIO:
        """The raw bytes of the file, as a stream."""
