"""`ingestion-pipeline erase`: a privacy erasure of a contact, on real files, real
Delta tables, real DuckDB and the real CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from ingestion_pipeline.cli import main
from ingestion_pipeline.erasure import ErasureError, erase, suppress_staged
from ingestion_pipeline.pipeline import build_table, ingest_partition, pending_by_partition
from ingestion_pipeline.streams import STREAMS

from .conftest import DAY1, DAY2, contact, event, local_warehouse_only, utc, warehouse_files

ERASED_AT = utc(2026, 11, 22)  # after DAY1 and DAY2's files landed
ANN, ANN_EMAIL = "ann-0001", "ann@example.com"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def crm(email, account, amount="10"):
    return {"email": email, "account": account, "created_at": "1763600000", "is_worked": "true", "is_converted": "false", "amount": amount}


def land_two_days(landing):
    """Ann (ann-0001) everywhere: contact, events, membership, CRM lead, rejected
    records; Bob and Carol alongside her in the same files."""
    landing.put(
        "contact/day1.jsonl",
        [
            contact(ANN, " Ann@Example.com", {"plan": "free"}),
            contact("bob-0002", "bob@example.com", {"plan": "pro"}),
            contact("undefined", "ann@example.com"),  # rejected: junk id, carries Ann's email
            contact("bob-0002", "not-an-email"),  # rejected: Bob's
        ],
        utc(2026, 11, 20, 8),
    )
    landing.put(
        "contact_event/day1.jsonl",
        [
            event("ev-1", ANN, "signup"),
            event("ev-2", "bob-0002", "signup"),
            event("ev-3", ANN, ts="yesterday"),  # rejected: Ann's
            event("ev-4", "bob-0002", ts="yesterday"),  # rejected: Bob's
        ],
        utc(2026, 11, 20, 9),
    )
    landing.put(
        "group/day1.jsonl",
        [{"contact_key": ANN, "account_key": "acme.com"}, {"contact_key": "bob-0002", "account_key": "beta.com"}],
        utc(2026, 11, 20, 10),
    )
    landing.put("crm/day1.jsonl", [crm(ANN_EMAIL, "acme"), crm("bob@example.com", "beta")], utc(2026, 11, 20, 11))
    landing.put(
        "identify/day2.csv",
        f"contact_key,email,plan\n{ANN},ann@example.com,pro\ncarol-0003,carol@example.com,free\n",
        utc(2026, 11, 21, 8),
    )
    landing.put(
        "track/day2.jsonl",
        [
            {"event_text": "open", "event_timestamp": 1763700000, "contact_key": ANN},
            {"event_text": "open", "event_timestamp": 1763700000, "contact_key": "carol-0003"},
        ],
        utc(2026, 11, 21, 9),
    )
    landing.put(
        "account_event/day2.jsonl",
        [
            {
                "event_id": "ae-1",
                "account_id": "acme.com",
                "event": "renewal",
                "event_timestamp": "2026-11-21T08:00:00Z",
                "event_properties": {},
            }
        ],
        utc(2026, 11, 21, 10),
    )


def ingest_pending(settings, landing, **kw):
    """What a run does, without Dagster: every pending day, then every table."""
    for stream, day in sorted(pending_by_partition(settings, landing.store)):
        ingest_partition(settings, landing.store, stream, day, run_id="test-run", **kw)
    rebuild(settings)


def rebuild(settings):
    for stream in STREAMS:
        build_table(settings, stream)


def reprocess_all(settings, landing):
    for stream in STREAMS:
        for day in (DAY1, DAY2):
            ingest_partition(settings, landing.store, stream, day, run_id="rerun", reprocess=True)
    rebuild(settings)


TABLES = ("contacts", "accounts", "contact_events", "account_events", "crm_leads", "rejected_records", "ingested_files")


def snapshot(warehouse) -> dict[str, pl.DataFrame]:
    con = warehouse.connect()
    return {t: con.sql(f"select * from {t} order by all").pl() for t in TABLES}


def without(frame: pl.DataFrame, expr: pl.Expr) -> pl.DataFrame:
    return frame.filter(~expr)


def assert_frames_equal(got: pl.DataFrame, want: pl.DataFrame, name: str):
    assert got.rows() == want.rows(), name
    assert got.schema == want.schema, name


def ann_removed(before: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The tables as they must be once Ann is erased: exactly her rows gone."""
    return {
        **before,
        "contacts": without(before["contacts"], pl.col("contact_id") == ANN),
        "contact_events": without(before["contact_events"], pl.col("contact_id") == ANN),
        "crm_leads": without(before["crm_leads"], pl.col("email") == ANN_EMAIL),
        "rejected_records": without(
            before["rejected_records"],
            pl.col("file").is_in(["contact/day1.jsonl", "contact_event/day1.jsonl"]) & (pl.col("line") == 3),
        ),
    }


