"""ASGI guards shared by the API server and the plugin SDK: a request body size limit, a
JSON-only Content-Type check, a bearer token (or verified client certificate) check, and the
JSON error answer they all give (``{"error": "..."}``)."""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import ConfigError, InterLinkError

log = logging.getLogger("interlink.guards")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def send_error(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer ``{"error": message}`` with ``status`` straight from ASGI."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope.get("headers", []) if k == name), None)


class BodyLimit:
    """Refuse request bodies larger than ``limit`` bytes with a 413 (``key`` is the setting
    the message tells the operator to raise)."""

    def __init__(self, app: Any, limit: int, key: str = "max_request_bytes") -> None:
        self.app = app
        self.limit = limit
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(send)
            return
        seen = 0
        refused = False

        async def limited() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:  # once refused, the app's own answer is dropped
                await send(message)

        await self.app(scope, limited, guarded)

    async def _refuse(self, send: Send) -> None:
        await send_error(
            send,
            413,
            f"request body larger than {self.key} ({self.limit} bytes); send fewer pods per "
            f"call or raise {self.key}",
        )


def is_json(content_type: bytes | None) -> bool:
    """Whether a Content-Type header names JSON (``application/json``, ``…+json``)."""
    if not content_type:
        return False
    kind = content_type.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (
        kind.startswith(b"application/") and kind.endswith(b"+json")
    )


class JsonOnly:
    """Refuse a request to one of ``paths`` (routes that read a JSON body) whose Content-Type
    is missing or not JSON with a 415 that names the header."""

    def __init__(self, app: Any, paths: Collection[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            given = _header(scope, b"content-type")
            if not is_json(given):
                shown = given.decode(errors="replace") if given else "missing"
                await send_error(
                    send,
                    415,
                    f"the Content-Type header must be application/json (it is {shown}): "
                    f"{scope['path']} takes a JSON body",
                )
                return
        await self.app(scope, receive, send)


class SecretFile:
    """A secret kept in a file (a shared token), re-read when the file changes."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path.expanduser()
        self.key = key
        self._stamp: tuple[int, int] | None = None
        self._value = ""
        self.value()  # fail at start-up, not at the first request

    def value(self) -> str:
        """The current secret (the last good one if the file became unreadable or empty)."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if self._value:
                return self._value
            raise ConfigError(
                f"{self.key}: cannot read {self.path} ({exc.strerror}); create it with a "
                "random token, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            ) from None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            text = self.path.read_text().strip()
            if not text and not self._value:
                raise ConfigError(f"{self.key}: {self.path} is empty; write a random token to it")
            if text:
                self._value = text
                if self._stamp is not None:
                    log.info("%s: %s changed; using the new token", self.key, self.path)
            self._stamp = stamp
        return self._value


class CallerCheck:
    """Let a request through only with ``Authorization: Bearer <the token>`` (compared in
    constant time) or, when ``certificates`` is set, a TLS client certificate (which the TLS
    layer has already verified against the client CA). ``open_paths`` need neither."""

    def __init__(
        self,
        app: Any,
        token: SecretFile | None,
        certificates: bool = False,
        open_paths: Collection[str] = ("/healthz",),
    ) -> None:
        self.app = app
        self.token = token
        self.certificates = certificates
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        ways = []
        if self.token is not None:
            ways.append("an 'Authorization: Bearer <token>' header with the shared token")
        if self.certificates:
            ways.append("a TLS client certificate signed by the client CA")
        await send_error(
            send,
            401,
            "not authorized: send " + " or ".join(ways),
            [(b"www-authenticate", b'Bearer realm="interlink-plugin"')],
        )

    def _allowed(self, scope: Scope) -> bool:
        if self.certificates and (scope.get("state") or {}).get("tls_client_cert"):
            return True
        if self.token is None:
            return False
        scheme, _, given = (_header(scope, b"authorization") or b"").partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(given.strip(), self.token.value().encode())


def error_response(exc: InterLinkError) -> JSONResponse:
    """The JSON error answer shared by the plugin and the API server."""
    return JSONResponse({"error": exc.message}, status_code=exc.status_code)


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error as ``{"error": "..."}``: our own, the router's (404, 405), and an
    unexpected exception (500, logged)."""

    @app.exception_handler(InterLinkError)
    async def _known(_: Request, exc: InterLinkError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(
            {"error": f"internal error ({exc.__class__.__name__}); see the service's log"},
            status_code=500,
        )
