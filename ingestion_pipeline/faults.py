"""Crash points for the crash-safety harness (docs/OPERATIONS.md, "Commit protocol").

Every durable step of an ingest (a parsed batch, a staging part, a staged file
published, a temp file written, a rename, a ledger segment) calls `point(label)`.
Two environment variables, read once per process, drive it:

- `INGEST_CRASH_AT=N`: the process SIGKILLs itself at its Nth point, the way the
  OOM killer or a lost machine would stop it (no `finally`, no atexit, no flush).
- `INGEST_CRASH_TRACE=FILE`: every point's number and label is appended to FILE,
  so a harness knows how many points a run has and where each one is.

Unset (the normal case) a point costs one attribute check. In-process tests can
run code of their own at a point with `at_points` (to make a concurrent commit
happen exactly between a writer's read and its commit).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator

_crash_at = int(os.environ.get("INGEST_CRASH_AT") or 0)
_trace = os.environ.get("INGEST_CRASH_TRACE") or None
_enabled = bool(_crash_at or _trace)
_count = 0
_hook: Callable[[str], None] | None = None


def point(label: str) -> None:
    if not _enabled:
        return
    _hit(label)


@contextlib.contextmanager
def at_points(hook: Callable[[str], None]) -> Iterator[None]:
    """Calls `hook(label)` at every point while the block runs (this process only)."""
    global _enabled, _hook
    _hook, _enabled = hook, True
    try:
        yield
    finally:
        _hook, _enabled = None, bool(_crash_at or _trace)


def _hit(label: str) -> None:
    global _count
    if _hook is not None:
        _hook(label)
    _count += 1
    if _trace:
        with open(_trace, "a") as fh:
            fh.write(f"{_count}\t{label}\n")
    if _count == _crash_at:
        os.kill(os.getpid(), signal.SIGKILL)
