"""The ingestion HTTP API as clients see it: a real `ingestion-pipeline serve`
process (uvicorn) over a local landing folder and over S3 (SeaweedFS)."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from ingestion_pipeline.landing import PENDING_PREFIX, open_landing
from ingestion_pipeline.landing.s3 import S3LandingStore

from .conftest import contact
from .conftest import event as _event

API_KEYS = ("test-key-one", "test-key-two")
KEY = API_KEYS[0]
SIGNING_KEY = "test-signing-key"
LOCAL_MAX_UPLOAD_BYTES = 4 * 1024 * 1024  # small, so the streaming cap is cheap to hit
FILE_KEY = re.compile(r"(contact|account|contact_event|account_event)/\d{4}/\d{2}/\d{2}/[0-9a-f]{32}\.(json|jsonl\.gz)")
REFERENCE = Path(__file__).resolve().parents[1] / "ingestion_pipeline" / "api" / "openapi_reference.json"
SNIPPET = Path(__file__).with_name("reference_upload_snippet.py")
MIB = 1024 * 1024


def event(eid: str, cid: str, name: str = "login", **extra) -> dict:
    """A contact event an hour old (timestamps later than a day after landing are refused)."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    return _event(eid, cid, name, **{"ts": ts, **extra})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ApiServer:
    """An `ingestion-pipeline serve` subprocess and the landing store it writes to."""

    url: str
    port: int
    process: subprocess.Popen
    log_path: Path
    landing_url: str
    warehouse_dir: Path
    s3_client: object = None  # for S3 mode: this process has no AWS_* variables

    def request(self, method: str, path: str, key: str | None = KEY, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers.setdefault("x-api-key", key)
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def post(self, path: str, body, **kwargs) -> requests.Response:
        return self.request("POST", path, json=body, **kwargs)

    def store(self):
        if self.s3_client is not None:
            return S3LandingStore(self.landing_url, client=self.s3_client)
        return open_landing(self.landing_url)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_api_server(workdir: Path, env: dict[str, str], port: int | None = None, timeout: float = 60.0) -> ApiServer:
    """Starts `ingestion-pipeline serve` (on a free port by default) and waits until it answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    full_env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    full_env.update(
        {
            "INGEST_API_KEYS": ",".join(API_KEYS),
            "INGEST_UPLOAD_SIGNING_KEY": SIGNING_KEY,
            "INGEST_WAREHOUSE_DIR": str(workdir / "warehouse"),
            **env,
        }
    )
    log_path = workdir / "server.log"
    exe = Path(sys.executable).with_name("ingestion-pipeline")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=workdir,
            start_new_session=True,
        )
    server = ApiServer(
        f"http://127.0.0.1:{port}", port, process, log_path, full_env["INGEST_LANDING_URL"], Path(full_env["INGEST_WAREHOUSE_DIR"])
    )
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            if requests.get(server.url + "/openapi.json", timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"serve did not answer within {timeout:.0f}s:\n{server.log()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def local_api(tmp_path_factory):
    work = tmp_path_factory.mktemp("api-local")
    server = start_api_server(
        work,
        {"INGEST_LANDING_URL": str(work / "landing"), "INGEST_API_MAX_UPLOAD_BYTES": str(LOCAL_MAX_UPLOAD_BYTES)},
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_api(s3_server, tmp_path_factory):
    # One server for the session (the per-test `s3_landing` prefix would mean one
    # server start per test); its own prefix of the session's SeaweedFS bucket.
    server = start_api_server(tmp_path_factory.mktemp("api-s3"), s3_server.env(f"api-{uuid.uuid4().hex[:12]}"))
    server.s3_client = s3_server.client()
    yield server
    server.stop()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])  # s3: SeaweedFS
def api(request) -> ApiServer:
    return request.getfixturevalue(f"{request.param}_api")


def landed_files(server: ApiServer) -> list[str]:
    """Every file under the landing root, the pending area included."""
    store = server.store()
    if isinstance(store, S3LandingStore):
        pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=store.prefix + "/")
        return sorted(o["Key"][len(store.prefix) + 1 :] for page in pages for o in page.get("Contents", ()))
    root = Path(server.landing_url)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error_code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert response.headers["x-request-id"]
    return body


def upload_url(server: ApiServer, stream: str = "contact") -> tuple[str, str]:
    r = server.post("/ingestion/generate-upload-url", {"stream": stream, "content_type": "application/jsonl", "content_encoding": "gzip"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert FILE_KEY.fullmatch(body["file_key"]) and body["file_key"].startswith(f"{stream}/") and body["file_key"].endswith(".jsonl.gz")
    return body["upload_url"], body["file_key"]


def put_upload(url: str, data: bytes) -> requests.Response:
    return requests.put(url, data=data, headers={"Content-Type": "application/jsonl", "Content-Encoding": "gzip"}, timeout=30)


def raw_response(sock: socket.socket) -> tuple[str, dict]:
    """(status line and headers, JSON body) of one response read off a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"\0"
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head.decode(), json.loads(body)


def jsonl(records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


# --- authentication, request ids, error bodies -----------------------------------

VALID_KEY = "contact/2026/11/20/0123456789abcdef0123456789abcdef.json"
AUTHED = [
    ("POST", "/ingestion/upload-json", {"stream": "contact", "data": [contact("c1", "a@x.io")]}),
    ("POST", "/ingestion/generate-upload-url", {"stream": "contact", "content_type": "application/jsonl", "content_encoding": "gzip"}),
    ("POST", "/ingestion/request-upload-url", {"stream": "contact", "content_type": "application/jsonl", "content_encoding": "gzip"}),
    ("POST", "/ingestion/confirm-upload", {"file_key": "contact/2026/11/20/0123456789abcdef0123456789abcdef.jsonl.gz"}),
    ("POST", "/ingestion/notify-upload-complete", {"file_key": "contact/2026/11/20/0123456789abcdef0123456789abcdef.jsonl.gz"}),
    ("GET", f"/ingestion/files/{VALID_KEY}", None),
]


@pytest.mark.parametrize("method,path,body", AUTHED, ids=[f"{m} {p.split('/')[2]}" for m, p, _ in AUTHED])
def test_every_ingestion_endpoint_answers_401_without_a_valid_api_key(local_api, method, path, body):
    before = landed_files(local_api)
    missing = local_api.request(method, path, key=None, json=body)
    assert_error(missing, 401, "missing_api_key")
    for wrong in ("nope", KEY + "x", KEY[:-1], API_KEYS[0] + "," + API_KEYS[1], "é"):
        assert_error(local_api.request(method, path, key=wrong, json=body), 401, "invalid_api_key")
    assert landed_files(local_api) == before


def test_whitespace_around_the_api_key_header_value_is_not_part_of_the_key(local_api):
    # RFC 9110 section 5.5; http.client and requests refuse to send it, so a raw socket.
    for value in (f"{KEY} ", f"{KEY}\t", f" {KEY}  "):
        with socket.create_connection(("127.0.0.1", local_api.port), timeout=10) as s:
            s.sendall(f"GET /ingestion/files/{VALID_KEY} HTTP/1.1\r\nHost: test\r\nx-api-key: {value}\r\n\r\n".encode())
            head, body = raw_response(s)
        assert head.startswith("HTTP/1.1 404 ") and body["error_code"] == "file_not_found", (value, head, body)


def test_head_is_answered_where_get_is(local_api):
    r = local_api.request("HEAD", "/openapi.json", key=None)
    assert r.status_code == 200 and r.headers["x-request-id"] and not r.content
    r = local_api.request("HEAD", f"/ingestion/files/{VALID_KEY}")
    assert r.status_code == 404 and r.headers["x-request-id"] and not r.content
    assert local_api.request("HEAD", f"/ingestion/files/{VALID_KEY}", key=None).status_code == 401


def test_any_configured_api_key_is_accepted(local_api):
    for key in API_KEYS:
        r = local_api.post("/ingestion/generate-upload-url", AUTHED[1][2], key=key)
        assert r.status_code == 200, r.text


def test_every_response_carries_a_request_id_and_errors_have_code_and_message(local_api):
    responses = {
        "ok": local_api.post("/ingestion/generate-upload-url", AUTHED[1][2]),
        "unauthorized": local_api.post("/ingestion/generate-upload-url", AUTHED[1][2], key=None),
        "unknown route": local_api.request("GET", "/no/such/route"),
        "wrong method": local_api.request("GET", "/ingestion/upload-json"),
        "wrong media type": local_api.request("POST", "/ingestion/upload-json", data=b"{}", headers={"content-type": "text/plain"}),
        "invalid": local_api.post("/ingestion/upload-json", {"stream": "nope", "data": []}),
        "not found": local_api.request("GET", f"/ingestion/files/{VALID_KEY}"),
        "openapi": local_api.request("GET", "/openapi.json", key=None),
    }
    ids = set()
    for name, r in responses.items():
        rid = r.headers.get("x-request-id")
        assert rid and re.fullmatch(r"[0-9a-f]{32}", rid), name
        ids.add(rid)
    assert len(ids) == len(responses)
    assert_error(responses["unknown route"], 404, "not_found")
    assert_error(responses["wrong method"], 405, "method_not_allowed")
    assert_error(responses["wrong media type"], 415, "unsupported_media_type")
    assert_error(responses["invalid"], 422, "unknown_stream")
    assert_error(responses["not found"], 404, "file_not_found")
    for r in responses.values():
        if r.status_code >= 400:
            assert set(r.json()) <= {"error_code", "message", "errors", "error_count"}


def test_a_safe_client_request_id_is_echoed_and_an_unsafe_one_replaced(local_api):
    r = local_api.request("GET", "/no/such/route", headers={"X-Request-Id": "client-req.42"})
    assert r.headers["x-request-id"] == "client-req.42"
    r = local_api.post("/ingestion/upload-json", {"stream": "contact", "data": []}, headers={"X-Request-Id": "client-req.43"})
    assert r.status_code == 422 and r.headers["x-request-id"] == "client-req.43"
    for unsafe in ("a" * 65, "has space", "semi;colon", "new\\nline"):
        r = local_api.request("GET", "/no/such/route", headers={"X-Request-Id": unsafe})
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), unsafe


def test_keys_and_signatures_never_reach_the_log(local_api):
    url, _ = upload_url(local_api)
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    requests.put(url + "0", data=b"x", timeout=10)  # a bad signature, logged as a 403
    local_api.request("GET", "/no/such/route", key="secret-looking-key")
    time.sleep(0.2)
    log = local_api.log()
    assert "PUT /ingestion/uploads/" in log and " 403 " in log
    for secret in (*API_KEYS, "secret-looking-key", signature, SIGNING_KEY, "expires="):
        assert secret not in log


# --- upload-json ------------------------------------------------------------------


def test_upload_json_lands_the_body_at_its_file_key(api):
    body = json.dumps({"stream": "contact_event", "data": [event("e1", "c1"), event("e2", "c1", "logout")]}).encode()
    r = api.request("POST", "/ingestion/upload-json", data=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"status", "message", "file_key"} and out["status"] == "success"
    key = out["file_key"]
    assert (
        FILE_KEY.fullmatch(key) and key.startswith(f"contact_event/{time.strftime('%Y/%m/%d', time.gmtime())}/") and key.endswith(".json")
    )
    with api.store().open_path(key) as fh:
        assert fh.read() == body
    status = api.request("GET", f"/ingestion/files/{key}").json()
    assert status["status"] == "pending" and status["size_bytes"] == len(body)


def test_upload_json_over_the_limit_by_content_length_is_413_before_the_body_is_sent(local_api):
    before = landed_files(local_api)
    with socket.create_connection(("127.0.0.1", local_api.port), timeout=10) as s:
        s.sendall(
            b"POST /ingestion/upload-json HTTP/1.1\r\nHost: test\r\nx-api-key: "
            + KEY.encode()
            + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(MIB + 1).encode()
            + b"\r\n\r\n"
        )
        head, body = raw_response(s)  # no body byte was sent: the answer cannot wait for it
    assert head.startswith("HTTP/1.1 413 "), head
    assert "x-request-id: " in head.lower()
    assert body["error_code"] == "payload_too_large"
    assert landed_files(local_api) == before


def test_upload_json_chunked_body_passing_the_limit_is_413(local_api):
    before = landed_files(local_api)
    conn = http.client.HTTPConnection("127.0.0.1", local_api.port, timeout=30)
    conn.putrequest("POST", "/ingestion/upload-json")
    conn.putheader("x-api-key", KEY)
    conn.putheader("content-type", "application/json")
    conn.putheader("transfer-encoding", "chunked")
    conn.endheaders()
    payload = b'{"stream": "contact", "data": [' + b" " * (MIB + 64 * 1024)
    try:
        for i in range(0, len(payload), 64 * 1024):
            chunk = payload[i : i + 64 * 1024]
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may stop reading once it has answered
    response = conn.getresponse()
    assert response.status == 413
    assert response.getheader("x-request-id")
    assert json.loads(response.read())["error_code"] == "payload_too_large"
    conn.close()
    assert landed_files(local_api) == before


def test_a_body_just_under_the_limit_is_read(local_api):
    data = [contact(f"c{i}", f"user{i}@x.io", {"pad": "p" * 900}) for i in range(1000)]
    body = json.dumps({"stream": "contact", "data": data}).encode()
    assert 900 * 1024 < len(body) <= MIB
    r = local_api.request("POST", "/ingestion/upload-json", data=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/jsonl", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
def test_upload_json_needs_a_json_content_type(local_api, content_type):
    headers = {"content-type": content_type} if content_type else {}
    body = json.dumps({"stream": "contact", "data": [contact("c1", "a@x.io")]}).encode()
    r = local_api.request("POST", "/ingestion/upload-json", data=body, headers=headers)
    assert_error(r, 415, "unsupported_media_type")


def test_invalid_records_are_refused_with_their_index_field_and_rule_and_nothing_lands(api):
    before = landed_files(api)
    data = [
        contact("c1", "a@x.io"),
        contact("c2", "not-an-email"),
        {"email": "b@x.io", "contact_properties": {}},
        contact("c4", "d@x.io", type="account"),
        contact("null", "e@x.io"),
        contact("c6", "f@x.io", props=[1, 2]),
        "not an object",
    ]
    r = api.post("/ingestion/upload-json", {"stream": "contact", "data": data})
    body = assert_error(r, 422, "invalid_records")
    assert body["error_count"] == 6
    assert [(e["index"], e["field"], e["rule"]) for e in body["errors"]] == [
        (1, "email", "invalid_email"),
        (2, "contact_id", "missing_field"),
        (3, "type", "wrong_stream"),
        (4, "contact_id", "junk_identifier"),
        (5, "contact_properties", "invalid_type"),
        (6, None, "not_an_object"),
    ]
    assert all(e["message"] for e in body["errors"])
    assert "nothing was written" in body["message"]
    assert landed_files(api) == before


def test_event_records_are_checked_for_timestamps(local_api):
    data = [
        event("e1", "c1"),
        event("e2", "c1", ts="yesterday"),
        event("e3", "c1", ts="1970-01-01T00:00:00Z"),
        event("e4", "c1", event_type="account_event"),
    ]
    body = assert_error(local_api.post("/ingestion/upload-json", {"stream": "contact_event", "data": data}), 422, "invalid_records")
    assert [(e["index"], e["field"], e["rule"]) for e in body["errors"]] == [
        (1, "event_timestamp", "invalid_timestamp"),
        (2, "event_timestamp", "timestamp_out_of_range"),
        (3, "event_type", "wrong_stream"),
    ]


def test_the_error_list_is_capped_and_the_total_given(local_api):
    data = [contact(f"c{i}", "bad") for i in range(150)]
    body = assert_error(local_api.post("/ingestion/upload-json", {"stream": "contact", "data": data}), 422, "invalid_records")
    assert body["error_count"] == 150 and len(body["errors"]) == 100
    assert [e["index"] for e in body["errors"]] == list(range(100))


@pytest.mark.parametrize(
    "body,code",
    [
        (b'{"stream": "contact", "data": [', "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b'{"stream": "contact", "data": [{"contact_id": "c1", "email": "a@x.io", "contact_properties": {}}], "x": NaN}', "invalid_json"),
        (b'[{"contact_id": "c1"}]', "invalid_payload"),
        (b'{"data": [{"contact_id": "c1"}]}', "invalid_payload"),
        (b'{"stream": "identify", "data": [{"contact_id": "c1"}]}', "unknown_stream"),
        (b'{"stream": ["contact"], "data": [{"contact_id": "c1"}]}', "unknown_stream"),
        (b'{"stream": "contact"}', "invalid_payload"),
        (b'{"stream": "contact", "data": {"contact_id": "c1"}}', "invalid_payload"),
        (b'{"stream": "contact", "data": []}', "empty_data"),
        (b"", "invalid_json"),
    ],
)
def test_payloads_of_the_wrong_shape_are_422(local_api, body, code):
    r = local_api.request("POST", "/ingestion/upload-json", data=body, headers={"content-type": "application/json"})
    assert_error(r, 422, code)


# --- file status and file keys --------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/ingestion/files/../../etc/passwd",
        "/ingestion/files/contact/../x",
        "/ingestion/files/contact/../../../../etc/passwd",
        "/ingestion/files/..%2F..%2Fetc%2Fpasswd",
        "/ingestion/files/contact%2F2026%2F..%2F..%2F..%2Fserver.log",
        "/ingestion/files/_uploads/contact/2026/11/20/0123456789abcdef0123456789abcdef.jsonl.gz",
        "/ingestion/files/crm/2026/11/20/0123456789abcdef0123456789abcdef.json",
        "/ingestion/files/contact/2026/11/20/0123456789ABCDEF0123456789ABCDEF.json",
        "/ingestion/files/contact/2026/11/20/0123456789abcdef0123456789abcdef.json%00",
        "/ingestion/files/" + VALID_KEY,
    ],
)
def test_unknown_file_keys_and_path_traversal_are_404(local_api, path):
    # http.client sends the path as written: no client-side dot-segment removal.
    conn = http.client.HTTPConnection("127.0.0.1", local_api.port, timeout=10)
    conn.request("GET", path, headers={"x-api-key": KEY})
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert response.status == 404, body
    assert body["error_code"] in ("file_not_found", "not_found") and body["message"]
    assert response.getheader("x-request-id")


def test_confirm_and_signed_upload_refuse_keys_that_are_not_upload_keys(local_api):
    for key in ("../../etc/passwd", "contact/../x", VALID_KEY, "contact/2026/11/20/x.jsonl.gz", 42, None):
        assert_error(local_api.post("/ingestion/confirm-upload", {"file_key": key}), 422, "invalid_file_key")
    assert_error(local_api.post("/ingestion/confirm-upload", {}), 422, "invalid_request")
    url, key = upload_url(local_api)
    query = urlsplit(url).query
    for other in ("..%2F..%2Fetc%2Fpasswd", "contact/../x", key.replace(".jsonl.gz", ".json")):
        assert_error(requests.put(f"{local_api.url}/ingestion/uploads/{other}?{query}", data=b"x", timeout=10), 403, "invalid_signature")


def test_file_status_follows_an_upload_from_awaiting_confirmation_to_pending(local_api):
    url, key = upload_url(local_api, "account")
    assert_error(local_api.request("GET", f"/ingestion/files/{key}"), 404, "file_not_found")
    data = gzip.compress(jsonl([{"account_id": "a1", "domain": "x.io", "account_properties": {}}]))
    assert put_upload(url, data).status_code == 200
    status = local_api.request("GET", f"/ingestion/files/{key}").json()
    assert status["status"] == "awaiting_confirmation" and status["size_bytes"] == len(data)
    assert local_api.post("/ingestion/confirm-upload", {"file_key": key}).json()["status"] == "confirmed"
    status = local_api.request("GET", f"/ingestion/files/{key}").json()
    assert status["status"] == "pending" and status["stream"] == "account" and status["landed_at"]


# --- presigned uploads -----------------------------------------------------------------


def test_the_reference_upload_snippet_works_unchanged_on_a_generated_url(api, tmp_path, monkeypatch, capsys):
    url, key = upload_url(api, "contact_event")
    records = [event(f"e{i}", "c1") for i in range(3)]
    (tmp_path / "valid.jsonl").write_bytes(jsonl(records))
    monkeypatch.chdir(tmp_path)
    exec(compile(SNIPPET.read_text(), str(SNIPPET), "exec"), {"presigned_url": url, "__name__": "reference_upload_snippet"})
    assert capsys.readouterr().out.strip() == "Upload successful"
    assert api.request("GET", f"/ingestion/files/{key}").json()["status"] == "awaiting_confirmation"
    assert f"{PENDING_PREFIX}/{key}" in landed_files(api) and key not in landed_files(api)
    r = api.post("/ingestion/confirm-upload", {"file_key": key})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"status", "message"} and r.json()["status"] == "confirmed"
    files = landed_files(api)
    assert key in files and f"{PENDING_PREFIX}/{key}" not in files
    with api.store().open_path(key) as fh:
        assert gzip.decompress(fh.read()) == jsonl(records)
    again = api.post("/ingestion/notify-upload-complete", {"file_key": key})
    assert again.status_code == 200 and again.json()["status"] == "already_confirmed"


