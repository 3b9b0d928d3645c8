"""Durable local files: a temp name, fsync, rename, fsync of the folder. Used by the
local landing store (API uploads) and the run's local staging area."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import polars as pl


def atomic_path(path: Path) -> Path:
    """A temp name beside `path` (a dot name: a landing sensor ignores it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """fsync the temp file, rename it over the target, fsync the folder."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_parquet(frame: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
    """Atomic: a reader sees the old file or the new one, never half of one."""
    tmp = atomic_path(path)
    try:
        if isinstance(frame, pl.LazyFrame):
            frame.sink_parquet(tmp, compression="zstd")
        else:
            frame.write_parquet(tmp, compression="zstd", statistics=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
