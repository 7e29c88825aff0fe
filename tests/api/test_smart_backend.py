"""SMART Backend Services: a provider system signs a client assertion with its own key, gets a
5-minute access token and works its handovers with it; every way a token request can be wrong
is refused with the RFC 6749 error a client can act on.

Real key pairs are generated here (RSA and P-384 EC); clients are registered with the real
`pathways client register`; one client's JWKS is served by a local HTTP server, as a provider's
key endpoint would be.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from activities.clients import ClientStore
from api.smart import JWKS_REFRESH_AFTER_SECONDS, _signing_key
from pathways.catalogue import Catalogue
from tests.api.conftest import RunningApi, free_port, serve_in_thread
from tests.api.flow import HIP, bearer, fhir_outputs, put_status, read_task, start_pathway
from tests.ops.processes import PATHWAYS

pytestmark = pytest.mark.devserver

ORTHO = "elmshire-elective-ortho-centre"
HUB = "elmshire-care-transfer-hub"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FHIR_JSON = "application/fhir+json"


@dataclass
class SmartClient:
    """A registered client as its provider system holds it: its id and private key."""

    client_id: str
    key: RSAKey | ECKey
    algorithm: str


class JwksServer:
    """A provider's key endpoint on 127.0.0.1: serves whatever key set it is given."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pathways(api: RunningApi, *args: str) -> subprocess.CompletedProcess[str]:
    command = [PATHWAYS, "client", *args, "--event-store-url", api.settings.event_store]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _register(api: RunningApi, provider: str, *args: str) -> str:
    registered = _pathways(api, "register", "--provider", provider, *args)
    assert registered.returncode == 0, registered.stderr
    return registered.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def rsa_client(api: RunningApi, jwks_server: JwksServer) -> SmartClient:
    """The ortho centre's system: an RSA key published at a JWKS URL, every scope allowed."""
    key = RSAKey.generate_key(2048, {"kid": "ortho-rsa-1", "use": "sig"})
    jwks_server.jwks = KeySet([key]).as_dict(private=False)
    client_id = _register(api, ORTHO, "--jwks-url", jwks_server.url)
    return SmartClient(client_id, key, "RS384")


@pytest.fixture(scope="module")
def ec_client(api: RunningApi, tmp_path_factory: pytest.TempPathFactory) -> SmartClient:
    """The same provider's second system: a P-384 key registered inline, read-only on Tasks."""
    key = ECKey.generate_key("P-384", {"kid": "ortho-ec-1"})
    path: Path = tmp_path_factory.mktemp("jwks") / "ortho-ec.json"
    path.write_text(json.dumps(KeySet([key]).as_dict(private=False)))
    client_id = _register(
        api, ORTHO, "--jwks", str(path), "--scope", "system/Task.rs", "--scope", "system/Questionnaire.r"
    )
    return SmartClient(client_id, key, "ES384")


def assertion(
    api: RunningApi,
    client: SmartClient,
    *,
    key: Any = None,
    algorithm: str | None = None,
    kid: str | None = None,
    **claims: Any,
) -> str:
    """A client assertion as RFC 7523 and SMART Backend Services describe it; any part overridable."""
    now = int(time.time())
    body = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": f"{api.base_url}/auth/token",
        "exp": now + 240,
        "jti": secrets.token_urlsafe(16),
    } | claims
    signing_key = key or client.key
    header = {"alg": algorithm or client.algorithm, "kid": kid or client.key.kid, "typ": "JWT"}
    return jwt.encode(header, body, signing_key, algorithms=[header["alg"]])


async def request_token(
    http: httpx.AsyncClient, client_assertion: str, scope: str = "system/Task.rs system/Task.u", **form: str
) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
    } | form
    return await http.post("/auth/token", data=data)


async def access_token(http: httpx.AsyncClient, client_assertion: str, scope: str) -> dict[str, str]:
    response = await request_token(http, client_assertion, scope)
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