def pii_hits(root, needles: list[str]) -> list[str]:
    """Files under `root` (a folder or s3://...) whose bytes or decoded content
    (Parquet read back, compression undone) contain a needle, case-insensitive."""
    hits = []
    for name, data in warehouse_files(root):
        texts = [data.decode("utf-8", "replace")]
        if name.endswith(".parquet"):
            texts.append(repr(pl.read_parquet(io.BytesIO(data)).rows()))
        for needle in needles:
            if any(needle.lower() in text.lower() for text in texts):
                hits.append(f"{name}: {needle}")
    return hits


@pytest.fixture
def loaded(settings, landing, warehouse):
    land_two_days(landing)
    ingest_pending(settings, landing)
    return snapshot(warehouse)


def test_erase_by_contact_id_removes_her_rows_everywhere_and_keeps_every_other_row_exactly(settings, landing, warehouse, loaded):
    before = loaded
    assert before["contacts"].select("contact_id", "email", "account_id").rows() == [
        (ANN, ANN_EMAIL, "acme.com"),
        ("bob-0002", "bob@example.com", "beta.com"),
        ("carol-0003", "carol@example.com", None),
    ]
    report = erase(settings, contact_id=f"  {ANN} ", requested_at=ERASED_AT)

    assert report.subject_kind == "contact_id"
    assert (report.contact_ids, report.emails) == (1, 1)
    assert report.rows_removed == {
        "contacts": 1,
        "contact_events": 2,
        "crm_leads": 1,
        "rejected_records": 2,
        "memberships": 1,
        # Stored versions in the day batches: 2 contact records (contact/ and
        # identify/) + their 2 property cells, 2 events (contact_event/ and
        # track/), 1 membership, 1 CRM lead and her 2 rejected records.
        "batches": 10,
    }
    assert report.warnings == []
    after = snapshot(warehouse)
    want = ann_removed(before)
    for name in TABLES:
        assert_frames_equal(after[name], want[name], name)
    # Bob keeps his membership; the ledger is untouched, so it still reconciles.
    assert after["contacts"].select("contact_id", "account_id").rows() == [("bob-0002", "beta.com"), ("carol-0003", None)]
    ledger = after["ingested_files"]
    assert ledger.filter(pl.col("rows_read") != pl.col("rows_loaded") + pl.col("rows_rejected") + pl.col("rows_duplicate")).is_empty()
    assert ledger.height == 7


def test_the_erasure_is_recorded_with_hashes_only_and_no_file_under_the_warehouse_keeps_her_data(settings, landing, warehouse, loaded):
    assert pii_hits(settings.warehouse_dir, [ANN_EMAIL, ANN])  # she is there before
    report = erase(settings, email="  ANN@example.COM ", requested_at=ERASED_AT)

    assert pii_hits(settings.warehouse_dir, [ANN_EMAIL, ANN]) == []
    row = warehouse.connect().sql("select * from erasures").pl().to_dicts()
    assert len(row) == 1
    row = row[0]
    assert row["erasure_id"] == report.erasure_id
    assert row["requested_at"] == ERASED_AT
    assert (row["subject_kind"], row["subject_sha256"], row["status"]) == ("email", sha256(ANN_EMAIL), "completed")
    assert row["contact_id_sha256"] == [sha256(ANN)]
    assert row["email_sha256"] == [sha256(ANN_EMAIL)]
    assert json.loads(row["rows_removed"]) == report.rows_removed
    assert row["completed_at"] >= row["requested_at"]
    # Bob and Carol are still there, in the tables and in the stored batches.
    kept = pii_hits(settings.warehouse_dir, ["bob@example.com", "carol@example.com", "bob-0002", "carol-0003"])
    assert any(h.startswith("contacts/") and h.endswith("bob@example.com") for h in kept)
    assert any(h.startswith("_batches/") and h.endswith("carol-0003") for h in kept)


