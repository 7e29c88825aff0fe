"""Limits at the door, before a route sees a request body (pure ASGI, so nothing is read early).

For a write (POST, PUT, PATCH) under /fhir or /api, in this order:
1. the bearer token is checked before a byte of the body is read (401), so an anonymous client
   cannot hold a connection open with a slow or huge upload;
2. the Content-Type must be JSON: application/fhir+json or application/json under /fhir,
   application/json under /api (415);
3. the body must arrive within `api_body_timeout_seconds` (408) and be at most
   `api_max_body_bytes` (413, answered from Content-Length before reading, else while reading);
4. JSON nested deeper than MAX_DEPTH is refused (400) before any parser recurses into it.
The authenticated principal is left in the request state, so routes don't look it up again.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import STORE_DOWN, ApiError, error_response, store_down_unchanged
from api.tokens import TokenStore
from pathways.settings import Settings

WRITES = frozenset({"POST", "PUT", "PATCH"})
MAX_DEPTH = 64
"""Deepest JSON nesting accepted (a FHIR Task update needs about eight)."""

FHIR_TYPES = ("application/fhir+json", "application/json")
API_TYPES = ("application/json",)

_SIGNIFICANT = re.compile(rb'[\[\]{}"]')
_STRING_REST = re.compile(rb'(?:[^"\\]|\\.)*"', re.DOTALL)


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """True if the JSON text nests arrays/objects deeper than `limit` (brackets in strings
    don't count). Linear in the body: each byte is looked at once."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth, position = 0, 0
    while (found := _SIGNIFICANT.search(body, position)) is not None:
        char = found[0]
        position = found.end()
        if char == b'"':
            rest = _STRING_REST.match(body, position)
            if rest is None:
                return False  # an unterminated string: not JSON, the parser says so
            position = rest.end()
        elif char in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class Door:
    """ASGI middleware enforcing authentication, media type, size and time limits on writes."""

    def __init__(self, app: ASGIApp, settings: Settings, tokens: TokenStore) -> None:
        self.app = app
        self.settings = settings
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        guarded = path.startswith(("/fhir/", "/api/")) or path in ("/fhir", "/api")
        if not guarded or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return
        try:
            body = await self._admit(scope, receive)
        except ApiError as error:
            response = error_response(Request(scope), error)
            await response(scope, receive, send)
            return
        if body is None:  # the client went away
            return
        await self.app(scope, _replay(body, receive), send)

    async def _admit(self, scope: Scope, receive: Receive) -> bytes | None:
        headers = Request(scope).headers
        await self._authenticate(scope, headers.get("authorization"))
        length = headers.get("content-length")
        limit = self.settings.api_max_body_bytes
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise ApiError(413, [f"the body must be at most {limit} bytes"])
        has_body = (length is not None and int(length) > 0) or "transfer-encoding" in headers
        if has_body:
            _check_media_type(scope["path"], headers.get("content-type"))
        try:
            body = await asyncio.wait_for(
                _read(receive, limit), self.settings.api_body_timeout_seconds
            )
        except TimeoutError:
            raise ApiError(
                408, ["the body did not arrive in time"], {"Connection": "close"}
            ) from None
        if body and too_deep(body):
            raise ApiError(400, [f"the JSON body nests deeper than {MAX_DEPTH} levels"])
        return body

    async def _authenticate(self, scope: Scope, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, ["a bearer token is required (Authorization: Bearer <token>)"])
        try:
            principal = await asyncio.to_thread(self.tokens.authenticate, token.strip())
        except STORE_DOWN:  # the tokens live in the event store; nothing was read or changed
            raise store_down_unchanged() from None
        if principal is None:
            raise ApiError(401, ["the bearer token is unknown or revoked"])
        scope.setdefault("state", {})["principal"] = principal


def _check_media_type(path: str, content_type: str | None) -> None:
    allowed = FHIR_TYPES if path.startswith("/fhir") else API_TYPES
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in allowed:
        raise ApiError(415, [f"the body must be sent as {' or '.join(allowed)}"])


async def _read(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None if the client disconnected; 413 as soon as it is too large."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, [f"the body must be at most {limit} bytes"], {"Connection": "close"})
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the client's own messages."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: Any = await receive()
        return message  # type: ignore[no-any-return]

    return replay
