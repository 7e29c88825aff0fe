"""The Temporal Web UI's remote codec: `/codec/encode` and `/codec/decode`, coordinators only.

Temporal stores pathway payloads encrypted (workflows/codec.py). The Web UI and `temporal` CLI
show them decoded by posting `{"payloads": [...]}` (protobuf JSON: base64 metadata and data, the
namespace in `X-Namespace`) to a codec server; this is that server, inside the API, so the keys
stay with the API and only an authenticated coordinator gets plaintext back.

Credentials: `Authorization: Bearer <coordinator token>` (the CLI's `--codec-auth`, or a UI with
"pass access token"), or the `pathways_codec` cookie set by signing in at `/codec/session`: the
dev server's UI cannot send a bearer token, but it can "include cross-origin credentials".
CORS answers only the configured UI origin(s), preflight included.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from api.auth import bearer, caller, coordinator
from api.problems import ApiError
from api.tokens import Principal
from pathways.settings import Settings
from workflows.codec import EncryptionCodec, load_keyring

COOKIE = "pathways_codec"
MAX_BODY = 16 * 1024 * 1024
"""The UI sends a page of history at a time; Temporal's own payload limit is 2 MiB each."""
SESSION_SECONDS = 8 * 3600
ALLOWED_HEADERS = "authorization, content-type, x-namespace"

router = APIRouter(prefix="/codec", tags=["codec"], include_in_schema=False)


def codec_coordinator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """A coordinator by bearer token, else by the session cookie; 401/403 as everywhere else."""
    cookie = request.cookies.get(COOKIE)
    if credentials is None and cookie:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=cookie)
    return coordinator(caller(request, credentials))


CodecCoordinator = Annotated[Principal, Depends(codec_coordinator)]


async def _payloads(request: Request) -> Payloads:
    settings: Settings = request.app.state.settings
    namespace = request.headers.get("x-namespace")
    if namespace is not None and namespace != settings.namespace:
        raise ApiError(403, [f"this codec serves namespace {settings.namespace} only"])
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, [f"at most {MAX_BODY} bytes per request"])
    try:
        return json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError, ValueError):
        problem = 'the body must be {"payloads": [{"metadata": {...}, "data": "..."}]}'
        raise ApiError(400, [problem]) from None


def _answer(payloads: Payloads) -> Response:
    return Response(json_format.MessageToJson(payloads), media_type="application/json")


async def _apply(request: Request, convert: Callable[[Payloads], Awaitable[Payloads]]) -> Response:
    return _answer(await convert(await _payloads(request)))


def _codec(request: Request) -> EncryptionCodec:
    codec: EncryptionCodec = request.app.state.codec
    return codec


@router.post("/encode")
async def encode(request: Request, _: CodecCoordinator) -> Response:
    codec = _codec(request)

    async def seal(payloads: Payloads) -> Payloads:
        return Payloads(payloads=await codec.encode(payloads.payloads))

    return await _apply(request, seal)


@router.post("/decode")
async def decode(request: Request, _: CodecCoordinator) -> Response:
    codec = _codec(request)

    async def open_(payloads: Payloads) -> Payloads:
        try:
            return Payloads(payloads=await codec.decode(payloads.payloads))
        except ValueError as error:  # unknown key id or tampered: names the key id, no data
            raise ApiError(422, [str(error)]) from None

    return await _apply(request, open_)


SESSION_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pathways: Temporal UI decoding</title></head>
<body style="font-family: sans-serif; max-width: 44em; margin: 2em auto">
<h1>Decode pathways in the Temporal Web UI</h1>
<p>{status}</p>
<form method="post" action="/codec/session">
<label>Coordinator token <input name="token" type="password" autocomplete="off" size="50"></label>
<button type="submit">Sign in</button>
</form>
<form method="post" action="/codec/session"><input type="hidden" name="token" value="">
<button type="submit">Sign out</button></form>
<p>Then, in the Temporal Web UI ({origins}): open <em>Codec Server</em> (the settings menu),
choose <em>Use my browser setting and ignore Cluster-level setting</em>, enter
<code>{endpoint}</code> and tick <em>Include cross-origin credentials</em>. Open the UI under
the same host name as this page (e.g. both on 127.0.0.1), or the browser keeps the cookie back.</p>
</body></html>
"""


def _session_page(settings: Settings, status: str, code: int = 200) -> HTMLResponse:
    page = SESSION_PAGE.format(
        status=html.escape(status),
        origins=html.escape(", ".join(settings.codec_origins)),
        endpoint=html.escape(f"{settings.base_url}/codec"),
    )
    return HTMLResponse(page, code, headers={"Cache-Control": "no-store"})


@router.get("/session")
async def session_page(request: Request) -> HTMLResponse:
    signed_in = request.cookies.get(COOKIE) is not None
    status = "This browser is signed in." if signed_in else "This browser is not signed in."
    return _session_page(request.app.state.settings, status)


@router.post("/session")
async def session(request: Request) -> HTMLResponse:
    """Sign this browser in (a coordinator token in an HttpOnly cookie for /codec) or out."""
    settings: Settings = request.app.state.settings
    form = parse_qs((await request.body())[:4096].decode(errors="replace"))
    token = (form.get("token") or [""])[0].strip()
    if not token:
        page = _session_page(settings, "Signed out.")
        page.delete_cookie(COOKIE, path="/codec")
        return page
    codec_coordinator(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=token))
    page = _session_page(settings, "Signed in: the Temporal UI can now decode pathways.")
    page.set_cookie(
        COOKIE, token, max_age=SESSION_SECONDS, path="/codec", httponly=True, samesite="strict",
        secure=settings.base_url.startswith("https://"),
    )
    return page


def _cors_headers(settings: Settings, origin: str | None) -> dict[str, str]:
    if origin is None or origin.rstrip("/") not in settings.codec_origins:
        return {"Vary": "Origin"}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the codec with the installation's keys (a clear error now if they are missing) and
    CORS for the UI origin on every /codec answer, errors and preflight included."""
    app.state.codec = EncryptionCodec(load_keyring(settings))
    app.include_router(router)

    @app.middleware("http")
    async def codec_cors(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not request.url.path.startswith("/codec/"):
            return await call_next(request)
        headers = _cors_headers(settings, request.headers.get("origin"))
        if request.method == "OPTIONS":
            if "Access-Control-Allow-Origin" in headers:
                headers.update({
                    "Access-Control-Allow-Methods": "POST, OPTIONS",
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": "600",
                })
            return Response(status_code=204 if len(headers) > 1 else 403, headers=headers)
        response = await call_next(request)
        response.headers.update(headers)
        return response