def test_erase_by_email_resolves_every_contact_that_ever_carried_it(settings, landing, warehouse):
    # ann-0001 had the email first and then changed it; dup-0009 carried it too.
    landing.put("contact/a.jsonl", [contact(ANN, ANN_EMAIL, {"k": 1}), contact("dup-0009", ANN_EMAIL)], utc(2026, 11, 20, 8))
    landing.put("contact/b.jsonl", [contact(ANN, "ann@new.example.com"), contact("dup-0009", "other@example.com")], utc(2026, 11, 21, 8))
    landing.put("contact/c.jsonl", [contact("bob-0002", "bob@example.com")], utc(2026, 11, 21, 9))
    landing.put("contact_event/e.jsonl", [event("ev-1", ANN), event("ev-2", "dup-0009"), event("ev-3", "bob-0002")], utc(2026, 11, 21, 9))
    landing.put(
        "crm/leads.jsonl",
        [crm(ANN_EMAIL, "acme"), crm("ann@new.example.com", "acme"), crm("other@example.com", "x"), crm("bob@example.com", "beta")],
        utc(2026, 11, 21, 10),
    )
    ingest_pending(settings, landing)
    before = snapshot(warehouse)
    assert before["contacts"].select("contact_id", "email").rows() == [
        (ANN, "ann@new.example.com"),  # her current email is another one
        ("bob-0002", "bob@example.com"),
        ("dup-0009", "other@example.com"),
    ]

    report = erase(settings, email=ANN_EMAIL, requested_at=ERASED_AT)

    # Both contacts, and every email they carried, are erased.
    assert (report.contact_ids, report.emails) == (2, 3)
    after = snapshot(warehouse)
    assert after["contacts"].rows() == before["contacts"].filter(pl.col("contact_id") == "bob-0002").rows()
    assert after["contact_events"].rows() == before["contact_events"].filter(pl.col("contact_id") == "bob-0002").rows()
    assert after["crm_leads"].rows() == before["crm_leads"].filter(pl.col("email") == "bob@example.com").rows()
    erasure = warehouse.connect().sql("select contact_id_sha256, email_sha256 from erasures").fetchall()[0]
    assert erasure == (
        sorted([sha256(ANN), sha256("dup-0009")]),
        sorted([sha256(ANN_EMAIL), sha256("ann@new.example.com"), sha256("other@example.com")]),
    )
    # Re-running the old days does not bring either back.
    for day in (DAY1, DAY2):
        ingest_partition(settings, landing.store, "contact", day, run_id="rerun", reprocess=True)
        ingest_partition(settings, landing.store, "contact_event", day, run_id="rerun", reprocess=True)
        ingest_partition(settings, landing.store, "crm", day, run_id="rerun", reprocess=True)
    rebuild(settings)
    again = snapshot(warehouse)
    for name in ("contacts", "contact_events", "crm_leads", "rejected_records"):
        assert_frames_equal(again[name], after[name], name)


def test_reprocessing_and_rematerialising_old_days_keeps_her_erased(settings, landing, warehouse, loaded):
    erase(settings, contact_id=ANN, requested_at=ERASED_AT)
    erased = snapshot(warehouse)

    reprocess_all(settings, landing)  # re-read every landed file from scratch
    again = snapshot(warehouse)
    for name in TABLES[:-1]:
        assert_frames_equal(again[name], erased[name], name)
    # Re-materialising without reprocess (staged files reused) and rebuilding alone.
    for stream in STREAMS:
        ingest_partition(settings, landing.store, stream, DAY1, run_id="rerun")
    rebuild(settings)
    for name in TABLES[:-1]:
        assert_frames_equal(snapshot(warehouse)[name], erased[name], name)
    assert pii_hits(settings.warehouse_dir, [ANN_EMAIL, ANN]) == []


