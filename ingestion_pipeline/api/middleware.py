"""Request id, request log and the last-resort 500, as one ASGI middleware around
the whole app, so every response (routing 404s and crashes included) carries
`X-Request-Id`. The log line has no query string and no headers: upload URL
signatures and API keys never reach the log."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import INTERNAL_ERROR_MESSAGE

log = logging.getLogger("ingestion_pipeline.api")

REQUEST_ID_HEADER = "X-Request-Id"
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_from(scope: Scope) -> str:
    """The client's X-Request-Id when it is short and plain, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if SAFE_REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def printable(text: str, limit: int = 300) -> str:
    """A client-chosen string made safe for one log line (no control characters)."""
    return text[:limit].encode("unicode_escape").decode("ascii")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = {"code": None}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s (request_id=%s)", scope.get("method"), printable(scope.get("path", "")), request_id)
            if status["code"] is None:
                status["code"] = 500
                body = json.dumps({"error_code": "internal_error", "message": INTERNAL_ERROR_MESSAGE}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            log.info(
                "%s %s %s %.1fms request_id=%s",
                scope.get("method"),
                printable(scope.get("path", "")),
                status["code"] if status["code"] is not None else "-",
                (time.perf_counter() - started) * 1000,
                request_id,
            )
