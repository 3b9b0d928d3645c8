"""The published OpenAPI document: the reference contract (openapi_reference.json, a
verbatim copy of reference/ingestion-api.openapi.json) with its paths and schemas
untouched, plus this server's own additions: the file status and signed upload
paths, the error body schema and reusable error responses, and `servers`
pointing at this server."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from ..status import FileStatus
from .keys import FILE_KEY_PATTERN, UPLOAD_KEY_PATTERN

REFERENCE_FILE = "openapi_reference.json"
# Before the ledger has a row: waiting for confirm-upload, or for the pipeline.
FILE_STATUSES = ["awaiting_confirmation", "pending", *(str(s) for s in FileStatus)]


@lru_cache(maxsize=1)
def reference_contract() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath(REFERENCE_FILE).read_text(encoding="utf-8"))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("ErrorResponse")}}}


SCHEMAS: dict[str, Any] = {
    "ErrorResponse": {
        "type": "object",
        "required": ["error_code", "message"],
        "properties": {
            "error_code": {"type": "string", "description": "Stable snake_case error code (e.g. invalid_api_key, invalid_records)"},
            "message": {"type": "string", "description": "What went wrong and what would be valid"},
            "errors": {
                "type": "array",
                "items": _ref("RecordError"),
                "description": "Per-record (or per-field) errors, at most 100",
            },
            "error_count": {"type": "integer", "description": "Total number of invalid records"},
        },
        "description": "Body of every error response",
    },
    "RecordError": {
        "type": "object",
        "required": ["rule", "message"],
        "properties": {
            "index": {"type": "integer", "description": "0-based position of the record in `data` (upload-json)"},
            "line": {"type": ["integer", "null"], "description": "1-based line of the record in the uploaded file (confirm-upload)"},
            "field": {"type": ["string", "null"], "description": "Field at fault, when one is"},
            "rule": {"type": "string", "description": "Broken rule (missing_field, invalid_email, invalid_timestamp...)"},
            "message": {"type": "string"},
        },
    },
    "RejectedRecord": {
        "type": "object",
        "required": ["line", "field", "rule", "message"],
        "properties": {
            "line": {"type": ["integer", "null"], "description": "1-based line (or record position); null for the whole file"},
            "field": {"type": ["string", "null"]},
            "rule": {"type": "string"},
            "message": {"type": "string"},
        },
    },
    "FileStatusResponse": {
        "type": "object",
        "required": ["file_key", "status", "stream"],
        "properties": {
            "file_key": {"type": "string"},
            "status": {
                "type": "string",
                "enum": FILE_STATUSES,
                "description": "awaiting_confirmation: uploaded, not confirmed; pending: landed, not ingested yet; "
                "otherwise the ledger status of the latest ingested version",
            },
            "message": {"type": "string"},
            "stream": {"type": "string"},
            "format": {"type": ["string", "null"]},
            "size_bytes": {"type": ["integer", "null"]},
            "landed_at": {"type": ["string", "null"], "format": "date-time"},
            "processed_at": {"type": ["string", "null"], "format": "date-time"},
            "rows_read": {"type": ["integer", "null"]},
            "rows_loaded": {"type": ["integer", "null"]},
            "rows_rejected": {"type": ["integer", "null"]},
            "rows_duplicate": {"type": ["integer", "null"]},
            "first_error": {"type": ["string", "null"]},
            "schema_drift": {
                "type": ["string", "null"],
                "description": "Unknown top-level fields found in the file (kept in the record's properties), comma-separated",
            },
            "rejected_records": {
                "type": "array",
                "items": _ref("RejectedRecord"),
                "description": "The first rejected records (at most 10)",
            },
        },
        "description": "Where a file is in the pipeline: its ledger row and first rejected records",
    },
    "SignedUploadResponse": {
        "type": "object",
        "required": ["status", "message", "file_key"],
        "properties": {
            "status": {"type": "string"},
            "message": {"type": "string"},
            "file_key": {"type": "string"},
            "size_bytes": {"type": "integer"},
        },
    },
}

RESPONSES: dict[str, Any] = {
    "Unauthorized": _error_response("Missing (missing_api_key) or wrong (invalid_api_key) x-api-key header"),
    "NotFound": _error_response("No such file key, upload or endpoint"),
    "PayloadTooLarge": _error_response("Request body over the limit (1 MiB JSON, 2 GiB upload)"),
    "UnsupportedMediaType": _error_response("Content-Type is not application/json"),
    "ValidationFailed": _error_response("The request or its records are invalid; `errors` lists them"),
    "Forbidden": _error_response("Upload URL signature is wrong or expired"),
}

FILE_KEY_PARAMETER = {
    "name": "file_key",
    "in": "path",
    "required": True,
    "description": "A file key returned by upload-json or generate-upload-url",
    "schema": {"type": "string", "pattern": FILE_KEY_PATTERN},
}

EXTRA_PATHS: dict[str, Any] = {
    "/ingestion/files/{file_key}": {
        "get": {
            "operationId": "Ingestion_getFile",
            "summary": "File status",
            "description": "The ledger row of an uploaded file (latest version): status, row counts, first errors "
            "and first rejected records; `pending` until the pipeline has ingested it.",
            "tags": ["Ingestion"],
            "parameters": [FILE_KEY_PARAMETER],
            "responses": {
                "200": {
                    "description": "The file's status",
                    "content": {"application/json": {"schema": _ref("FileStatusResponse")}},
                },
                "401": {"$ref": "#/components/responses/Unauthorized"},
                "404": {"$ref": "#/components/responses/NotFound"},
            },
        }
    },
    "/ingestion/uploads/{file_key}": {
        "put": {
            "operationId": "Ingestion_putSignedUpload",
            "summary": "Upload to a signed URL (local landing folder mode)",
            "description": "The upload URL generate-upload-url returns when the landing store is a local folder. "
            "Authorised by its signature, not by x-api-key. Body: the gzip JSON lines file, at most 2 GiB.",
            "tags": ["Ingestion"],
            "security": [],
            "parameters": [
                {**FILE_KEY_PARAMETER, "schema": {"type": "string", "pattern": UPLOAD_KEY_PATTERN}},
                {"name": "expires", "in": "query", "required": True, "schema": {"type": "integer"}, "description": "Expiry, unix seconds"},
                {
                    "name": "signature",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "description": "HMAC-SHA256 signature",
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            },
            "responses": {
                "200": {
                    "description": "Stored, awaiting confirmation",
                    "content": {"application/json": {"schema": _ref("SignedUploadResponse")}},
                },
                "403": {"$ref": "#/components/responses/Forbidden"},
                "404": {"$ref": "#/components/responses/NotFound"},
                "413": {"$ref": "#/components/responses/PayloadTooLarge"},
            },
        }
    },
}

DESCRIPTION = """\
The ingestion HTTP API of ingestion-pipeline (self-hosted).

Every operation except the signed upload URL needs the `x-api-key` header. Every
response carries `X-Request-Id`. Every error is `{"error_code", "message"}`
(+ `errors` with per-record details): 401 missing or wrong key, 404 unknown file
key, 413 body too large (1 MiB JSON, 2 GiB upload), 415 Content-Type not
application/json, 422 invalid request or records, 403 bad or expired upload
signature. The reference operations and schemas are published unchanged; the
error responses are listed in `components.responses`.
"""


def build_openapi(version: str, server_url: str | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(reference_contract())
    doc["info"] = {"title": "ingestion-pipeline ingestion API", "version": version, "description": DESCRIPTION}
    if server_url:
        doc["servers"] = [{"url": server_url, "description": "This server"}]
    else:
        doc.pop("servers", None)
    components = doc.setdefault("components", {})
    for name, schema in SCHEMAS.items():
        components.setdefault("schemas", {}).setdefault(name, copy.deepcopy(schema))
    components.setdefault("responses", {}).update(copy.deepcopy(RESPONSES))
    for path, item in EXTRA_PATHS.items():
        doc["paths"].setdefault(path, copy.deepcopy(item))
    return doc