def test_a_file_that_landed_before_the_erasure_but_is_ingested_after_it_is_suppressed(settings, landing, warehouse, loaded):
    # Landed before the erasure, not processed yet (the sensor had not seen it).
    landing.put(
        "contact/late.jsonl",
        [contact(ANN, "Ann@Example.com", {"plan": "late"}), contact("dan-0004", "dan@example.com"), contact("x9", ANN_EMAIL)],
        utc(2026, 11, 21, 23),
    )
    landing.put("contact_event/late.jsonl", [event("ev-9", ANN), event("ev-10", "dan-0004")], utc(2026, 11, 21, 23))
    landing.put("crm/late.jsonl", [crm(ANN_EMAIL, "late")], utc(2026, 11, 21, 23))
    erase(settings, email=ANN_EMAIL, requested_at=ERASED_AT)

    ingest_pending(settings, landing)

    con = warehouse.connect()
    assert con.sql("select contact_id, email from contacts order by 1").fetchall() == [
        ("bob-0002", "bob@example.com"),
        ("carol-0003", "carol@example.com"),
        ("dan-0004", "dan@example.com"),
    ]
    assert con.sql("select contact_id, event from contact_events order by 1").fetchall() == [
        ("bob-0002", "signup"),
        ("carol-0003", "open"),
        ("dan-0004", "login"),
    ]
    assert con.sql("select count(*) from crm_leads where account = 'late'").fetchall() == [(0,)]
    # The ledger says what the files held and still reconciles.
    rows = con.sql(
        "select file, status, rows_read, rows_loaded, rows_rejected, rows_duplicate from ingested_files where file like '%late%' order by file"
    ).fetchall()
    assert rows == [
        ("contact/late.jsonl", "loaded", 3, 3, 0, 0),
        ("contact_event/late.jsonl", "loaded", 2, 2, 0, 0),
        ("crm/late.jsonl", "loaded", 1, 1, 0, 0),
    ]
    assert pii_hits(settings.warehouse_dir, [ANN_EMAIL, ANN]) == []


def test_a_file_landing_after_the_erasure_is_new_data_and_loads(settings, landing, warehouse, loaded):
    erase(settings, contact_id=ANN, requested_at=ERASED_AT)
    landing.put("contact/new.jsonl", [contact(ANN, "ann@fresh.example.com", {"plan": "new"})], utc(2026, 11, 22, 6))
    landing.put("contact_event/new.jsonl", [event("ev-20", ANN, ts="2026-11-22T05:00:00Z")], utc(2026, 11, 22, 6))

    ingest_pending(settings, landing)

    con = warehouse.connect()
    # Only what the new files say: nothing of her old records is merged back.
    assert con.sql(f"select email, account_id, properties, first_seen_at from contacts where contact_id = '{ANN}'").fetchall() == [
        ("ann@fresh.example.com", None, '{"plan":"new"}', utc(2026, 11, 22, 6))
    ]
    assert con.sql(f"select event_id from contact_events where contact_id = '{ANN}'").fetchall() == [("ev-20",)]
    # Re-running every old day still does not revive the old records.
    reprocess_all(settings, landing)
    assert con.sql(f"select count(*) from contacts where contact_id = '{ANN}'").fetchall() == [(1,)]
    assert warehouse.connect().sql(f"select count(*) from contact_events where contact_id = '{ANN}'").fetchall() == [(1,)]


