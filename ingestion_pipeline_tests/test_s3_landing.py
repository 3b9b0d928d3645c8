"""S3 landing against a real S3 server (SeaweedFS, started by the `s3_server` fixture):
the same sensor, assets and CLI as the local folder, over `s3://bucket/prefix`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ingestion_pipeline.cli import run_ingest
from ingestion_pipeline.definitions import build_definitions
from ingestion_pipeline.defs.resources import IngestResource
from ingestion_pipeline.defs.sensors import landing_sensor
from ingestion_pipeline.landing import LandingError, open_landing
from ingestion_pipeline.landing.listing import SweepState, list_for_tick
from ingestion_pipeline.landing.s3 import S3LandingStore
from ingestion_pipeline.settings import Settings
from ingestion_pipeline.warehouse import Warehouse

from .conftest import contact, event


def rows(settings: Settings, sql: str) -> list[tuple]:
    with Warehouse(settings.warehouse_dir).connect() as con:
        return con.sql(sql).fetchall()


@pytest.fixture
def s3_settings(s3_landing, tmp_path, monkeypatch) -> Settings:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # run_ingest: a temporary instance
    return Settings(landing_url=s3_landing.url, warehouse_dir=tmp_path / "warehouse")


def test_open_landing_picks_the_s3_store_from_the_url(s3_landing):
    store = open_landing(s3_landing.url)
    assert isinstance(store, S3LandingStore)
    assert (store.bucket, store.prefix) == ("landing", s3_landing.prefix)
    assert store.incremental_listing and store.atomic_writes


def test_listing_paginates_skips_in_progress_names_and_versions_by_etag(s3_landing):
    for i in range(23):
        s3_landing.put(f"contact/2026/11/{i:03d}.jsonl", [contact(f"c{i}", f"u{i}@x.io")])
    for name in ("contact/_marker", "contact/.hidden.jsonl", "contact/up.jsonl.part", "contact/up.jsonl.tmp", "contact/_tmp/x.jsonl"):
        s3_landing.put(name, "x")
    s3_landing.put("contact_event/e.jsonl", [event("e1", "c1")])
    store = S3LandingStore(s3_landing.url, client=s3_landing.client, page_size=5)  # 28 keys: 6 pages
    calls = []
    store.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(1))
    files = list(store.list_files("contact"))
    assert sorted(f.path for f in files) == [f"contact/2026/11/{i:03d}.jsonl" for i in range(23)]
    assert len(calls) == 6
    first = files[0]
    head = s3_landing.client.head_object(Bucket="landing", Key=f"{s3_landing.prefix}/{first.path}")
    assert first.version == head["ETag"].strip('"') and first.size == head["ContentLength"]
    assert first.landed_at == head["LastModified"].astimezone(UTC)
    # Same key, new content: a new version (new ETag), so a new file_id.
    s3_landing.put(first.path, [contact("c0", "changed@x.io")])
    again = store.stat(first.path)
    assert again.version != first.version and again.file_id != first.file_id
    assert store.stat("contact/nothing-here.jsonl") is None


def test_a_sub_folder_lists_only_that_date_prefix(s3_landing):
    for rel in ("contact/2026/11/2/a.jsonl", "contact/2026/11/22/b.jsonl", "contact/2026/11/22/c/d.jsonl", "contact/2026/11/221.jsonl"):
        s3_landing.put(rel, [contact("c1", "a@x.io")])
    listed = [f.path for f in s3_landing.store.list_files("contact/2026/11/22")]
    assert listed == ["contact/2026/11/22/b.jsonl", "contact/2026/11/22/c/d.jsonl"]


def test_objects_are_read_as_streams_in_bounded_memory(s3_landing):
    chunk = os.urandom(1 << 20)
    s3_landing.put("contact/big.bin", chunk * 48)  # 48 MiB
    store = s3_landing.store
    (file,) = store.list_files("contact")
    tracemalloc.start()
    total = 0
    with store.open(file) as body:
        while data := body.read(1 << 20):
            total += len(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total == 48 << 20
    assert peak < 12 << 20, f"reading a 48 MiB object peaked at {peak >> 20} MiB of Python memory"


def test_a_version_replaced_after_listing_fails_the_read_instead_of_mixing_versions(s3_landing):
    s3_landing.put("contact/a.jsonl", [contact("c1", "a@x.io")])
    (listed,) = s3_landing.store.list_files("contact")
    s3_landing.put("contact/a.jsonl", [contact("c1", "b@x.io")])
    with pytest.raises(LandingError, match="S3 read of .*contact/a.jsonl failed: (PreconditionFailed|412)"):
        s3_landing.store.open(listed)


def test_paths_cannot_leave_the_landing_prefix(s3_landing):
    for bad in ("../other/x.jsonl", "contact/../../x", "/contact/x", "contact//x", ""):
        with pytest.raises(ValueError):
            s3_landing.store.write_bytes(bad, b"x")


def test_write_move_and_delete_are_what_the_api_builds_on(s3_landing):
    store = s3_landing.store
    store.write_bytes("_uploads/contact/2026/11/23/abc.jsonl.gz", b"\x1f\x8bdata")
    assert [f.path for f in store.list_files("contact")] == []  # pending: invisible to the sensor
    moved = store.move("_uploads/contact/2026/11/23/abc.jsonl.gz", "contact/2026/11/23/abc.jsonl.gz")
    assert moved.path == "contact/2026/11/23/abc.jsonl.gz" and moved.size == 6
    assert store.stat("_uploads/contact/2026/11/23/abc.jsonl.gz") is None
    with store.open_path(moved.path) as body:
        assert body.read() == b"\x1f\x8bdata"
    with store.writer("contact/w.jsonl") as out:
        out.write(b'{"a": 1}\n')
    assert store.stat("contact/w.jsonl").size == 9
    store.delete("contact/w.jsonl")
    store.delete("contact/w.jsonl")  # nothing there: not an error
    assert store.stat("contact/w.jsonl") is None


def test_ingest_from_s3_builds_the_same_tables_and_ledger(s3_landing, s3_settings):
    s3_landing.put("contact/2026/11/23/a.jsonl.gz", [contact("c1", " A@X.io", {"plan": "pro"}), "{oops"])
    s3_landing.put(
        "contact_event/e.csv", "event_id,contact_id,event,event_timestamp,event_properties\ne1,c1,login,2026-11-20T10:00:00Z,{}\n"
    )
    s3_landing.put("identify/i.jsonl", [{"contact_key": "c2", "email": "b@x.io", "plan": "free"}])
    s3_landing.put("contact/dup.jsonl.gz", [contact("c1", " A@X.io", {"plan": "pro"}), "{oops"])  # same bytes as a.jsonl.gz
    ledger, failures = run_ingest(s3_settings, echo=lambda *a, **k: None)
    assert failures == []
    by_file = {r["file"]: r for r in ledger}
    assert {f: r["status"] for f, r in by_file.items()} == {
        "contact/2026/11/23/a.jsonl.gz": "partially_loaded",
        "contact/dup.jsonl.gz": "skipped_duplicate",
        "contact_event/e.csv": "loaded",
        "identify/i.jsonl": "loaded",
    }
    a = by_file["contact/2026/11/23/a.jsonl.gz"]
    head = s3_landing.client.head_object(Bucket="landing", Key=f"{s3_landing.prefix}/contact/2026/11/23/a.jsonl.gz")
    assert a["landed_at"] == head["LastModified"].astimezone(UTC)
    assert (a["rows_read"], a["rows_loaded"], a["rows_rejected"], a["size_bytes"]) == (2, 1, 1, head["ContentLength"])
    assert rows(s3_settings, "select contact_id, email, properties from contacts order by 1") == [
        ("c1", "a@x.io", '{"plan":"pro"}'),
        ("c2", "b@x.io", '{"plan":"free"}'),
    ]
    assert rows(s3_settings, "select file, line, rule from rejected_records") == [("contact/2026/11/23/a.jsonl.gz", 2, "invalid_json")]
    assert rows(s3_settings, "select event_id, contact_id from contact_events") == [("e1", "c1")]
    # The ledger decides: a second pass finds nothing; a new version of a key is new.
    assert run_ingest(s3_settings, echo=lambda *a, **k: None) == ([], [])
    s3_landing.put("identify/i.jsonl", [{"contact_key": "c2", "email": "new@x.io"}])
    ledger, failures = run_ingest(s3_settings, echo=lambda *a, **k: None)
    assert [(r["file"], r["status"]) for r in ledger] == [("identify/i.jsonl", "loaded")]
    assert rows(s3_settings, "select email, properties from contacts where contact_id = 'c2'") == [("new@x.io", '{"plan":"free"}')]


def test_cli_ingest_reads_the_landing_url_and_endpoint_from_the_environment(s3_landing, tmp_path):
    s3_landing.put("contact/a.jsonl", [contact("c1", "a@x.io")])
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # s3_landing set the AWS_* and INGEST_LANDING_URL
    env["INGEST_WAREHOUSE_DIR"] = str(tmp_path / "wh")
    exe = Path(sys.executable).with_name("ingestion-pipeline")
    done = subprocess.run([str(exe), "ingest"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "loaded            contact/a.jsonl  read=1 loaded=1 rejected=0 duplicate=0" in done.stdout
    out = subprocess.run(
        [str(exe), "query", "--format", "json", "select contact_id from contacts"], env=env, capture_output=True, text=True
    )
    assert json.loads(out.stdout) == [{"contact_id": "c1"}]


def test_unreachable_s3_fails_clearly_without_touching_the_ledger(tmp_path, monkeypatch):
    from ingestion_pipeline.devtools.seaweedfs import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    store = open_landing("s3://landing/nowhere")
    store.client.meta.config.retries["max_attempts"] = 1
    with pytest.raises(LandingError, match=r"S3 listing of nowhere/contact/ failed: .*(Connect|connect)"):
        list(store.list_files("contact"))


def evaluate(instance, ingest: IngestResource, cursor=None):
    # A context manager: a resource with a nested resource (IngestResource.s3) is set up in its scope.
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"ingest": ingest}, definitions=build_definitions(ingest)
    ) as context:
        return landing_sensor.evaluate_tick(context)


def test_a_tick_lists_recent_date_prefixes_and_a_slice_of_the_sweep_from_its_high_water_key(s3_landing):
    today = datetime.now(UTC)
    recent = f"contact/{today - timedelta(days=1):%Y/%m/%d}/0123456789abcdef0123456789abcdef.json"
    s3_landing.put(recent, json.dumps({"stream": "contact", "data": [contact("c1", "a@x.io")]}))
    for i in range(5):
        s3_landing.put(f"contact/old-{i}.jsonl", [contact(f"o{i}", "b@x.io")])
    s3_landing.put("identify/i.jsonl", [{"contact_key": "c2", "email": "b@x.io"}])
    folders = ["contact", "identify", "track"]

    def tick(state, now):
        files, state = list_for_tick(s3_landing.store, folders, state, now, keys_per_tick=4, full_listing_seconds=600)
        return sorted(f.path for f in files), state

    now = time.time()
    paths, state = tick(SweepState(), now)  # no sweep yet: one starts
    assert paths == [recent, "contact/old-0.jsonl", "contact/old-1.jsonl", "contact/old-2.jsonl"]
    assert state == SweepState(started_at=now, folder=0, after="contact/old-2.jsonl")
    paths, state = tick(state, now + 10)  # resumes after the high-water key
    assert paths == [recent, "contact/old-3.jsonl", "contact/old-4.jsonl", "identify/i.jsonl"]
    assert state == SweepState(started_at=now, folder=None, after=None)  # swept; "track" is empty
    s3_landing.put("contact/old-5.jsonl", [contact("o5", "b@x.io")])
    paths, state = tick(state, now + 20)  # between sweeps: recent date prefixes only
    assert paths == [recent]
    paths, state = tick(state, now + 601)  # a new sweep, 4 keys a tick, finds the late file
    assert state.started_at == now + 601
    while state.folder is not None:
        more, state = tick(state, now + 611)
        paths += more
    assert "contact/old-5.jsonl" in paths


def test_the_sensor_on_s3_keeps_its_sweep_in_the_cursor_and_waits_for_no_settling(s3_landing, s3_settings, tmp_path):
    instance = dg.DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster"))
    ingest = IngestResource(landing_url=s3_landing.url, warehouse_dir=str(s3_settings.warehouse_dir), settle_seconds=3600)
    s3_landing.put("contact/a.jsonl", [contact("c1", "a@x.io")])
    s3_landing.put("contact_event/e.jsonl", [event("e1", "c1")])
    tick = evaluate(instance, ingest)
    (request,) = tick.run_requests
    assert request.tags["ingestion/files"] == "2"  # an S3 object is whole once visible
    sweep = json.loads(tick.cursor)["sweep"]
    assert sweep["folder"] is None and time.time() - sweep["started_at"] < 60
    job = build_definitions(ingest).resolve_job_def("ingest_job")
    result = job.execute_in_process(
        partition_key=request.partition_key, asset_selection=request.asset_selection, instance=instance, tags=request.tags
    )
    assert result.success
    assert rows(s3_settings, "select contact_id from contacts") == [("c1",)]
    assert evaluate(instance, ingest, cursor=tick.cursor).run_requests == []


def test_the_dagster_layer_reaches_the_bucket_through_the_s3resource_configured_on_it(s3_landing, s3_settings, tmp_path, monkeypatch):
    """A deployment that configures S3 on the resource (dagster-aws' S3Resource: endpoint,
    credentials, region), not in the process environment: the sensor and the run use it."""
    from dagster_aws.s3 import S3Resource

    from ingestion_pipeline.devtools.seaweedfs import free_port

    server = s3_landing.server
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    s3 = S3Resource(
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        max_attempts=1,
    )
    ingest = IngestResource(landing_url=s3_landing.url, warehouse_dir=str(s3_settings.warehouse_dir), s3=s3)
    s3_landing.put("contact/a.jsonl", [contact("c1", "a@x.io")])
    instance = dg.DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster"))
    (request,) = evaluate(instance, ingest).run_requests
    assert request.tags["ingestion/files"] == "1"
    job = build_definitions(ingest).resolve_job_def("ingest_job")
    result = job.execute_in_process(
        partition_key=request.partition_key, asset_selection=request.asset_selection, instance=instance, tags=request.tags
    )
    assert result.success
    assert rows(s3_settings, "select contact_id, email from contacts") == [("c1", "a@x.io")]
    # Without it, this process has no way to the bucket: the listing fails and names it.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(LandingError, match=rf"S3 listing of {s3_landing.prefix}/contact/ failed"):
        list(IngestResource(landing_url=s3_landing.url, warehouse_dir=str(s3_settings.warehouse_dir)).store().list_files("contact"))


def test_the_s3resource_made_from_the_environment_keeps_its_endpoint_region_and_attempts(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    client = IngestResource(landing_url="s3://landing/p", warehouse_dir="wh").store().client
    assert (client.meta.endpoint_url, client.meta.region_name) == ("http://127.0.0.1:9", "eu-west-3")
    assert client.meta.config.retries == open_landing("s3://landing/p").client.meta.config.retries  # the core's own client's
    assert client.generate_presigned_url("get_object", Params={"Bucket": "landing", "Key": "k"}).startswith("http://127.0.0.1:9/landing/k?")


def test_a_sweep_slice_is_bounded_by_keys_listed_hidden_names_included(s3_landing):
    for i in range(12):
        s3_landing.put(f"contact/_markers/m{i:03d}", "x")  # hidden: never returned, still listed
    s3_landing.put("contact/z.jsonl", [contact("c1", "a@x.io")])
    store = S3LandingStore(s3_landing.url, client=s3_landing.client)
    calls = []
    store.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(1))
    files, state = list_for_tick(store, ["contact"], SweepState(), time.time(), keys_per_tick=4, full_listing_seconds=600)
    assert files == [] and state.after == "contact/_markers/m003"
    assert len(calls) == 2 + 1  # the two recent date prefixes, then one 4-key page


def test_presigning_without_credentials_is_a_landing_error(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = open_landing("s3://landing/x")
    with pytest.raises(LandingError, match="S3 presigning of x/_uploads/a.jsonl.gz failed: NoCredentialsError"):
        store.presigned_put_url("_uploads/a.jsonl.gz", 60)


@pytest.mark.slow
def test_the_seaweedfs_launcher_stops_the_server_when_it_is_terminated(tmp_path):
    import signal
    import socket

    from ingestion_pipeline.devtools.seaweedfs import free_port

    port = free_port()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "ingestion_pipeline.devtools.seaweedfs", "--dir", str(tmp_path / "sw"), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "SeaweedFS S3 at" in launcher.stdout.readline()
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=30) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        launcher.kill()
