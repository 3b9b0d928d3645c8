"""A landed file version's status in the ledger (`ingested_files.status`), and the
transitions between statuses, in one place.

    (new) ──stage──> loaded | partially_loaded | rejected      a staged result
    (new) ──fail───> failed                                    the pipeline broke
    loaded | partially_loaded ──skip_duplicate──> skipped_duplicate
    failed ──stage | fail──> ...                               retried by the next run
    done ──restage (reprocess)──> loaded | partially_loaded | rejected
    done ──fail (reprocess)──> keeps its previous result

Everything that reads or writes a status (the ledger, the API, the checks, the CLI,
the sensor) uses these names and sets. Rows hold the plain string (`.value`).
"""

from __future__ import annotations

from enum import StrEnum


class FileStatus(StrEnum):
    LOADED = "loaded"  # every record loaded or deduplicated
    PARTIALLY_LOADED = "partially_loaded"  # some records rejected
    REJECTED = "rejected"  # nothing loaded: unreadable, empty, or every record rejected
    SKIPPED_DUPLICATE = "skipped_duplicate"  # same content as a file already loaded
    FAILED = "failed"  # the pipeline itself broke; the next run retries it


# Recorded for good: a file version with one of these is not processed again.
DONE = frozenset({FileStatus.LOADED, FileStatus.PARTIALLY_LOADED, FileStatus.REJECTED, FileStatus.SKIPPED_DUPLICATE})
# Its records are in the tables.
LOADED = frozenset({FileStatus.LOADED, FileStatus.PARTIALLY_LOADED})
# Its rejected records are in `rejected_records` (a skipped duplicate's are not).
WITH_REJECTS = frozenset({FileStatus.LOADED, FileStatus.PARTIALLY_LOADED, FileStatus.REJECTED})

STAGED = frozenset({FileStatus.LOADED, FileStatus.PARTIALLY_LOADED, FileStatus.REJECTED})
ALLOWED: dict[FileStatus | None, frozenset[FileStatus]] = {
    None: STAGED | {FileStatus.FAILED},
    FileStatus.FAILED: STAGED | {FileStatus.FAILED},
    FileStatus.LOADED: STAGED | {FileStatus.SKIPPED_DUPLICATE},
    FileStatus.PARTIALLY_LOADED: STAGED | {FileStatus.SKIPPED_DUPLICATE},
    FileStatus.REJECTED: STAGED,
    FileStatus.SKIPPED_DUPLICATE: STAGED | {FileStatus.SKIPPED_DUPLICATE},
}


class InvalidTransition(ValueError):
    pass


def check(old: str | None, new: str) -> FileStatus:
    """`new` as a FileStatus, if a file may go from `old` to it."""
    target = FileStatus(new)
    if target not in ALLOWED[FileStatus(old) if old is not None else None]:
        raise InvalidTransition(f"a file cannot go from status {old} to {new}")
    return target


def staged(rows_loaded: int, rows_rejected: int) -> FileStatus:
    """The status of a file the pipeline read to the end."""
    if rows_loaded == 0:
        return FileStatus.REJECTED
    return FileStatus.PARTIALLY_LOADED if rows_rejected else FileStatus.LOADED


def stage(row: dict, rows_loaded: int, rows_rejected: int) -> dict:
    row["status"] = check(row.get("status"), staged(rows_loaded, rows_rejected)).value
    return row


def fail(row: dict, error: Exception) -> dict:
    row.update(status=check(row.get("status"), FileStatus.FAILED).value, first_error=f"{type(error).__name__}: {error}", rows_read=0)
    return row


def skip_duplicate(row: dict, sha256: str, original: str) -> dict:
    row.update(
        status=check(row["status"], FileStatus.SKIPPED_DUPLICATE).value,
        rows_read=0,
        rows_loaded=0,
        rows_rejected=0,
        rows_duplicate=0,
        first_error=f"same content (sha256 {sha256[:12]}) as already loaded {original}",
    )
    return row


def values(statuses) -> list[str]:
    """Plain strings, for filters in polars and SQL."""
    return sorted(str(s) for s in statuses)