def test_contact_id_1_erases_only_rows_of_contact_1(settings, landing, warehouse):
    landing.put(
        "contact_event/e.jsonl",
        [
            event("ev-a", "1", ts="bad"),  # line 1: contact 1 (string) -> erased
            '{"event_id": "ev-b", "contact_id": 1, "event": "x", "event_timestamp": "bad", "event_properties": {}}',  # contact 1 (number) -> erased
            event("ev-c", " 1 ", ts="bad"),  # contact 1 once trimmed -> erased
            event("1", "c2", ts="bad"),  # event_id 1, contact c2
            event("ev-d", "11", ts="bad"),
            event("ev-e", "c1", ts="bad"),
            event("ev-f", "c2", ts="bad", props={"seats": 1, "ref": "1", "n": [1]}),
            '{"event_id": "ev-g", "contact_id": "c2", "event": "1", "event_timestamp": "bad", "event_properties": {"contact": "1"}}',
            event("ev-h", "c2"),  # valid: loads
            event("ev-i", "1"),  # valid, contact 1: loads then erased
        ],
        utc(2026, 11, 20, 8),
    )
    landing.put(
        "track/t.csv",
        "seats,contact_key,event_text,event_timestamp\n"
        "1,c2,open,bad\n"  # seats 1, contact c2
        "2,1,open,bad\n"  # contact 1 -> erased
        '"1","c,2",open,bad\n'  # quoted fields, contact "c,2"
        '"3"," 1 ",open,bad\n'  # quoted, contact 1 -> erased
        "1,11,1,bad\n",
        utc(2026, 11, 20, 9),
    )
    landing.put("group/g.csv", "account_key,contact_key\n1,c2\nacme.com,1\n", utc(2026, 11, 20, 10))
    landing.put("contact/c.jsonl", [contact("1", "one@example.com"), contact("c2", "two@example.com")], utc(2026, 11, 20, 11))
    ingest_pending(settings, landing)
    before = snapshot(warehouse)
    rejected = before["rejected_records"].select("file", "line").rows()
    assert len(rejected) == 13

    report = erase(settings, contact_id="1", requested_at=ERASED_AT)

    after = snapshot(warehouse)
    erased = {
        ("contact_event/e.jsonl", 1),
        ("contact_event/e.jsonl", 2),
        ("contact_event/e.jsonl", 3),
        ("track/t.csv", 3),
        ("track/t.csv", 5),
    }
    assert sorted(after["rejected_records"].select("file", "line").rows()) == sorted(set(rejected) - erased)
    assert report.rows_removed["rejected_records"] == 5
    assert after["contact_events"].select("event_id").rows() == [("ev-h",)]
    assert after["contacts"].select("contact_id", "account_id").rows() == [("c2", "1")]
    # The account keyed "1" is an account, not the contact: it stays.
    assert after["accounts"].rows() == before["accounts"].rows()
    reprocess_all(settings, landing)
    assert sorted(snapshot(warehouse)["rejected_records"].select("file", "line").rows()) == sorted(set(rejected) - erased)


def test_rejected_csv_rows_whose_header_cannot_be_read_are_matched_on_any_field_with_a_warning(settings, landing, warehouse):
    landing.put("identify/i.csv", "contact_key,email,note\nc2,bad-email,x\nc3,bad-email,c2\nc4,bad-email,y\n", utc(2026, 11, 20, 8))
    ingest_pending(settings, landing)
    (landing.root / "identify" / "i.csv").unlink()  # the landed file is gone

    report = erase(settings, contact_id="c2", requested_at=ERASED_AT)

    assert report.warnings == [
        "rejected CSV rows of identify/i.csv: its header row could not be read from the landing store, "
        "so every field of those rows was compared with the contact id"
    ]
    assert warehouse.connect().sql("select line from rejected_records").fetchall() == [(4,)]


def test_an_error_message_quoting_her_email_is_redacted_in_the_ledger(settings, landing, warehouse):
    landing.put("contact/a.jsonl", [contact(ANN, "Ann@Example.com."), contact("bob-0002", "bob@example.com.")], utc(2026, 11, 20, 8))
    ingest_pending(settings, landing)
    first_error = "select first_error from ingested_files"
    assert warehouse.connect().sql(first_error).fetchall() == [
        ("line 1, field 'email': invalid_email: field 'email' is not a valid email address: 'Ann@Example.com.'",)
    ]

    erase(settings, email=ANN_EMAIL, requested_at=ERASED_AT)

    redacted = [("line 1, field 'email': invalid_email: field 'email' is not a valid email address: '<erased>.'",)]
    con = warehouse.connect()
    assert con.sql(first_error).fetchall() == redacted
    assert con.sql("select line, raw from rejected_records").fetchall() == [
        (2, '{"contact_id": "bob-0002", "email": "bob@example.com.", "contact_properties": {}}')
    ]
    assert con.sql("select status, rows_read, rows_loaded, rows_rejected from ingested_files").fetchall() == [("rejected", 2, 0, 2)]
    assert pii_hits(settings.warehouse_dir, [ANN_EMAIL, ANN]) == []
    reprocess_all(settings, landing)  # the day's ledger row is written again from the file
    assert warehouse.connect().sql(first_error).fetchall() == redacted
    assert pii_hits(settings.warehouse_dir, [ANN_EMAIL, ANN]) == []


