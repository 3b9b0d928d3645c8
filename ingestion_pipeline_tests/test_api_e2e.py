"""End to end through the API: upload-json and a presigned upload -> confirm ->
the real landing_sensor (or `ingestion-pipeline ingest`'s run_ingest) -> tables ->
GET /ingestion/files/{file_key} reports what happened to each file."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from ingestion_pipeline.cli import run_ingest
from ingestion_pipeline.definitions import build_definitions
from ingestion_pipeline.defs.resources import IngestResource
from ingestion_pipeline.defs.sensors import landing_sensor
from ingestion_pipeline.settings import Settings
from ingestion_pipeline.warehouse import Warehouse

from .conftest import contact
from .test_api import event, free_port, jsonl, put_upload, start_api_server, upload_url


def recent(hours: float = 1) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


CONTACTS = [contact("c1", "a@x.io", {"plan": "pro"}), contact("c2", "B@X.io"), contact("c3", "c@x.io", utm_source="ads")]


def events() -> list:
    bad = {"event_id": "e3", "contact_id": "c3", "event": "login", "event_timestamp": "not a time", "event_properties": {}}
    return [event("e1", "c1", ts=recent(3)), event("e2", "c2", ts=recent(2)), bad, event("e4", "c3", ts=recent(1))]


def upload_both(server) -> tuple[str, str, str]:
    """A valid upload-json of 3 contacts, and a presigned gzip upload of 4 contact
    events whose line 3 is invalid (confirm lets it through: the others are valid).
    Returns both file keys and the upload URL."""
    r = server.post("/ingestion/upload-json", {"stream": "contact", "data": CONTACTS})
    assert r.status_code == 200, r.text
    json_key = r.json()["file_key"]
    url, gz_key = upload_url(server, "contact_event")
    assert put_upload(url, gzip.compress(jsonl(events()))).status_code == 200
    r = server.post("/ingestion/confirm-upload", {"file_key": gz_key})
    assert r.status_code == 200 and r.json()["status"] == "confirmed", r.text
    for key in (json_key, gz_key):
        assert server.request("GET", f"/ingestion/files/{key}").json()["status"] == "pending"
    return json_key, gz_key, url


def assert_reported(server, json_key: str, gz_key: str) -> None:
    loaded = server.request("GET", f"/ingestion/files/{json_key}").json()
    keys = (
        "status",
        "stream",
        "format",
        "rows_read",
        "rows_loaded",
        "rows_rejected",
        "rows_duplicate",
        "first_error",
        "schema_drift",
        "rejected_records",
    )
    assert {k: loaded[k] for k in keys} == {
        "status": "loaded",
        "stream": "contact",
        "format": "json",
        "rows_read": 3,
        "rows_loaded": 3,
        "rows_rejected": 0,
        "rows_duplicate": 0,
        "first_error": None,
        "schema_drift": "utm_source",  # an unknown top-level field, kept in the properties
        "rejected_records": [],
    }
    assert loaded["landed_at"] and loaded["processed_at"] and loaded["size_bytes"] > 0
    partial = server.request("GET", f"/ingestion/files/{gz_key}").json()
    assert {
        k: partial[k] for k in ("status", "stream", "format", "rows_read", "rows_loaded", "rows_rejected", "rows_duplicate", "schema_drift")
    } == {
        "status": "partially_loaded",
        "stream": "contact_event",
        "format": "jsonl.gz",
        "rows_read": 4,
        "rows_loaded": 3,
        "rows_rejected": 1,
        "rows_duplicate": 0,
        "schema_drift": None,
    }
    (rejected,) = partial["rejected_records"]
    assert (rejected["line"], rejected["field"], rejected["rule"]) == (3, "event_timestamp", "invalid_timestamp")
    assert partial["first_error"].startswith("line 3, field 'event_timestamp': invalid_timestamp")


def assert_tables(warehouse_dir) -> None:
    con = Warehouse(warehouse_dir).connect()
    assert con.sql("select contact_id, email from contacts order by contact_id").fetchall() == [
        ("c1", "a@x.io"),
        ("c2", "b@x.io"),
        ("c3", "c@x.io"),
    ]
    assert con.sql("select event_id from contact_events order by event_id").fetchall() == [("e1",), ("e2",), ("e4",)]


@pytest.fixture(scope="module")
def e2e_api(tmp_path_factory):
    work = tmp_path_factory.mktemp("api-e2e")
    port = free_port()
    # Behind a proxy the public URL differs from the bound address: `localhost` here.
    env = {"INGEST_LANDING_URL": str(work / "landing"), "INGEST_API_PUBLIC_URL": f"http://localhost:{port}/"}
    server = start_api_server(work, env, port=port)
    yield server
    server.stop()


def sensor_runs(server, instance) -> int:
    """One landing_sensor tick and the runs it requests, as the daemon would run them."""
    ingest = IngestResource(landing_url=server.landing_url, warehouse_dir=str(server.warehouse_dir), settle_seconds=0)
    definitions = build_definitions(ingest)
    with dg.build_sensor_context(instance=instance, resources={"ingest": ingest}, definitions=definitions) as context:
        tick = landing_sensor.evaluate_tick(context)
    job = definitions.resolve_job_def("ingest_job")
    for request in tick.run_requests:
        result = job.execute_in_process(
            partition_key=request.partition_key, asset_selection=request.asset_selection, instance=instance, tags=request.tags
        )
        assert result.success
    return sum(int(r.tags["ingestion/files"]) for r in tick.run_requests)


def test_uploads_go_through_the_landing_sensor_into_the_tables_and_the_file_status(e2e_api, tmp_path):
    port = e2e_api.port
    assert e2e_api.request("GET", "/openapi.json").json()["servers"] == [{"url": f"http://localhost:{port}", "description": "This server"}]
    json_key, gz_key, url = upload_both(e2e_api)
    assert url.startswith(f"http://localhost:{port}/ingestion/uploads/{gz_key}?")
    instance = dg.DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster"))
    assert sensor_runs(e2e_api, instance) == 2
    assert_reported(e2e_api, json_key, gz_key)
    assert_tables(e2e_api.warehouse_dir)

    # The upload URL is still valid: a corrected file sent to it and confirmed again
    # is a new version of the same file key, pending until ingested, then reported.
    fixed = [event("e3", "c3", ts=recent(2)) if r["event_id"] == "e3" else r for r in events()]
    assert put_upload(url, gzip.compress(jsonl(fixed))).status_code == 200
    assert e2e_api.post("/ingestion/confirm-upload", {"file_key": gz_key}).json()["status"] == "confirmed"
    assert e2e_api.request("GET", f"/ingestion/files/{gz_key}").json()["status"] == "pending"
    assert e2e_api.request("GET", f"/ingestion/files/{json_key}").json()["status"] == "loaded"
    assert sensor_runs(e2e_api, instance) == 1
    latest = e2e_api.request("GET", f"/ingestion/files/{gz_key}").json()
    assert (latest["status"], latest["rows_read"], latest["rows_loaded"], latest["rejected_records"]) == ("loaded", 4, 4, [])


def test_s3_uploads_are_ingested_and_reported(s3_landing, tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    server = start_api_server(tmp_path / "api", s3_landing.server.env(s3_landing.prefix))
    server.s3_client = s3_landing.client
    try:
        json_key, gz_key, _ = upload_both(server)
        rows, failures = run_ingest(Settings(landing_url=s3_landing.url, warehouse_dir=server.warehouse_dir), echo=lambda *a, **k: None)
        assert failures == []
        assert sorted(r["file"] for r in rows) == sorted([json_key, gz_key])
        assert_reported(server, json_key, gz_key)
        assert_tables(server.warehouse_dir)
    finally:
        server.stop()
