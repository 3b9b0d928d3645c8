"""The bad-input corpus (corpus/cases.py): every file landed alone in a fresh landing
folder and warehouse, ingested, its table built, and its ledger row, rejected records
and loaded keys checked against the case's expected outcome (SPEC sections 1-3)."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from ingestion_pipeline.landing import LocalLandingStore
from ingestion_pipeline.pipeline import build_table, ingest_partition
from ingestion_pipeline.settings import Settings
from ingestion_pipeline.warehouse import Warehouse

from .corpus.cases import BY_ID, CASES, DAY, LANDED_AT, MIB, Case


def land(root: Path, rel: str, data: bytes) -> None:
    """Writes the bytes as they are (no implicit gzip), mtime = LANDED_AT."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (LANDED_AT.timestamp(), LANDED_AT.timestamp()))


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {case.bug}")] if case.bug else []
    return pytest.param(case, id=case.id, marks=marks)


def test_corpus_is_big_enough():
    assert len(CASES) >= 45


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_corpus_case(case: Case, tmp_path):
    landing_root = tmp_path / "landing"
    land(landing_root, case.path, case.content())
    settings = Settings(landing_url=str(landing_root), warehouse_dir=tmp_path / "warehouse", **dict(case.settings))
    report = ingest_partition(settings, LocalLandingStore(landing_root), case.stream, DAY, run_id="corpus")
    build_table(settings, case.stream)
    con = Warehouse(settings.warehouse_dir).connect()

    assert report.errors == [], "the pipeline itself broke"
    ledger = con.sql(
        "select file, status, rows_read, rows_loaded, rows_rejected, rows_duplicate, first_error from ingested_files"
    ).fetchall()
    assert len(ledger) == 1, ledger
    file, status, read, loaded, rejected, duplicate, first_error = ledger[0]
    assert file == case.path
    assert (status, (read, loaded, rejected, duplicate)) == (case.status, case.counts), first_error
    assert read == loaded + rejected + duplicate
    if case.first_error is None:
        assert first_error is None
    else:
        assert first_error is not None and first_error.startswith(case.first_error), first_error
        assert case.error_contains in first_error

    rejects = con.sql("select line, field, rule from rejected_records order by line nulls first, field").fetchall()
    assert rejects == list(case.rejects)
    assert con.execute("select count(*) from rejected_records where file <> ? or stream <> ?", [case.path, case.stream]).fetchall() == [
        (0,)
    ]

    keys = sorted(r[0] for r in con.sql(f"select {case.key_sql} from {case.table}").fetchall())
    assert keys == sorted(case.keys)
    for sql, expected in case.values:
        assert con.sql(sql).fetchall() == expected, sql
    # Last, so that a case xfailed for it has passed every other check first.
    if rejected:  # a record-level rejection keeps its raw text (whole-file ones have none)
        assert con.sql("select line, rule from rejected_records where raw is null").fetchall() == []


@pytest.mark.parametrize(
    "case_id",
    [
        "gzip_bomb",
        "gzip_bomb_csv_after_a_good_header",
        "gzip_bomb_json_document",
    ],
)
def test_gzip_bomb_is_refused_without_being_unpacked(case_id, tmp_path):
    """SPEC 1: a gzip bomb is refused, not unpacked. The bomb decodes to 200 MiB and the
    cap is 50 MiB: the decoded bytes Python holds at once must stay below the cap plus
    two read batches."""
    case = BY_ID[case_id]
    data = case.content()
    landing_root = tmp_path / "landing"
    land(landing_root, case.path, data)
    del data
    settings = Settings(landing_url=str(landing_root), warehouse_dir=tmp_path / "warehouse", **dict(case.settings))
    tracemalloc.start()
    try:
        report = ingest_partition(settings, LocalLandingStore(landing_root), case.stream, DAY, run_id="bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.files[0]["status"] == "rejected"
    assert report.files[0]["first_error"].startswith("file: decoded_size_limit: ")
    assert peak < settings.max_decoded_bytes + 2 * settings.batch_bytes, f"peak {peak / MIB:.0f} MiB"
