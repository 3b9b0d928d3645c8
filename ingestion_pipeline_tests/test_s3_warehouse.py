"""The warehouse on S3 (SeaweedFS, the real S3 server): two ingests on what stand
for two machines (separate processes, DAGSTER_HOMEs and temp dirs) sharing only
the S3 warehouse end with the tables of one sequential run; the CLI, the sensor and
the API's file status read the ledger from there."""

from __future__ import annotations

import json
import subprocess
import uuid

import dagster as dg
import pytest

from ingestion_pipeline.definitions import build_definitions
from ingestion_pipeline.defs.resources import IngestResource
from ingestion_pipeline.defs.sensors import landing_sensor
from ingestion_pipeline.ledger import read_ledger
from ingestion_pipeline.warehouse import Warehouse

from .conftest import contact, event, utc
from .harness import CLI, build_landing, clean_env, ingest, ingest_command, snapshot

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """The AWS_* environment of the SeaweedFS server, in this process too."""
    env = {k: v for k, v in s3_server.env().items() if k != "INGEST_LANDING_URL"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def tick(instance, definitions):
    with dg.build_sensor_context(instance=instance, definitions=definitions, resources=definitions.resources) as context:
        return landing_sensor.evaluate_tick(context)


def s3_warehouse(s3_server) -> str:
    return f"s3://{s3_server.bucket}/warehouse-{uuid.uuid4().hex[:10]}"


def test_two_overlapping_ingests_on_two_machines_sharing_only_the_s3_warehouse(s3_server, s3_env, tmp_path):
    landing = build_landing(tmp_path / "landing")
    sequential = tmp_path / "sequential"
    assert ingest(landing.root, sequential).returncode == 0
    expected = snapshot(sequential)

    warehouse = s3_warehouse(s3_server)
    machines = []
    for name in ("machine-a", "machine-b"):
        (tmp_path / name / "tmp").mkdir(parents=True)
        env = clean_env({**s3_env, "DAGSTER_HOME": str(tmp_path / name / "home"), "TMPDIR": str(tmp_path / name / "tmp")})
        machines.append(
            subprocess.Popen(ingest_command(landing.root, warehouse), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    outputs = [m.communicate(timeout=600) for m in machines]
    for m, (out, err) in zip(machines, outputs):
        assert m.returncode == 0, out + err
    assert snapshot(warehouse) == expected
    ledger = read_ledger(Warehouse(warehouse))
    assert ledger["file_id"].is_unique().all() and ledger.height == len(expected["ingested_files"])


def test_cli_query_history_and_as_of_on_an_s3_warehouse(s3_server, s3_env, landing, tmp_path):
    warehouse = s3_warehouse(s3_server)
    env = clean_env({**s3_env, "INGEST_WAREHOUSE_DIR": warehouse, "INGEST_LANDING_URL": str(landing.root)})
    landing.put("contact/a.jsonl", [contact("c1", "a@x.io")], utc(2026, 11, 20, 8))
    assert subprocess.run([CLI, "ingest"], env=env, capture_output=True, text=True, timeout=300).returncode == 0
    landing.put("contact/b.jsonl", [contact("c1", "b@x.io")], utc(2026, 11, 21, 8))
    assert subprocess.run([CLI, "ingest"], env=env, capture_output=True, text=True, timeout=300).returncode == 0

    def cli(*args) -> str:
        done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert json.loads(cli("query", "--format", "json", "select contact_id, email from contacts")) == [
        {"contact_id": "c1", "email": "b@x.io"}
    ]
    versions = json.loads(cli("history", "--format", "json", "contacts"))
    assert [v["operation"] for v in versions] == ["MERGE", "WRITE", "CREATE TABLE"]
    old = json.loads(cli("query", "--format", "json", "--as-of", "1", "select email from contacts"))
    assert old == [{"email": "a@x.io"}]
    erased = cli("erase", "--contact-id", "c1")
    assert "  contacts          1" in erased
    assert json.loads(cli("query", "--format", "json", "select count(*) as n from contacts")) == [{"n": 0}]
    assert "vacuumed" in cli("maintain")


def test_the_sensor_reads_the_ledger_of_an_s3_warehouse(s3_server, s3_env, landing, tmp_path):
    warehouse = s3_warehouse(s3_server)
    landing.put("contact/a.jsonl", [contact("c1", "a@x.io")], utc(2026, 11, 20, 8))
    landing.put("contact_event/e.jsonl", [event("e1", "c1")], utc(2026, 11, 20, 8))
    ingest_resource = IngestResource(landing_url=str(landing.root), warehouse_dir=warehouse)
    definitions = build_definitions(ingest_resource)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        (request,) = tick(instance, definitions).run_requests
        job = definitions.resolve_job_def("ingest_job")
        assert job.execute_in_process(
            partition_key=request.partition_key, asset_selection=request.asset_selection, instance=instance
        ).success
        again = tick(instance, definitions)
    assert again.run_requests == [] and "No new settled files" in again.skip_message
    con = Warehouse(warehouse).connect()
    assert con.execute("select contact_id, event_id from contact_events").fetchall() == [("c1", "e1")]
    assert con.execute("select file, status from ingested_files order by 1").fetchall() == [
        ("contact/a.jsonl", "loaded"),
        ("contact_event/e.jsonl", "loaded"),
    ]


def test_the_api_reports_file_status_from_an_s3_warehouse(s3_server, s3_env, landing, tmp_path):
    from ingestion_pipeline.cli import run_ingest
    from ingestion_pipeline.settings import Settings

    from .test_api import start_api_server

    warehouse = s3_warehouse(s3_server)
    server = start_api_server(tmp_path / "api", {**s3_env, "INGEST_LANDING_URL": str(landing.root), "INGEST_WAREHOUSE_DIR": warehouse})
    try:
        r = server.post(
            "/ingestion/upload-json", {"stream": "contact", "data": [contact("c1", "a@x.io"), contact("c2", "b@x.io", extra_field=1)]}
        )
        assert r.status_code == 200, r.text
        key = r.json()["file_key"]
        assert server.request("GET", f"/ingestion/files/{key}").json()["status"] == "pending"
        rows, failures = run_ingest(Settings(landing_url=str(landing.root), warehouse_dir=warehouse), echo=lambda *a, **k: None)
        assert failures == [] and [r["file"] for r in rows] == [key]
        status = server.request("GET", f"/ingestion/files/{key}").json()
        assert (status["status"], status["rows_loaded"], status["schema_drift"]) == ("loaded", 2, "extra_field")
    finally:
        server.stop()