def test_upload_urls_live_for_the_configured_ttl(local_api, s3_api):
    url, _ = upload_url(local_api)
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert abs(expires - (time.time() + 900)) < 30
    assert url.startswith(local_api.url + "/ingestion/uploads/")
    url, key = upload_url(s3_api)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["900"] and f"/{PENDING_PREFIX}/{key}" in urlsplit(url).path


def test_confirm_refuses_an_upload_that_is_not_gzip_and_drops_it(api):
    url, key = upload_url(api)
    assert put_upload(url, jsonl([contact("c1", "a@x.io")])).status_code == 200
    body = assert_error(api.post("/ingestion/confirm-upload", {"file_key": key}), 422, "not_gzip")
    assert "gzip" in body["message"]
    assert not [f for f in landed_files(api) if key in f]
    assert_error(api.post("/ingestion/confirm-upload", {"file_key": key}), 404, "upload_not_found")


def test_confirm_refuses_a_gzip_of_non_json_naming_the_line(api):
    url, key = upload_url(api)
    assert put_upload(url, gzip.compress(b"id,email\nc1,a@x.io\n")).status_code == 200
    body = assert_error(api.post("/ingestion/confirm-upload", {"file_key": key}), 422, "invalid_records")
    assert "line 1" in body["message"] and "invalid_json" in body["message"]
    assert [(e["line"], e["rule"]) for e in body["errors"]] == [(1, "invalid_json"), (2, "invalid_json")]
    assert not [f for f in landed_files(api) if key in f]


