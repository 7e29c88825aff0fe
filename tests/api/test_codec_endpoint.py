"""The Temporal Web UI's remote codec at /codec, over real HTTP: coordinators only, the UI's JSON
contract, CORS for the UI origin alone (preflight included), and the cookie sign-in the dev
server's UI needs because it cannot send a bearer token."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.api.conftest import RunningApi

pytestmark = pytest.mark.devserver

NHS = "9990047022"
PLAIN = {
    "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
    "data": base64.b64encode(f'{{"nhs_number": "{NHS}"}}'.encode()).decode(),
}


def _ui_origin(api: RunningApi) -> str:
    return next(o for o in api.settings.codec_origins if "127.0.0.1" in o)


def _body(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    return {"payloads": payloads}


async def test_codec_refuses_without_a_coordinator_token(
    http: httpx.AsyncClient, api: RunningApi
) -> None:
    headers = {"X-Namespace": api.settings.namespace}
    for path in ("/codec/decode", "/codec/encode"):
        assert (await http.post(path, json=_body([PLAIN]), headers=headers)).status_code == 401
        wrong = {**headers, "Authorization": "Bearer pwt_not-a-token"}
        assert (await http.post(path, json=_body([PLAIN]), headers=wrong)).status_code == 401
    as_provider = {**headers, "Authorization": f"Bearer {api.provider_token('gp-one')}"}
    assert (await http.post("/codec/decode", json=_body([PLAIN]), headers=as_provider)).status_code == 403


async def test_codec_round_trips_for_a_coordinator(
    http: httpx.AsyncClient, api: RunningApi, coordinator: dict[str, str]
) -> None:
    headers = {**coordinator, "X-Namespace": api.settings.namespace}
    encoded = await http.post("/codec/encode", json=_body([PLAIN]), headers=headers)
    assert encoded.status_code == 200, encoded.text
    [sealed] = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == b"binary/encrypted"
    assert base64.b64decode(sealed["metadata"]["encryption-key-id"]) == b"test-k1"
    assert NHS.encode() not in base64.b64decode(sealed["data"])

    decoded = await http.post("/codec/decode", json=_body([sealed, PLAIN]), headers=headers)
    assert decoded.status_code == 200
    assert decoded.json()["payloads"] == [PLAIN, PLAIN]  # unencrypted payloads pass through

    other = {**headers, "X-Namespace": "someone-else"}
    assert (await http.post("/codec/decode", json=_body([sealed]), headers=other)).status_code == 403
    malformed = await http.post("/codec/decode", content=b"{not json", headers=headers)
    assert malformed.status_code == 400


async def test_cors_answers_the_ui_origin_only(
    http: httpx.AsyncClient, api: RunningApi, coordinator: dict[str, str]
) -> None:
    origin = _ui_origin(api)
    preflight = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    allowed = await http.options("/codec/decode", headers=preflight)
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == origin
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "x-namespace" in allowed.headers["access-control-allow-headers"]
    assert "POST" in allowed.headers["access-control-allow-methods"]

    stranger = await http.options("/codec/decode", headers={**preflight, "Origin": "https://evil.example"})
    assert stranger.status_code == 403
    assert "access-control-allow-origin" not in stranger.headers

    answer = await http.post("/codec/decode", json=_body([PLAIN]), headers={**coordinator, "Origin": origin})
    assert answer.headers["access-control-allow-origin"] == origin
    refused = await http.post("/codec/decode", json=_body([PLAIN]), headers={"Origin": origin})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == origin
    fhir = await http.get("/fhir/metadata", headers={"Origin": origin})
    assert "access-control-allow-origin" not in fhir.headers  # CORS for the codec only


async def test_a_browser_signs_in_with_a_cookie_the_ui_sends_as_credentials(
    api: RunningApi, coordinator: dict[str, str]
) -> None:
    token = coordinator["Authorization"].removeprefix("Bearer ")
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as browser:
        assert "not signed in" in (await browser.get("/codec/session")).text
        refused = await browser.post("/codec/session", data={"token": "pwt_wrong"})
        assert refused.status_code == 401 and "pathways_codec" not in browser.cookies
        signed_in = await browser.post("/codec/session", data={"token": token})
        assert signed_in.status_code == 200
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/codec" in cookie
        decoded = await browser.post("/codec/decode", json=_body([PLAIN]),
                                     headers={"Origin": _ui_origin(api)})  # fmt: skip
        assert decoded.status_code == 200 and decoded.json()["payloads"] == [PLAIN]
        await browser.post("/codec/session", data={"token": ""})
        assert (await browser.post("/codec/decode", json=_body([PLAIN]))).status_code == 401