def test_nothing_matched_is_still_recorded_and_suppresses_old_files(settings, landing, warehouse):
    landing.put("contact/a.jsonl", [contact("bob-0002", "bob@example.com")], utc(2026, 11, 20, 8))
    ingest_pending(settings, landing)
    report = erase(settings, email="Zed@Example.com", requested_at=ERASED_AT)
    assert report.nothing_matched
    assert (report.contact_ids, report.emails) == (0, 1)
    # A file that landed before the erasure arrives late: Zed is not loaded.
    landing.put("contact/late.jsonl", [contact("zed-1", "zed@example.com"), contact("amy-5", "amy@example.com")], utc(2026, 11, 21, 8))
    ingest_pending(settings, landing)
    assert warehouse.connect().sql("select contact_id from contacts order by 1").fetchall() == [("amy-5",), ("bob-0002",)]


def test_commits_without_any_erasure_leave_no_trace_of_the_filter(settings, landing, warehouse, loaded):
    assert suppress_staged(warehouse, landing.store, "contact", []) == 0
    assert warehouse.scan("erasures").collect().is_empty()
    assert {name.split("/")[1] for name, _ in warehouse_files(settings.warehouse_dir) if name.startswith("erasures/")} == {"_delta_log"}


def test_invalid_requests_are_refused(settings):
    for kwargs, message in [
        ({}, "give exactly one of a contact id or an email"),
        ({"contact_id": "c1", "email": "a@b.co"}, "give exactly one of a contact id or an email"),
        ({"contact_id": " undefined "}, "' undefined ' is a placeholder identifier, never loaded as a contact id (nothing to erase)"),
        ({"email": "not an email"}, "not an email address: 'not an email'"),
    ]:
        with pytest.raises(ErasureError) as exc:
            erase(settings, **kwargs)
        assert str(exc.value) == message


