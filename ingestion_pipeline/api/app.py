"""The ingestion HTTP API (SPEC section 5): FastAPI routes over a landing store.

Nothing here imports Dagster: the API only writes to the landing store (the
sensor picks files up from there) and reads the ledger for file status."""

from __future__ import annotations

import contextlib
import copy
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from importlib import metadata
from typing import Any

import polars as pl
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..landing import PENDING_PREFIX, LandingError, LandingStore, LocalLandingStore, open_landing
from ..settings import Settings
from ..status import FileStatus
from ..warehouse import LEDGER, REJECTED, Warehouse
from .checks import check_json_upload, check_upload_sample
from .config import ApiOptions, ConfigError, parse_api_keys
from .errors import ApiError, error_response, install_error_handlers
from .keys import (
    API_STREAMS,
    JSON_SUFFIX,
    SIGNATURE_PATTERN,
    UPLOAD_SUFFIX,
    is_file_key,
    is_upload_key,
    new_file_key,
    sign_upload,
    signature_ok,
    stream_of,
)
from .middleware import RequestContextMiddleware
from .openapi import build_openapi

log = logging.getLogger("ingestion_pipeline.api")

DIGITS = re.compile(r"[0-9]{1,20}")
SMALL_BODY_BYTES = 64 * 1024  # generate-upload-url / confirm-upload bodies
FIRST_REJECTED = 10
UPLOAD_CHUNK_BYTES = 1024 * 1024  # bytes handed to the store's writer at once


