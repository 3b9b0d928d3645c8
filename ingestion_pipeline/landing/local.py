"""A landing folder on the local file system."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

from .base import LandedFile, is_in_progress

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class LocalLandingStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.url = str(self.root)

    def _landed(self, rel: str, st: os.stat_result) -> LandedFile:
        return LandedFile(
            path=rel,
            size=st.st_size,
            version=str(st.st_mtime_ns),
            landed_at=EPOCH + timedelta(microseconds=st.st_mtime_ns // 1000),
        )

    def list_files(self, folder: str) -> Iterator[LandedFile]:
        top = self.root / folder
        stack = [top]
        while stack:
            current = stack.pop()
            try:
                entries = list(os.scandir(current))
            except FileNotFoundError:
                continue
            for entry in entries:
                if is_in_progress(entry.name):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    rel = Path(entry.path).relative_to(self.root).as_posix()
                    yield self._landed(rel, entry.stat())

    def open(self, file: LandedFile) -> BinaryIO:
        return open(self.root / file.path, "rb")