def refusal(response: httpx.Response, status: int, error: str) -> str:
    """The RFC 6749 §5.2 error body of a refused token request; returns its description."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error, body
    assert "access_token" not in body
    return str(body["error_description"])


def diagnostics(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith(FHIR_JSON)
    outcome = OperationOutcome.model_validate(response.json())
    return " ".join(issue.diagnostics or "" for issue in outcome.issue)


async def test_discovery_names_the_token_endpoint_and_what_it_accepts(
    api: RunningApi, http: httpx.AsyncClient
) -> None:
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        config = (await http.get(path)).json()
        assert config["token_endpoint"] == f"{api.base_url}/auth/token"
        assert config["grant_types_supported"] == ["client_credentials"]
        assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
        assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384", "RS512"}
        assert "client-confidential-asymmetric" in config["capabilities"]
        assert "system/Task.u" in config["scopes_supported"]
    security = (await http.get("/fhir/metadata")).json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"][0]["extension"][0]["valueUri"] == f"{api.base_url}/auth/token"


async def test_a_provider_system_gets_a_token_and_completes_its_task_with_it(
    api: RunningApi,
    http: httpx.AsyncClient,
    coordinator: dict[str, str],
    catalogue: Catalogue,
    rsa_client: SmartClient,
) -> None:
    response = await request_token(http, assertion(api, rsa_client))
    assert response.status_code == 200, response.text
    granted = response.json()
    assert granted["token_type"] == "bearer" and granted["expires_in"] == 300
    assert granted["scope"] == "system/Task.rs system/Task.u"
    assert response.headers["cache-control"] == "no-store"
    auth = bearer(granted["access_token"])

    pathway_id = await start_pathway(http, coordinator)
    task = await read_task(http, f"{pathway_id}.hip-replacement.1", auth)
    search = await http.get("/fhir/Task", params={"status": "requested"}, headers=auth)
    assert search.status_code == 200 and task["id"] in {e["resource"]["id"] for e in search.json()["entry"]}
    accepted = await put_status(http, task, "accepted", auth)
    assert accepted.status_code == 200, accepted.text
    step = catalogue.get(HIP).step("hip-replacement")
    done = await put_status(http, accepted.json(), "completed", auth, output=fhir_outputs(step))
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    detail = (await http.get(f"/api/pathways/{pathway_id}", headers=coordinator)).json()
    assert "hip-replacement" in {s["id"] for s in detail["steps"] if s["status"] == "done"}


async def test_rs512_and_es384_assertions_are_accepted(
    api: RunningApi, http: httpx.AsyncClient, rsa_client: SmartClient, ec_client: SmartClient
) -> None:
    rs512 = await request_token(http, assertion(api, rsa_client, algorithm="RS512"), "system/Task.rs")
    assert rs512.status_code == 200, rs512.text
    es384 = await request_token(http, assertion(api, ec_client), "system/Task.rs")
    assert es384.status_code == 200, es384.text
    search = await http.get("/fhir/Task", headers=bearer(es384.json()["access_token"]))
    assert search.status_code == 200, search.text


async def test_scopes_are_cut_to_what_the_client_may_have_and_enforced_on_every_route(
    api: RunningApi,
    http: httpx.AsyncClient,
    coordinator: dict[str, str],
    rsa_client: SmartClient,
    ec_client: SmartClient,
) -> None:
    # The ec client may only read Tasks: asking for update too grants read and search alone.
    cut = await request_token(http, assertion(api, ec_client), "system/Task.rs system/Task.u")
    assert cut.status_code == 200 and cut.json()["scope"] == "system/Task.rs"
    reader = bearer(cut.json()["access_token"])
    only_update = await request_token(http, assertion(api, ec_client), "system/Task.u")
    assert "none of the requested scopes" in refusal(only_update, 400, "invalid_scope")
    malformed = await request_token(http, assertion(api, rsa_client), "patient/*.read")
    assert "patient/*.read" in refusal(malformed, 400, "invalid_scope")
    missing = await request_token(http, assertion(api, rsa_client), "")
    refusal(missing, 400, "invalid_scope")

    pathway_id = await start_pathway(http, coordinator)
    task = await read_task(http, f"{pathway_id}.hip-replacement.1", reader)
    put = await put_status(http, task, "accepted", reader)
    assert put.status_code == 403
    assert "system/Task.u" in diagnostics(put)
    # Coordinator routes are not open to SMART tokens at all.
    assert (await http.get("/api/catalogue", headers=reader)).status_code == 403

    updater = await access_token(http, assertion(api, rsa_client), "system/Task.u")
    read = await http.get(f"/fhir/Task/{task['id']}", headers=updater)
    assert read.status_code == 403 and "system/Task.r" in diagnostics(read)
    search = await http.get("/fhir/Task", headers=updater)
    assert search.status_code == 403 and "system/Task.s" in diagnostics(search)
    questionnaire = await http.get("/fhir/Questionnaire/any.1.step", headers=updater)
    assert questionnaire.status_code == 403 and "system/Questionnaire.r" in diagnostics(questionnaire)
    accepted = await put_status(http, task, "accepted", updater)
    assert accepted.status_code == 200, accepted.text


async def test_a_token_works_for_its_own_provider_only(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], rsa_client: SmartClient
) -> None:
    pathway_id = await start_pathway(http, coordinator)
    hub = bearer(api.provider_token(HUB))
    ortho = await access_token(http, assertion(api, rsa_client), "system/Task.rs")
    task = await read_task(http, f"{pathway_id}.hip-replacement.1", ortho)
    assert task["owner"]["reference"].endswith(ORTHO)
    other = await http.get("/fhir/Task", params={"owner": f"Organization/{HUB}"}, headers=ortho)
    assert other.status_code == 403
    assert (await http.get(f"/fhir/Task/{task['id']}", headers=hub)).status_code == 404


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown client", "unknown client"),
        ("bad signature", "signature"),
        ("bad aud", "aud must be the token URL"),
        ("aud of another path", "aud must be the token URL"),
        ("expired", "expired"),
        ("exp too far ahead", "at most 300 seconds ahead"),
        ("no exp", "exp is required"),
        ("no jti", "jti is required"),
        ("iss is not sub", "iss and sub"),
        ("unknown kid", "unknown kid"),
        ("RS256", "alg must be one of"),
        ("HS256", "alg must be one of"),
        ("alg none", "alg must be one of"),
        ("ES384 header on an RSA key", "cannot verify"),
        ("not a JWT", "not a JWT"),
    ],
)
async def test_a_bad_client_assertion_is_refused_as_invalid_client(
    api: RunningApi, http: httpx.AsyncClient, rsa_client: SmartClient, case: str, expected: str
) -> None:
    now = int(time.time())
    impostor = RSAKey.generate_key(2048, {"kid": rsa_client.key.kid})
    made = {
        "unknown client": lambda: assertion(api, rsa_client, iss="nobody.0000", sub="nobody.0000"),
        "bad signature": lambda: assertion(api, rsa_client, key=impostor),
        "bad aud": lambda: assertion(api, rsa_client, aud="https://elsewhere.example/auth/token"),
        "aud of another path": lambda: assertion(api, rsa_client, aud=f"{api.base_url}/auth/token/"),
        "expired": lambda: assertion(api, rsa_client, exp=now - 60),
        "exp too far ahead": lambda: assertion(api, rsa_client, exp=now + 600),
        "no exp": lambda: assertion(api, rsa_client, exp=None),
        "no jti": lambda: assertion(api, rsa_client, jti=None),
        "iss is not sub": lambda: assertion(api, rsa_client, sub="someone-else"),
        "unknown kid": lambda: assertion(api, rsa_client, kid="not-a-published-key"),
        "RS256": lambda: assertion(api, rsa_client, algorithm="RS256"),
        "HS256": lambda: assertion(
            api, rsa_client, key=OctKey.import_key(secrets.token_bytes(32)), algorithm="HS256"
        ),
        "alg none": lambda: _unsigned(api, rsa_client),
        "ES384 header on an RSA key": lambda: _relabelled(assertion(api, rsa_client), "ES384"),
        "not a JWT": lambda: "not-a-jwt",
    }
    response = await request_token(http, made[case]())
    assert expected in refusal(response, 401, "invalid_client")


def _unsigned(api: RunningApi, client: SmartClient) -> str:
    """An `alg: none` token (joserfc refuses to make one, so it is put together by hand)."""
    signed = assertion(api, client)
    return _relabelled(signed, "none").rsplit(".", 1)[0] + "."


def _relabelled(token: str, algorithm: str) -> str:
    """The same token with its header's alg changed (signature left as it was)."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    decoded["alg"] = algorithm
    encoded = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"