def _version() -> str:
    try:
        return metadata.version("ingestion-pipeline")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; a client gone mid-body is a 400, not a crash."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise ApiError(400, "incomplete_body", "the client disconnected before the whole request body arrived") from None


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and DIGITS.fullmatch(value) else None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to pass `limit`:
    from Content-Length before reading anything, else while counting the stream
    (at most limit + 1 bytes are kept)."""
    too_large = ApiError(413, "payload_too_large", f"request body exceeds the limit of {limit} bytes")
    if (declared_length(request) or 0) > limit:
        raise too_large
    parts, size = [], 0
    async for chunk in body_chunks(request):
        size += len(chunk)
        if size > limit:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


def require_json_content_type(request: Request) -> None:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Encoding {encoding[:40]!r} is not accepted here: send plain JSON (gzip files go through generate-upload-url)",
        )
    media, _, params = request.headers.get("content-type", "").partition(";")
    charset = next(
        (p.split("=", 1)[1].strip().strip('"').lower() for p in params.split(";") if p.strip().lower().startswith("charset=")), "utf-8"
    )
    if media.strip().lower() != "application/json" or charset not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json (UTF-8)")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(422, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_request", "request body must be a JSON object")
    return value


def _require_choice(obj: dict, field: str, choices: Sequence[str], errors: list) -> Any:
    value = obj.get(field)
    if field not in obj:
        errors.append({"field": field, "rule": "missing_field", "message": f"field '{field}' is required: one of {', '.join(choices)}"})
    elif value not in choices:
        shown = json.dumps(value)[:100]
        errors.append(
            {"field": field, "rule": "invalid_value", "message": f"field '{field}' must be one of {', '.join(choices)}, got {shown}"}
        )
    return value


class IngestionApi:
    """The state behind the routes: landing store, keys, limits."""

    def __init__(self, settings: Settings, api_keys: Sequence[str], options: ApiOptions, store: LandingStore):
        self.settings = settings
        self.keys = [k.encode() for k in api_keys]
        self.options = options
        self.store = store
        self.signing_key = options.signing_key or secrets.token_bytes(32)
        self.warehouse = Warehouse(settings.warehouse_dir)

    # --- auth -----------------------------------------------------------------

    async def check_api_key(self, request: Request) -> None:
        # Whitespace around a field value is not part of it (RFC 9110 section 5.5);
        # httptools keeps trailing whitespace, so it is dropped here.
        provided = (request.headers.get("x-api-key") or "").strip(" \t")
        if not provided:
            raise ApiError(401, "missing_api_key", "the x-api-key header is required")
        given = provided.encode("latin-1", "replace")
        matched = False
        for key in self.keys:  # every key, so the time taken says nothing about which matched
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise ApiError(401, "invalid_api_key", "the x-api-key header does not hold a valid API key")

    # --- upload-json ----------------------------------------------------------

    def land_json(self, body: bytes) -> dict[str, Any]:
        stream, count = check_json_upload(body, self.settings)
        file_key = new_file_key(stream, JSON_SUFFIX)
        self.store.write_bytes(file_key, body)
        return {
            "status": "success",
            "message": f"{count} record(s) of stream '{stream}' landed; GET /ingestion/files/{file_key} reports their ingestion",
            "file_key": file_key,
        }

    # --- presigned uploads ----------------------------------------------------

    def upload_url(self, stream: str, base_url: str) -> dict[str, str]:
        file_key = new_file_key(stream, UPLOAD_SUFFIX)
        ttl = self.options.upload_url_ttl_seconds
        url = self.store.presigned_put_url(f"{PENDING_PREFIX}/{file_key}", ttl)
        if url is None:  # a local folder: this server takes the upload itself
            expires = int(time.time()) + ttl
            signature = sign_upload(self.signing_key, file_key, expires)
            url = f"{base_url}/ingestion/uploads/{file_key}?expires={expires}&signature={signature}"
        return {"upload_url": url, "file_key": file_key}

    def confirm(self, file_key: str) -> dict[str, str]:
        pending = f"{PENDING_PREFIX}/{file_key}"
        upload = self.store.stat(pending)
        already = {
            "status": "already_confirmed",
            "message": f"{file_key} was already confirmed; GET /ingestion/files/{file_key} reports its ingestion",
        }

        def gone() -> dict[str, str]:
            if self.store.stat(file_key) is not None:
                return already
            raise ApiError(
                404,
                "upload_not_found",
                f"no upload found for {file_key}: PUT the file to the upload URL first "
                f"(upload URLs expire {self.options.upload_url_ttl_seconds} s after they are made)",
            )

        if upload is None:
            return gone()
        try:
            if upload.size > self.options.max_upload_bytes:
                raise ApiError(
                    422,
                    "upload_too_large",
                    f"{file_key}: {upload.size} bytes exceeds the upload limit of {self.options.max_upload_bytes} bytes",
                )
            with self.store.open_path(pending) as raw:
                sample = check_upload_sample(raw, file_key, stream_of(file_key), self.settings)
        except ApiError:
            self.store.delete(pending)  # refused: the upload is dropped, the client uploads again
            raise
        except (LandingError, FileNotFoundError):
            if self.store.stat(pending) is None:  # a concurrent confirmation moved or refused it
                return gone()
            raise
        try:
            self.store.move(pending, file_key)
        except (LandingError, FileNotFoundError):
            if self.store.stat(pending) is None and self.store.stat(file_key) is not None:
                return already  # a concurrent confirmation won
            raise
        invalid = sample.records - sample.valid
        note = f"; {invalid} of them invalid (will be rejected), first: {sample.first_error}" if invalid else ""
        return {
            "status": "confirmed",
            "message": f"{file_key} confirmed and queued for ingestion: first {sample.records} record(s) checked{note}",
        }

    async def receive_upload(self, request: Request, file_key: str) -> int:
        """Streams a signed upload into the pending area: the bytes appear only when
        the whole body arrived within the limit; otherwise nothing is left."""
        limit = self.options.max_upload_bytes
        too_large = ApiError(413, "payload_too_large", f"upload exceeds the limit of {limit} bytes")
        if (declared_length(request) or 0) > limit:
            raise too_large
        writer = self.store.writer(f"{PENDING_PREFIX}/{file_key}")
        out = await run_in_threadpool(writer.__enter__)
        size = 0
        buffer = bytearray()
        try:
            async for chunk in body_chunks(request):
                size += len(chunk)
                if size > limit:
                    raise too_large
                buffer += chunk
                if len(buffer) >= UPLOAD_CHUNK_BYTES:
                    await run_in_threadpool(out.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await run_in_threadpool(out.write, bytes(buffer))
        except BaseException as exc:
            await run_in_threadpool(writer.__exit__, type(exc), exc, exc.__traceback__)
            raise
        await run_in_threadpool(writer.__exit__, None, None, None)
        return size

    # --- file status ----------------------------------------------------------

    def file_status(self, file_key: str) -> dict[str, Any]:
        stream = stream_of(file_key)
        in_stream = pl.col("stream") == stream
        rows = self.warehouse.scan(LEDGER).filter(in_stream & (pl.col("file") == file_key)).collect()
        current = self.store.stat(file_key)
        base: dict[str, Any] = {"file_key": file_key, "stream": stream}
        if rows.height and (current is None or current.file_id in set(rows["file_id"].to_list())):
            row = rows.sort("landed_at", "processed_at", descending=True, nulls_last=True).row(0, named=True)
            rejected = (
                self.warehouse.scan(REJECTED)
                .filter(in_stream & (pl.col("file") == file_key) & (pl.col("landed_at") == row["landed_at"]))
                .select("line", "field", "rule", "message")
                .sort("line", nulls_last=False)
                .head(FIRST_REJECTED)
                .collect()
            )
            messages = {
                FileStatus.LOADED: f"loaded {row['rows_loaded']} of {row['rows_read']} record(s)",
                FileStatus.PARTIALLY_LOADED: f"loaded {row['rows_loaded']} of {row['rows_read']} record(s); {row['rows_rejected']} rejected",
                FileStatus.REJECTED: f"no record loaded: {row['first_error']}",
                FileStatus.SKIPPED_DUPLICATE: "same content as a file already loaded",
                FileStatus.FAILED: "the pipeline failed on this file; the next run retries it",
            }
            return {
                **base,
                "status": row["status"],
                "message": messages.get(row["status"], row["status"]),
                "format": row["format"],
                "size_bytes": row["size_bytes"],
                "landed_at": _iso(row["landed_at"]),
                "processed_at": _iso(row["processed_at"]),
                "rows_read": row["rows_read"],
                "rows_loaded": row["rows_loaded"],
                "rows_rejected": row["rows_rejected"],
                "rows_duplicate": row["rows_duplicate"],
                "first_error": row["first_error"],
                # Unknown top-level fields kept in properties (SPEC section 2), comma-separated.
                "schema_drift": row["schema_drift"],
                "rejected_records": rejected.to_dicts(),
            }
        fmt = "json" if file_key.endswith(JSON_SUFFIX) else "jsonl.gz"
        if current is not None:
            return {
                **base,
                "status": "pending",
                "message": "landed; waiting for the next ingest run",
                "format": fmt,
                "size_bytes": current.size,
                "landed_at": _iso(current.landed_at),
                "rejected_records": [],
            }
        upload = self.store.stat(f"{PENDING_PREFIX}/{file_key}")
        if upload is not None:
            return {
                **base,
                "status": "awaiting_confirmation",
                "message": "uploaded; confirm it with POST /ingestion/confirm-upload to have it ingested",
                "format": fmt,
                "size_bytes": upload.size,
                "rejected_records": [],
            }
        raise ApiError(404, "file_not_found", f"no file with key {file_key}")


def create_app(
    settings: Settings,
    api_keys: Sequence[str],
    options: ApiOptions | None = None,
    store: LandingStore | None = None,
) -> FastAPI:
    """The API on `settings.landing_url` (or `store`), accepting any of `api_keys`."""
    keys = [k for k in api_keys if k]
    if not keys:
        raise ConfigError("no API keys: set INGEST_API_KEYS to one or more comma-separated keys")
    options = options or ApiOptions()
    if options.max_json_bytes > settings.max_document_bytes:
        raise ConfigError(
            f"INGEST_API_MAX_JSON_BYTES ({options.max_json_bytes}) exceeds INGEST_MAX_DOCUMENT_BYTES ({settings.max_document_bytes})"
        )
    api = IngestionApi(settings, keys, options, store or open_landing(settings.landing_url))
    version = _version()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        local = isinstance(api.store, LocalLandingStore)
        log.info(
            "ingestion API on landing %s; upload URLs %s",
            settings.landing_url,
            "signed by this server" if local else "presigned by the landing store",
        )
        if local and options.signing_key is None:
            log.warning(
                "INGEST_UPLOAD_SIGNING_KEY is not set: upload URLs are signed with a random key of this process and "
                "only it accepts them; set the same key on every worker or instance"
            )
        yield

    app = FastAPI(
        title="ingestion-pipeline ingestion API",
        version=version,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.api = api
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)

    @app.exception_handler(LandingError)
    async def landing_unavailable(request: Request, exc: LandingError) -> JSONResponse:
        log.error("landing store error (request_id=%s): %s", request.state.request_id, exc)
        return error_response(503, "landing_unavailable", "the landing store is unavailable; retry later")

    public_url = options.public_url.rstrip("/") if options.public_url else None
    published = build_openapi(version, public_url)
    app.openapi = lambda: published  # type: ignore[method-assign]

    def base_url(request: Request) -> str:
        return public_url or str(request.base_url).rstrip("/")

    authed = [Depends(api.check_api_key)]

    @app.api_route("/openapi.json", methods=["GET", "HEAD"], include_in_schema=False)
    async def openapi_document(request: Request) -> JSONResponse:
        doc = app.openapi()
        if not public_url:
            doc = {**doc, "servers": [{"url": base_url(request), "description": "This server"}]}
        return JSONResponse(doc)

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="ingestion-pipeline ingestion API")

    @app.post("/ingestion/upload-json", dependencies=authed)
    async def upload_json(request: Request):
        require_json_content_type(request)
        body = await read_body(request, options.max_json_bytes)
        return await run_in_threadpool(api.land_json, body)

    async def generate_upload_url(request: Request):
        require_json_content_type(request)
        obj = _json_object(await read_body(request, SMALL_BODY_BYTES))
        errors: list[dict] = []
        stream = _require_choice(obj, "stream", API_STREAMS, errors)
        _require_choice(obj, "content_type", ["application/jsonl"], errors)
        _require_choice(obj, "content_encoding", ["gzip"], errors)
        if errors:
            raise ApiError(422, "invalid_request", "; ".join(e["message"] for e in errors), errors=errors)
        return await run_in_threadpool(api.upload_url, stream, base_url(request))

    async def confirm_upload(request: Request):
        require_json_content_type(request)
        obj = _json_object(await read_body(request, SMALL_BODY_BYTES))
        file_key = obj.get("file_key")
        if "file_key" not in obj:
            raise ApiError(422, "invalid_request", "field 'file_key' is required: the key generate-upload-url returned")
        if not is_upload_key(file_key):
            raise ApiError(
                422,
                "invalid_file_key",
                "field 'file_key' is not an upload file key (<stream>/YYYY/MM/DD/<32 hex>.jsonl.gz, as returned by generate-upload-url)",
            )
        return await run_in_threadpool(api.confirm, file_key)

    # The OpenAPI paths are the contract; the names in the vendor's prose are aliases.
    for path, endpoint, visible in (
        ("/ingestion/generate-upload-url", generate_upload_url, True),
        ("/ingestion/request-upload-url", generate_upload_url, False),
        ("/ingestion/confirm-upload", confirm_upload, True),
        ("/ingestion/notify-upload-complete", confirm_upload, False),
    ):
        app.add_api_route(path, endpoint, methods=["POST"], dependencies=authed, include_in_schema=visible)

    @app.api_route("/ingestion/files/{file_key:path}", methods=["GET", "HEAD"], dependencies=authed)
    async def get_file(file_key: str):
        if not is_file_key(file_key):
            raise ApiError(404, "file_not_found", "no file with this key (keys look like <stream>/YYYY/MM/DD/<32 hex>.json or .jsonl.gz)")
        return await run_in_threadpool(api.file_status, file_key)

    @app.put("/ingestion/uploads/{file_key:path}")
    async def signed_upload(request: Request, file_key: str, expires: str | None = None, signature: str | None = None):
        valid = (
            expires is not None
            and signature is not None
            and re.fullmatch(r"[0-9]{1,12}", expires) is not None
            and SIGNATURE_PATTERN.fullmatch(signature) is not None
            and is_upload_key(file_key)
            and signature_ok(api.signing_key, file_key, int(expires), signature)
        )
        if not valid:
            raise ApiError(
                403, "invalid_signature", "the upload URL is not valid: request a new one from POST /ingestion/generate-upload-url"
            )
        if int(expires) < time.time():
            raise ApiError(
                403, "upload_url_expired", "the upload URL has expired: request a new one from POST /ingestion/generate-upload-url"
            )
        size = await api.receive_upload(request, file_key)
        return {
            "status": "uploaded",
            "message": f"{size} bytes stored; confirm with POST /ingestion/confirm-upload to have the file ingested",
            "file_key": file_key,
            "size_bytes": size,
        }

    return app


def create_app_from_env() -> FastAPI:
    """The API configured from the environment (INGEST_* variables, SPEC section 4)."""
    keys = parse_api_keys(os.environ.get("INGEST_API_KEYS"))
    if not keys:
        raise ConfigError(
            "INGEST_API_KEYS is empty: set it to one or more comma-separated API keys; clients send one in the x-api-key header"
        )
    return create_app(Settings.from_env(), keys, ApiOptions.from_env())


def logging_config() -> dict[str, Any]:
    """uvicorn's logging plus this package's logger; uvicorn's access log stays off
    (it would log query strings, which hold upload URL signatures)."""
    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["ingestion_pipeline"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def run_server(app: FastAPI, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, access_log=False, log_config=logging_config(), server_header=False)