def test_an_erase_while_runs_commit_and_merge_leaves_her_erased(settings, landing, warehouse, loaded):
    """An erase in one thread while another ingests a late file of hers (landed
    before the erasure) and merges every table: whichever commits first, she is
    gone at the end and everyone else is there."""
    late = [contact(ANN, ANN_EMAIL, {"plan": "late"}), contact("dan-0004", "dan@example.com")]
    landing.put("contact/late.jsonl", late, utc(2026, 11, 21, 22))
    landing.put("contact_event/late.jsonl", [event("ev-9", ANN), event("ev-10", "dan-0004")], utc(2026, 11, 21, 22))
    errors: list[str] = []

    def run(fn):
        try:
            fn()
        except BaseException as exc:  # reported below, with where it happened
            errors.append("".join(traceback.format_exception(exc)))

    threads = [
        threading.Thread(target=run, args=(lambda: erase(settings, contact_id=ANN, requested_at=ERASED_AT),)),
        threading.Thread(target=run, args=(lambda: ingest_pending(settings, landing),)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    rebuild(settings)
    con = warehouse.connect()
    assert con.sql("select contact_id from contacts order by 1").fetchall() == [("bob-0002",), ("carol-0003",), ("dan-0004",)]
    assert con.sql("select contact_id, event_id from contact_events order by 2").fetchall() == [
        ("dan-0004", "ev-10"),
        ("bob-0002", "ev-2"),
        *con.sql("select contact_id, event_id from contact_events where contact_id = 'carol-0003'").fetchall(),
    ]
    assert pii_hits(settings.warehouse_dir, [ANN_EMAIL, ANN]) == []


# --- the CLI ---------------------------------------------------------------------


def test_cli_ingest_then_erase_by_email_prints_what_was_removed(settings, landing, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("INGEST_LANDING_URL", str(landing.root))
    land_two_days(landing)
    runner = CliRunner()
    wh = ["--warehouse", str(settings.warehouse_dir)]
    result = runner.invoke(main, ["ingest", "--landing", str(landing.root), *wh])
    assert result.exit_code == 0, result.output

    result = runner.invoke(main, ["erase", *wh, "--email", "ANN@example.com"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Erasure ") and lines[0].endswith(" (by email: 1 contact id(s), 1 email(s)).")
    assert lines[1:7] == [
        "Rows removed:",
        "  contacts          1",
        "  contact_events    2",
        "  crm_leads         1",
        "  rejected_records  2",
        "  memberships       1",
    ]
    assert lines[7] == "  (and 10 stored row(s) in the day batches)"
    out = runner.invoke(main, ["query", *wh, "--format", "json", "select subject_kind, subject_sha256, status from erasures"])
    assert json.loads(out.output) == [{"subject_kind": "email", "subject_sha256": sha256(ANN_EMAIL), "status": "completed"}]
    out = runner.invoke(main, ["query", *wh, "--format", "csv", "select contact_id, account_id from contacts order by 1"])
    assert out.output == "contact_id,account_id\nbob-0002,beta.com\ncarol-0003,\n"
    # An ingest afterwards (nothing pending) and one with a late old file: still gone.
    landing.put("identify/late.csv", f"contact_key,email\n{ANN},ann@example.com\n", utc(2026, 11, 21, 12))
    result = runner.invoke(main, ["ingest", "--landing", str(landing.root), *wh])
    assert "loaded            identify/late.csv  read=1 loaded=1 rejected=0 duplicate=0" in result.output
    out = runner.invoke(main, ["query", *wh, "--format", "csv", "select count(*) as n from contacts where email = 'ann@example.com'"])
    assert out.output == "n\n0\n"
    assert pii_hits(settings.warehouse_dir, [ANN_EMAIL, ANN]) == []


def test_cli_erase_says_when_nothing_matched(settings, landing, warehouse, loaded):
    result = CliRunner().invoke(main, ["erase", "--warehouse", str(settings.warehouse_dir), "--contact-id", "nobody-42"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "Nothing matched: no row in the warehouse belongs to this subject. The erasure is still "
        "recorded: records carrying this contact id from files that landed before it are never loaded."
    ]
    assert warehouse.connect().sql("select subject_sha256, contact_id_sha256 from erasures").fetchall() == [
        (sha256("nobody-42"), [sha256("nobody-42")])
    ]


@local_warehouse_only
def test_cli_erase_usage_errors(settings, tmp_path):
    runner = CliRunner()
    settings.warehouse_dir.mkdir()
    wh = ["--warehouse", str(settings.warehouse_dir)]
    result = runner.invoke(main, ["erase", *wh])
    assert result.exit_code == 2
    assert "Error: give exactly one of --contact-id or --email" in result.output
    result = runner.invoke(main, ["erase", *wh, "--contact-id", "c1", "--email", "a@b.co"])
    assert result.exit_code == 2
    assert "Error: give exactly one of --contact-id or --email" in result.output
    result = runner.invoke(main, ["erase", *wh, "--contact-id", "null"])
    assert result.exit_code == 2
    assert "Invalid value for '--contact-id': 'null' is a placeholder identifier" in result.output
    result = runner.invoke(main, ["erase", *wh, "--email", "nobody"])
    assert result.exit_code == 2
    assert "Invalid value for '--email': not an email address: 'nobody'" in result.output
    result = runner.invoke(main, ["erase", "--warehouse", str(tmp_path / "typo"), "--email", "a@b.co"])
    assert result.exit_code == 1
    assert f"Error: no warehouse at {tmp_path / 'typo'}: nothing to erase from" in result.output
    assert not (tmp_path / "typo").exists()
    assert not (settings.warehouse_dir / "erasures").exists()  # nothing was recorded


@local_warehouse_only
def test_query_reads_the_erasures_table_of_any_warehouse(settings):
    settings.warehouse_dir.mkdir()
    out = CliRunner().invoke(main, ["query", "--warehouse", str(settings.warehouse_dir), "--format", "csv", "select * from erasures"])
    assert out.exit_code == 0, out.output
    assert (
        out.output
        == "erasure_id,requested_at,subject_kind,subject_sha256,contact_id_sha256,email_sha256,status,rows_removed,completed_at\n"
    )


def test_console_script_erases_by_contact_id(settings, landing, warehouse, loaded):
    exe = Path(sys.executable).with_name("ingestion-pipeline")
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(INGEST_WAREHOUSE_DIR=str(settings.warehouse_dir), INGEST_LANDING_URL=str(landing.root))
    proc = subprocess.run([str(exe), "erase", "--contact-id", ANN], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "  contacts          1\n" in proc.stdout
    assert "  memberships       1\n" in proc.stdout
    assert proc.stderr == ""
    assert warehouse.connect().sql("select contact_id from contacts order by 1").fetchall() == [("bob-0002",), ("carol-0003",)]
    assert pii_hits(settings.warehouse_dir, [ANN_EMAIL, ANN]) == []


def erase_cli(warehouse_dir, *args, env=None):
    """The real console script, in its own process (so it can be killed)."""
    cli = str(Path(sys.executable).with_name("ingestion-pipeline"))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")} | (env or {})
    return subprocess.run(
        [cli, "erase", "--warehouse", str(warehouse_dir), *args], env=environ, capture_output=True, text=True, timeout=120
    )


@local_warehouse_only
def test_an_erase_killed_between_cells_and_records_is_finished_by_the_next_erase(settings, landing, warehouse, loaded, tmp_path):
    trace = tmp_path / "trace.tsv"
    probe = tmp_path / "probe"
    shutil.copytree(settings.warehouse_dir, probe)
    assert erase_cli(probe, "--contact-id", ANN, env={"INGEST_CRASH_TRACE": str(trace)}).returncode == 0
    points = [line.split("\t") for line in trace.read_text().splitlines()]
    # the batch's property cells of Ann are rewritten, the records are not yet
    # the first commit to the contact records batch: her cells are deleted, her records not yet
    (point,) = [int(n) for n, label in points if label == "committing _batches/contact/records"][:1]
    killed = erase_cli(settings.warehouse_dir, "--contact-id", ANN, env={"INGEST_CRASH_AT": str(point)})
    assert killed.returncode == -9
    assert warehouse.connect().sql("select status from erasures").fetchall() == [("in_progress",)]
    again = erase_cli(settings.warehouse_dir, "--contact-id", "nobody-42")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("Finished erasure ")
    assert sorted(warehouse.connect().sql("select status from erasures").fetchall()) == [("completed",), ("completed",)]
    assert pii_hits(settings.warehouse_dir, [ANN_EMAIL, ANN]) == []
    # Ann signs up again later: nothing of her erased history (properties) comes back.
    landing.put("contact/later.jsonl", [contact(ANN, "ann@new.example", {"seat": 1})], utc(2030, 1, 1))
    ingest_partition(settings, landing.store, "contact", utc(2030, 1, 1).date(), run_id="later")
    build_table(settings, "contact")
    assert warehouse.connect().sql(f"select email, properties from contacts where contact_id = '{ANN}'").fetchall() == [
        ("ann@new.example", '{"seat":1}')
    ]


@local_warehouse_only
def test_erase_removes_files_of_killed_writes_that_hold_her_data(settings, landing, warehouse, loaded):
    # A data file a killed writer left behind (written, never committed), two hours ago.
    table = settings.warehouse_dir / "contacts"
    live = next(p for p in table.rglob("*.parquet") if ANN_EMAIL in repr(pl.read_parquet(p).rows()))
    orphan = live.with_name("part-00000-killed-writer.zstd.parquet")
    orphan.write_bytes(live.read_bytes())
    two_hours_ago = time.time() - 7200
    os.utime(orphan, (two_hours_ago, two_hours_ago))
    assert pii_hits(settings.warehouse_dir, [ANN_EMAIL]) != []
    erase(settings, contact_id=ANN)
    assert not orphan.exists()
    assert pii_hits(settings.warehouse_dir, [ANN_EMAIL, ANN]) == []