def test_confirm_refuses_records_that_all_fail_validation_but_accepts_some_bad_ones(local_api):
    url, key = upload_url(local_api, "contact")
    assert put_upload(url, gzip.compress(jsonl([contact("c1", "nope"), contact("", "a@x.io")]))).status_code == 200
    body = assert_error(local_api.post("/ingestion/confirm-upload", {"file_key": key}), 422, "invalid_records")
    assert "line 1, field 'email': invalid_email" in body["message"]
    url, key = upload_url(local_api, "contact")
    assert put_upload(url, gzip.compress(jsonl([contact("c1", "nope"), contact("c2", "a@x.io")]))).status_code == 200
    r = local_api.post("/ingestion/confirm-upload", {"file_key": key})
    assert r.status_code == 200 and "line 1" in r.json()["message"]


def test_confirm_refuses_a_corrupt_gzip_and_an_empty_one(local_api):
    url, key = upload_url(local_api)
    whole = gzip.compress(jsonl([contact(f"c{i}", f"u{i}@x.io") for i in range(200)]))
    assert put_upload(url, whole[: len(whole) // 2]).status_code == 200
    assert_error(local_api.post("/ingestion/confirm-upload", {"file_key": key}), 422, "corrupt_gzip")
    url, key = upload_url(local_api)
    assert put_upload(url, gzip.compress(b"\n\n")).status_code == 200
    assert_error(local_api.post("/ingestion/confirm-upload", {"file_key": key}), 422, "empty_file")


def test_a_confirmation_racing_another_one_is_not_a_server_error(tmp_path):
    # Two confirmations of one upload: both see it pending, the other one moves it
    # away before this one opens it. Driven in process: the window is too narrow to
    # hit reliably over HTTP.
    from ingestion_pipeline.api import create_app
    from ingestion_pipeline.landing import LocalLandingStore
    from ingestion_pipeline.settings import Settings

    class Racing(LocalLandingStore):
        action = "move"

        def open_path(self, path):
            if path.startswith(PENDING_PREFIX + "/"):
                if self.action == "move":
                    self.move(path, path[len(PENDING_PREFIX) + 1 :])
                else:
                    self.delete(path)
            return super().open_path(path)

    store = Racing(tmp_path / "landing")
    api = create_app(Settings(landing_url=store.url, warehouse_dir=tmp_path / "warehouse"), ["k"], store=store).state.api
    key = "contact/2026/11/20/0123456789abcdef0123456789abcdef.jsonl.gz"
    store.write_bytes(f"{PENDING_PREFIX}/{key}", gzip.compress(jsonl([contact("c1", "a@x.io")])))
    assert api.confirm(key)["status"] == "already_confirmed"
    store.action = "delete"  # the other confirmation refused and dropped it
    other = key.replace("0123", "4567")
    store.write_bytes(f"{PENDING_PREFIX}/{other}", gzip.compress(jsonl([contact("c1", "a@x.io")])))
    from ingestion_pipeline.api.errors import ApiError

    with pytest.raises(ApiError) as refused:
        api.confirm(other)
    assert (refused.value.status, refused.value.error_code) == (404, "upload_not_found")


def test_confirm_of_an_unknown_upload_is_404(api):
    _, key = upload_url(api)
    assert_error(api.post("/ingestion/confirm-upload", {"file_key": key}), 404, "upload_not_found")


def sign(file_key: str, expires: int) -> str:
    return hmac.new(SIGNING_KEY.encode(), f"PUT\n{file_key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def test_a_tampered_or_expired_local_upload_url_is_403(local_api):
    url, key = upload_url(local_api)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    expires, signature = int(query["expires"][0]), query["signature"][0]
    base = f"{local_api.url}{parts.path}"
    data = gzip.compress(jsonl([contact("c1", "a@x.io")]))
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    cases = {
        "tampered signature": f"{base}?expires={expires}&signature={flipped}",
        "longer expiry": f"{base}?expires={expires + 3600}&signature={signature}",
        "no signature": f"{base}?expires={expires}",
        "no expiry": f"{base}?signature={signature}",
        "other key": url.replace(key, key.replace(key.rsplit("/", 1)[1][:8], "00000000")),
    }
    for bad in cases.values():
        assert_error(requests.put(bad, data=data, timeout=10), 403, "invalid_signature")
    past = int(time.time()) - 5
    expired = f"{base}?expires={past}&signature={sign(key, past)}"
    assert_error(requests.put(expired, data=data, timeout=10), 403, "upload_url_expired")
    assert not [f for f in landed_files(local_api) if key in f]
    assert put_upload(url, data).status_code == 200  # the genuine URL still works


def test_a_signed_upload_over_the_limit_is_413_and_leaves_nothing(local_api):
    url, key = upload_url(local_api)
    parts = urlsplit(url)
    with socket.create_connection(("127.0.0.1", local_api.port), timeout=10) as s:
        s.sendall(f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: test\r\ncontent-length: {3 * 1024**3}\r\n\r\n".encode())
        head, body = raw_response(s)
    assert head.startswith("HTTP/1.1 413 ") and body["error_code"] == "payload_too_large", head

    def chunks():
        for _ in range(LOCAL_MAX_UPLOAD_BYTES // (256 * 1024) + 2):
            yield b"\x1f" * (256 * 1024)

    try:
        r = requests.put(url, data=chunks(), timeout=30)  # chunked: no Content-Length
        assert_error(r, 413, "payload_too_large")
    except requests.ConnectionError:
        pass  # the server may close the connection while the client still sends
    time.sleep(0.2)
    assert not [f for f in landed_files(local_api) if key.rsplit("/", 1)[1][:32] in f]
    assert_error(local_api.post("/ingestion/confirm-upload", {"file_key": key}), 404, "upload_not_found")


def test_generate_upload_url_checks_its_request(local_api):
    body = assert_error(
        local_api.post("/ingestion/generate-upload-url", {"stream": "crm", "content_type": "text/csv"}), 422, "invalid_request"
    )
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [
        ("stream", "invalid_value"),
        ("content_type", "invalid_value"),
        ("content_encoding", "missing_field"),
    ]
    assert_error(
        local_api.request("POST", "/ingestion/generate-upload-url", data=b"{", headers={"content-type": "application/json"}),
        422,
        "invalid_json",
    )
    assert_error(
        local_api.request("POST", "/ingestion/generate-upload-url", data=b"[]", headers={"content-type": "application/json"}),
        422,
        "invalid_request",
    )
    assert_error(
        local_api.request("POST", "/ingestion/generate-upload-url", data=b"{}", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )


# --- the published contract -------------------------------------------------------------


def test_the_published_openapi_keeps_every_reference_path_and_schema(local_api):
    reference = json.loads(REFERENCE.read_text())
    published = local_api.request("GET", "/openapi.json", key=None).json()
    assert published["openapi"] == reference["openapi"]
    for path, item in reference["paths"].items():
        assert published["paths"][path] == item, path
    for name, schema in reference["components"]["schemas"].items():
        assert published["components"]["schemas"][name] == schema, name
    assert published["components"]["securitySchemes"] == reference["components"]["securitySchemes"]
    assert published["security"] == reference["security"]
    operation_ids = {op["operationId"] for item in published["paths"].values() for op in item.values()}
    assert {"Ingestion_uploadJson", "Ingestion_generateUploadUrl", "Ingestion_confirmUpload"} <= operation_ids
    assert {"/ingestion/files/{file_key}", "/ingestion/uploads/{file_key}"} <= set(published["paths"])
    assert published["servers"] == [{"url": local_api.url, "description": "This server"}]
    assert "ErrorResponse" in published["components"]["schemas"]
    assert set(published["components"]["responses"]) >= {
        "Unauthorized",
        "PayloadTooLarge",
        "UnsupportedMediaType",
        "ValidationFailed",
        "NotFound",
    }
    accepted = reference["components"]["schemas"]["AcceptedStream"]["enum"]
    from ingestion_pipeline.api.keys import API_STREAMS

    assert sorted(accepted) == list(API_STREAMS)


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(local_api, tmp_path):
    st = Path(sys.executable).with_name("st")
    done = subprocess.run(
        [
            str(st),
            "--no-color",
            "run",
            f"{local_api.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"x-api-key: {KEY}",
            "--max-examples",
            "50",
            "--phases",
            "fuzzing",
            "--seed",
            "20261120",
            "--request-timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert not re.search(r" 5\d\d [0-9.]+ms ", local_api.log())


# --- configuration and the last-resort error handler (in process) ----------------------


@pytest.mark.parametrize(
    "env,message",
    [
        ({"INGEST_API_KEYS": ""}, "INGEST_API_KEYS is empty"),
        ({"INGEST_API_KEYS": " , "}, "INGEST_API_KEYS is empty"),
        ({"INGEST_API_KEYS": "k", "INGEST_UPLOAD_URL_TTL_SECONDS": "7200"}, "INGEST_UPLOAD_URL_TTL_SECONDS must be between 1 and 3600"),
        ({"INGEST_API_KEYS": "k", "INGEST_API_MAX_UPLOAD_BYTES": str(3 * 1024**3)}, "INGEST_API_MAX_UPLOAD_BYTES must be between"),
    ],
)
def test_serve_refuses_to_start_with_a_clear_message(env, message):
    from click.testing import CliRunner

    from ingestion_pipeline.cli import main

    result = CliRunner().invoke(main, ["serve", "--port", "1"], env=env)
    assert result.exit_code == 1
    assert "cannot start the ingestion API" in result.output and message in result.output


def test_an_unexpected_error_is_a_generic_500_with_a_request_id_and_details_only_in_the_log(tmp_path, caplog):
    # No route of the API fails on purpose, so one is added to an app driven in process.
    import asyncio

    from ingestion_pipeline.api import create_app
    from ingestion_pipeline.api.errors import INTERNAL_ERROR_MESSAGE
    from ingestion_pipeline.settings import Settings

    app = create_app(Settings(landing_url=str(tmp_path / "landing"), warehouse_dir=tmp_path / "warehouse"), ["k"])

    @app.get("/boom")
    async def boom():
        raise RuntimeError("secret detail hunter2")

    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/boom",
        "raw_path": b"/boom",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))
    start, body = messages[0], b"".join(m.get("body", b"") for m in messages[1:])
    headers = dict(start["headers"])
    assert start["status"] == 500 and re.fullmatch(rb"[0-9a-f]{32}", headers[b"x-request-id"])
    assert json.loads(body) == {"error_code": "internal_error", "message": INTERNAL_ERROR_MESSAGE}
    assert "hunter2" in caplog.text and headers[b"x-request-id"].decode() in caplog.text
