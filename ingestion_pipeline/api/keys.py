"""File keys and upload URL signatures.

A file key is made by the server and is also the file's landing path:
`{stream}/{YYYY}/{MM}/{DD}/{32 lowercase hex}.json` (upload-json) or `.jsonl.gz`
(presigned upload). Every key a client sends back is matched against the same
strict pattern, so no client string ever reaches the landing store as a path."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from ..streams import STREAMS

API_STREAMS: tuple[str, ...] = tuple(sorted(s.name for s in STREAMS.values() if s.api))
JSON_SUFFIX = ".json"
UPLOAD_SUFFIX = ".jsonl.gz"

_STREAMS_RE = "|".join(re.escape(s) for s in API_STREAMS)
FILE_KEY_PATTERN = rf"^({_STREAMS_RE})/[0-9]{{4}}/[0-9]{{2}}/[0-9]{{2}}/[0-9a-f]{{32}}\.(json|jsonl\.gz)$"
UPLOAD_KEY_PATTERN = rf"^({_STREAMS_RE})/[0-9]{{4}}/[0-9]{{2}}/[0-9]{{2}}/[0-9a-f]{{32}}\.jsonl\.gz$"
_FILE_KEY = re.compile(FILE_KEY_PATTERN)
_UPLOAD_KEY = re.compile(UPLOAD_KEY_PATTERN)
SIGNATURE_PATTERN = re.compile(r"[0-9a-f]{64}")


def new_file_key(stream: str, suffix: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{stream}/{now:%Y/%m/%d}/{secrets.token_hex(16)}{suffix}"


def is_file_key(value: object) -> bool:
    return isinstance(value, str) and _FILE_KEY.fullmatch(value) is not None


def is_upload_key(value: object) -> bool:
    return isinstance(value, str) and _UPLOAD_KEY.fullmatch(value) is not None


def stream_of(file_key: str) -> str:
    return file_key.partition("/")[0]


def sign_upload(key: bytes, file_key: str, expires: int) -> str:
    """HMAC-SHA256 over the method, the file key and the expiry (unix seconds)."""
    return hmac.new(key, f"PUT\n{file_key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signature_ok(key: bytes, file_key: str, expires: int, signature: str) -> bool:
    return hmac.compare_digest(sign_upload(key, file_key, expires).encode(), signature.encode("ascii", "replace"))
