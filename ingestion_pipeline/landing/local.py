"""A landing folder on the local file system."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..localfs import atomic_path, commit, fsync_dir
from .base import LandedFile, is_in_progress

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LocalLandingStore:
    incremental_listing = False  # a directory walk is cheap: always list everything
    atomic_writes = False  # a file grows while it is written: the sensor waits for it to settle

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

    def _abs(self, path: str) -> Path:
        full = (self.root / path).resolve()
        if not full.is_relative_to(self.root.resolve()):
            raise ValueError(f"path {path!r} leaves the landing folder")
        return full

    def list_files(self, folder: str) -> Iterator[LandedFile]:
        # Relative paths are joined as strings: a Path object per file was most of
        # the cost of a sensor tick over 100k files (bench/local_sensor_tick.py).
        top = PurePosixPath(folder).as_posix()
        stack = [(str(self.root / folder), "" if top == "." else top + "/")]
        while stack:
            current, prefix = stack.pop()
            try:
                entries = list(os.scandir(current))
            except FileNotFoundError:
                continue
            for entry in entries:
                if is_in_progress(entry.name):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, f"{prefix}{entry.name}/"))
                elif entry.is_file():
                    yield self._landed(prefix + entry.name, entry.stat())

    def open(self, file: LandedFile) -> BinaryIO:
        return open(self.root / file.path, "rb")

    def open_path(self, path: str) -> BinaryIO:
        return open(self._abs(path), "rb")

    def stat(self, path: str) -> LandedFile | None:
        try:
            return self._landed(path, os.stat(self._abs(path)))
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def writer(self, path: str):
        final = self._abs(path)
        tmp = atomic_path(final)  # a dot name: the sensor ignores it while it is written
        try:
            with open(tmp, "wb") as out:
                yield out
            commit(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def write_bytes(self, path: str, data: bytes) -> LandedFile:
        with self.writer(path) as out:
            out.write(data)
        return self.stat(path)

    def move(self, src: str, dst: str) -> LandedFile:
        source, target = self._abs(src), self._abs(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.utime(source)  # landed now: it becomes visible now
        os.replace(source, target)
        fsync_dir(target.parent)
        return self.stat(dst)

    def delete(self, path: str) -> None:
        self._abs(path).unlink(missing_ok=True)

    def presigned_put_url(self, path: str, expires_seconds: int) -> str | None:
        return None
