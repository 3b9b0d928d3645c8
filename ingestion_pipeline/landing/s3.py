"""A landing bucket on S3 or any S3-compatible store (`s3://bucket/prefix`).

The endpoint comes from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, credentials and
region from the usual AWS variables or instance role. A file version is key + ETag
(+ size); LastModified is its landing time. Objects are read as streams."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC
from typing import BinaryIO
from urllib.parse import urlparse

from .base import LandedFile, LandingError, is_in_progress

# S3 caps a single PUT at 5 GB; the API caps uploads lower (2 GB).
MAX_PRESIGNED_SECONDS = 7 * 24 * 3600


def parse_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an S3 landing URL: {url!r} (expected s3://bucket[/prefix])")
    return parsed.netloc, parsed.path.strip("/")


def client_options() -> dict:
    """Endpoint, region and retry attempts from the environment: AWS_ENDPOINT_URL_S3 or
    AWS_ENDPOINT_URL (an S3-compatible store), AWS_REGION or AWS_DEFAULT_REGION (default
    us-east-1), AWS_MAX_ATTEMPTS (default 5). Also what the Dagster layer builds its
    S3Resource from (defs/resources.py)."""
    return {
        "endpoint_url": os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None,
        "region_name": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or 5),
    }


def s3_client():
    """A boto3 S3 client from the environment (AWS_ENDPOINT_URL for S3-compatible stores)."""
    import boto3
    from botocore.config import Config

    options = client_options()
    config = Config(
        signature_version="s3v4",
        # Transient errors are retried here (standard mode: 5 attempts, exponential backoff);
        # AWS_MAX_ATTEMPTS / AWS_RETRY_MODE change that as for any AWS SDK.
        retries={"mode": os.environ.get("AWS_RETRY_MODE") or "standard", "max_attempts": options["max_attempts"]},
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"} if options["endpoint_url"] else {},
    )
    # A session of its own: credentials are read from the environment now, not cached
    # by boto3's default session since the first client was made.
    return boto3.session.Session().client("s3", endpoint_url=options["endpoint_url"], region_name=options["region_name"], config=config)


def _error(action: str, key: str, exc: Exception) -> LandingError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    return LandingError(f"S3 {action} of {key} failed: {code}: {exc}")


class _Body:
    """A streaming GetObject body: read(n) pulls from the socket, never the whole object."""

    def __init__(self, body, key: str):
        self._body = body
        self._key = key

    def read(self, n: int = -1) -> bytes:
        try:
            return self._body.read(n if n is not None and n >= 0 else None)
        except Exception as exc:  # connection reset, timeout mid-stream
            raise _error("read", self._key, exc) from exc

    def close(self) -> None:
        self._body.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class S3LandingStore:
    incremental_listing = True
    atomic_writes = True  # an object is visible only once whole

    def __init__(self, url: str, client=None, page_size: int = 1000):
        self.url = url.rstrip("/")
        self.page_size = page_size  # keys per ListObjectsV2 request (S3's maximum is 1000)
        self.bucket, self.prefix = parse_s3_url(url)
        self.client = client or s3_client()

    def _key(self, path: str) -> str:
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid landing path {path!r}")
        return f"{self.prefix}/{path}" if self.prefix else path

    def _rel(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def _landed(self, path: str, size: int, etag: str, last_modified) -> LandedFile:
        return LandedFile(path=path, size=size, version=etag.strip('"'), landed_at=last_modified.astimezone(UTC))

    def _visible(self, obj: dict) -> LandedFile | None:
        """A listed object, unless it is a folder marker or an in-progress name at any level."""
        rel = self._rel(obj["Key"])
        if obj["Key"].endswith("/") or any(is_in_progress(part) for part in rel.split("/")):
            return None
        return self._landed(rel, obj["Size"], obj["ETag"], obj["LastModified"])

    def list_files(self, folder: str) -> Iterator[LandedFile]:
        params = {"Bucket": self.bucket, "Prefix": self._key(folder) + "/"}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**params, PaginationConfig={"PageSize": self.page_size}):
                for obj in page.get("Contents", ()):
                    if (f := self._visible(obj)) is not None:
                        yield f
        except LandingError:
            raise
        except Exception as exc:
            raise _error("listing", params["Prefix"], exc) from exc

    def list_page(self, folder: str, start_after: str | None, max_keys: int) -> tuple[list[LandedFile], str | None, int]:
        """One ListObjectsV2 request under `folder`, after the path `start_after`:
        (file versions, the last path listed or None when the folder is exhausted,
        the number of keys listed, in-progress names included)."""
        params = {"Bucket": self.bucket, "Prefix": self._key(folder) + "/", "MaxKeys": max(1, min(max_keys, 1000))}
        if start_after:
            params["StartAfter"] = self._key(start_after)
        try:
            page = self.client.list_objects_v2(**params)
        except Exception as exc:
            raise _error("listing", params["Prefix"], exc) from exc
        contents = page.get("Contents", ())
        files = [f for obj in contents if (f := self._visible(obj)) is not None]
        last = self._rel(contents[-1]["Key"]) if contents and page.get("IsTruncated") else None
        return files, last, len(contents)

    def open(self, file: LandedFile) -> BinaryIO:
        key = self._key(file.path)
        try:
            # IfMatch: read the version that was listed, not one that replaced it since.
            response = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=f'"{file.version}"')
        except Exception as exc:
            raise _error("read", key, exc) from exc
        return _Body(response["Body"], key)

    def open_path(self, path: str) -> BinaryIO:
        key = self._key(path)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _error("read", key, exc) from exc
        return _Body(response["Body"], key)

    def stat(self, path: str) -> LandedFile | None:
        key = self._key(path)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise _error("stat", key, exc) from exc
        return self._landed(path, head["ContentLength"], head["ETag"], head["LastModified"])

    def write_bytes(self, path: str, data: bytes) -> LandedFile:
        key = self._key(path)
        try:
            # A PUT is atomic and durable once S3 answers 200.
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except Exception as exc:
            raise _error("write", key, exc) from exc
        return self.stat(path)

    @contextlib.contextmanager
    def writer(self, path: str):
        # Spooled to disk, then one managed upload (multipart for big files).
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
            yield spool
            spool.seek(0)
            key = self._key(path)
            try:
                self.client.upload_fileobj(spool, self.bucket, key)
            except Exception as exc:
                raise _error("write", key, exc) from exc

    def move(self, src: str, dst: str) -> LandedFile:
        source, target = self._key(src), self._key(dst)
        try:
            # Managed copy: server side, multipart above 8 MB; LastModified becomes now.
            self.client.copy({"Bucket": self.bucket, "Key": source}, self.bucket, target)
            self.client.delete_object(Bucket=self.bucket, Key=source)
        except Exception as exc:
            raise _error("move", source, exc) from exc
        return self.stat(dst)

    def delete(self, path: str) -> None:
        key = self._key(path)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _error("delete", key, exc) from exc

    def presigned_put_url(self, path: str, expires_seconds: int) -> str | None:
        expires = max(1, min(int(expires_seconds), MAX_PRESIGNED_SECONDS))
        key = self._key(path)
        try:  # signing needs credentials, and fails without any
            return self.client.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires, HttpMethod="PUT"
            )
        except Exception as exc:
            raise _error("presigning", key, exc) from exc