async def test_a_replayed_assertion_is_refused_by_every_api_process(
    api: RunningApi, http: httpx.AsyncClient, rsa_client: SmartClient
) -> None:
    # A second API process on the same database, behind the same public URL (so the same aud).
    second = api.settings.model_copy(update={"api_port": free_port(), "public_url": api.base_url})
    served = serve_in_thread(second)
    other_url = await asyncio.to_thread(next, served)
    try:
        once = assertion(api, rsa_client)
        assert (await request_token(http, once)).status_code == 200
        replayed = await request_token(http, once)
        assert "already used" in refusal(replayed, 401, "invalid_client")
        async with httpx.AsyncClient(base_url=other_url, timeout=30) as elsewhere:
            across = await request_token(elsewhere, once)
        assert "already used" in refusal(across, 401, "invalid_client")
    finally:
        await asyncio.to_thread(served.close)


async def test_wrong_grant_and_assertion_types_are_named(
    api: RunningApi, http: httpx.AsyncClient, rsa_client: SmartClient
) -> None:
    grant = await request_token(http, assertion(api, rsa_client), grant_type="password")
    refusal(grant, 400, "unsupported_grant_type")
    no_grant = await request_token(http, assertion(api, rsa_client), grant_type="")
    refusal(no_grant, 400, "invalid_request")
    kind = await request_token(http, assertion(api, rsa_client), client_assertion_type="urn:other")
    refusal(kind, 401, "invalid_client")
    as_json = await http.post("/auth/token", json={"grant_type": "client_credentials"})
    refusal(as_json, 400, "invalid_request")


