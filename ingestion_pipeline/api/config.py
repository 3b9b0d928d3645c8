"""The API's own settings (INGEST_API_* / INGEST_UPLOAD_* environment variables); the
landing store and warehouse come from `Settings`."""

from __future__ import annotations

import os
from dataclasses import dataclass

MIB = 1024 * 1024
GIB = 1024 * MIB

DEFAULT_MAX_JSON_BYTES = 1 * MIB  # the documented lightweight upload limit (1 MB)
MAX_UPLOAD_BYTES = 2 * GIB  # the documented gzip upload limit (2 GB)
DEFAULT_UPLOAD_URL_TTL_SECONDS = 900
MAX_UPLOAD_URL_TTL_SECONDS = 3600


class ConfigError(ValueError):
    """The API cannot start with this configuration; the message says which variable."""


def parse_api_keys(value: str | None) -> list[str]:
    return [k.strip() for k in (value or "").split(",") if k.strip()]


def _int_env(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class ApiOptions:
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    upload_url_ttl_seconds: int = DEFAULT_UPLOAD_URL_TTL_SECONDS
    # Signs local-mode upload URLs; None: a random key per process (one worker only).
    signing_key: bytes | None = None
    # Base URL clients reach this server at (behind a proxy); None: the request's.
    public_url: str | None = None

    def __post_init__(self):
        if not 1 <= self.upload_url_ttl_seconds <= MAX_UPLOAD_URL_TTL_SECONDS:
            raise ConfigError(
                f"upload URL lifetime must be between 1 and {MAX_UPLOAD_URL_TTL_SECONDS} seconds, got {self.upload_url_ttl_seconds}"
            )
        if not 1 <= self.max_upload_bytes <= MAX_UPLOAD_BYTES:
            raise ConfigError(f"upload size limit must be between 1 and {MAX_UPLOAD_BYTES} bytes, got {self.max_upload_bytes}")
        if self.max_json_bytes < 1:
            raise ConfigError(f"JSON body limit must be positive, got {self.max_json_bytes}")

    @classmethod
    def from_env(cls) -> ApiOptions:
        signing = os.environ.get("INGEST_UPLOAD_SIGNING_KEY") or None
        public = (os.environ.get("INGEST_API_PUBLIC_URL") or "").strip().rstrip("/") or None
        if public is not None and not public.startswith(("http://", "https://")):
            raise ConfigError(f"INGEST_API_PUBLIC_URL must be an http(s) URL, got {public!r}")
        return cls(
            max_json_bytes=_int_env("INGEST_API_MAX_JSON_BYTES", DEFAULT_MAX_JSON_BYTES, 1, 64 * MIB),
            max_upload_bytes=_int_env("INGEST_API_MAX_UPLOAD_BYTES", MAX_UPLOAD_BYTES, 1, MAX_UPLOAD_BYTES),
            upload_url_ttl_seconds=_int_env("INGEST_UPLOAD_URL_TTL_SECONDS", DEFAULT_UPLOAD_URL_TTL_SECONDS, 1, MAX_UPLOAD_URL_TTL_SECONDS),
            signing_key=signing.encode() if signing else None,
            public_url=public,
        )