async def test_a_removed_client_gets_no_token_and_its_tokens_stop_working(
    api: RunningApi, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    key = RSAKey.generate_key(2048, {"kid": "hub-1"})
    path = tmp_path / "hub.json"
    path.write_text(json.dumps(KeySet([key]).as_dict(private=False)))
    client = SmartClient(_register(api, HUB, "--jwks", str(path)), key, "RS384")
    listed = _pathways(api, "list")
    assert client.client_id in listed.stdout and "BEGIN" not in listed.stdout
    auth = await access_token(http, assertion(api, client), "system/Task.rs")
    assert (await http.get("/fhir/Task", headers=auth)).status_code == 200

    removed = _pathways(api, "remove", client.client_id)
    assert removed.returncode == 0, removed.stderr
    assert (await http.get("/fhir/Task", headers=auth)).status_code == 401
    refusal(await request_token(http, assertion(api, client)), 401, "invalid_client")
    assert _pathways(api, "remove", client.client_id).returncode == 1


async def test_register_keeps_public_keys_only_and_refuses_unsafe_key_sources(
    api: RunningApi, tmp_path: Path
) -> None:
    key = RSAKey.generate_key(2048, {"kid": "k1"})
    path = tmp_path / "private.json"
    path.write_text(json.dumps(KeySet([key]).as_dict(private=True)))
    client_id = _register(api, HUB, "--jwks", str(path))
    stored = ClientStore(api.settings.event_store).get(client_id)
    assert stored is not None and stored.jwks is not None
    assert [sorted(k) for k in stored.jwks["keys"]] == [["e", "kid", "kty", "n"]]
    http_url = _pathways(api, "register", "--provider", HUB, "--jwks-url", "http://keys.example/jwks")
    assert http_url.returncode == 2 and "https" in http_url.stderr
    unknown = _pathways(api, "register", "--provider", "nobody", "--jwks-url", "https://keys.example/j")
    assert unknown.returncode == 1
    no_kid = tmp_path / "nokid.json"
    no_kid.write_text(json.dumps({"keys": [RSAKey.generate_key(2048).as_dict(private=False)]}))
    assert "no kid" in _pathways(api, "register", "--provider", HUB, "--jwks", str(no_kid)).stderr


async def test_an_assertion_just_past_exp_is_still_refused_as_a_replay(
    api: RunningApi, http: httpx.AsyncClient, rsa_client: SmartClient
) -> None:
    # Accepted within the clock-skew allowance, so its jti must outlive its exp by as much.
    late = assertion(api, rsa_client, exp=int(time.time()) - 3)
    assert (await request_token(http, late)).status_code == 200
    assert (await request_token(http, assertion(api, rsa_client))).status_code == 200  # prunes
    assert "already used" in refusal(await request_token(http, late), 401, "invalid_client")


async def test_a_key_rotated_at_the_jwks_url_is_picked_up_and_an_unreachable_url_refused(
    api: RunningApi, http: httpx.AsyncClient, rsa_client: SmartClient, jwks_server: JwksServer
) -> None:
    assert (await request_token(http, assertion(api, rsa_client))).status_code == 200  # cached
    new_key = RSAKey.generate_key(2048, {"kid": "ortho-rsa-2"})
    jwks_server.jwks = KeySet([rsa_client.key, new_key]).as_dict(private=False)
    await asyncio.sleep(JWKS_REFRESH_AFTER_SECONDS)  # an unknown kid refetches at most this often
    rotated = SmartClient(rsa_client.client_id, new_key, "RS384")
    response = await request_token(http, assertion(api, rotated))
    assert response.status_code == 200, response.text

    closed = f"http://127.0.0.1:{free_port()}/jwks.json"
    gone = SmartClient(_register(api, HUB, "--jwks-url", closed), new_key, "RS384")
    assert "could not be fetched" in refusal(await request_token(http, assertion(api, gone)), 401, "invalid_client")


async def test_an_expired_or_forged_access_token_is_401(
    api: RunningApi, http: httpx.AsyncClient, rsa_client: SmartClient
) -> None:
    granted = (await request_token(http, assertion(api, rsa_client), "system/Task.rs")).json()
    claims = jwt.decode(granted["access_token"], _signing_key(api.settings)).claims
    assert claims["exp"] - claims["iat"] == 300 and claims["sub"] == ORTHO
    expired = jwt.encode({"alg": "HS256"}, claims | {"exp": int(time.time()) - 1}, _signing_key(api.settings))
    forged = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(secrets.token_bytes(32)))
    for token in (expired, forged):
        response = await http.get("/fhir/Task", headers=bearer(token))
        assert response.status_code == 401 and "expired" in diagnostics(response)
    assert (await http.get("/fhir/Task", headers=bearer(granted["access_token"]))).status_code == 200
