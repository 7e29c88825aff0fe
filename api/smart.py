"""SMART Backend Services (system-to-system OAuth 2): discovery, token endpoint, access tokens.

A registered client proves who it is with a JWT signed by its own private key (RFC 7523
`private_key_jwt`); we check it against the client's public JWKS (inline or fetched from its URL)
and answer with a 5-minute access token carrying SMART v2 system scopes. Access tokens are JWTs
signed with a key derived from the installation secret, so every API process can check them
without a lookup of the token; the client is still looked up, so `pathways client remove` ends
its tokens at once. Errors follow RFC 6749 §5.2. JWT work is joserfc's, never hand-written.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast
from urllib.parse import parse_qs

import httpx
import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet, KeySetSerialization, OctKey
from pydantic import BaseModel

from activities.clients import Client, ClientStore
from api.tokens import TOKEN_PREFIX, Principal, PrincipalKind, TokenStore
from pathways.settings import Settings

log = structlog.get_logger("pathways.smart")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384", "RS512")
"""Signature algorithms a client may sign its assertion with (SMART: RS384, ES384; NHS: RS512)."""
MAX_ASSERTION_SECONDS = 300
"""An assertion's `exp` may be at most this far ahead (SMART Backend Services: five minutes)."""
CLOCK_SKEW_SECONDS = 10
ACCESS_TOKEN_SECONDS = 300
ACCESS_TOKEN_ALGORITHM = "HS256"
SYSTEM_SCOPES = (
    "system/Task.rs",
    "system/Task.u",
    "system/Subscription.cruds",
    "system/Questionnaire.r",
    "system/CarePlan.r",
)
"""The scopes a client may be granted (all of them unless registered with fewer)."""
TOKEN_PATH = "/auth/token"
JWKS_TIMEOUT_SECONDS = 3.0
JWKS_CACHE_SECONDS = 60.0
JWKS_REFRESH_AFTER_SECONDS = 5.0
"""An unknown `kid` refetches a JWKS cached at least this long ago (the client rotated keys)."""
JWKS_MAX_BYTES = 64 * 1024
MAX_FORM_BYTES = 16 * 1024
PERMISSIONS = "cruds"
_SCOPE = re.compile(r"^system/([A-Z][A-Za-z]*)\.([cruds]+)$")


# --- scopes -------------------------------------------------------------------------------------


def parse_scope(scope: str) -> tuple[str, frozenset[str]] | None:
    """A SMART v2 system scope as (resource type, permission letters); None if not one.

    Letters must be distinct and in the order c, r, u, d, s (SMART v2 §3.2.2).
    """
    match = _SCOPE.match(scope)
    if match is None:
        return None
    letters = match[2]
    if "".join(sorted(set(letters), key=PERMISSIONS.index)) != letters:
        return None
    return match[1], frozenset(letters)


def _scope(resource: str, letters: frozenset[str]) -> str:
    return f"system/{resource}.{''.join(p for p in PERMISSIONS if p in letters)}"


def _permissions(scopes: tuple[str, ...] | frozenset[str]) -> dict[str, frozenset[str]]:
    granted: dict[str, frozenset[str]] = {}
    for scope in scopes:
        parsed = parse_scope(scope)
        if parsed is not None:
            resource, letters = parsed
            granted[resource] = granted.get(resource, frozenset()) | letters
    return granted


def grant(requested: str, allowed: tuple[str, ...]) -> list[str]:
    """The scopes to grant: each requested scope cut down to what the client is allowed.

    Raises ValueError (invalid_scope) for a malformed request or when nothing is left.
    """
    wanted = requested.split()
    if not wanted:
        raise ValueError("scope is required, e.g. 'system/Task.rs system/Task.u'")
    bad = [scope for scope in wanted if parse_scope(scope) is None]
    if bad:
        raise ValueError(f"not a SMART v2 system scope: {' '.join(bad)}")
    may = _permissions(allowed)
    granted: list[str] = []
    for scope in wanted:
        resource, letters = parse_scope(scope) or ("", frozenset())
        kept = letters & may.get(resource, frozenset())
        if kept and _scope(resource, kept) not in granted:
            granted.append(_scope(resource, kept))
    if not granted:
        raise ValueError("none of the requested scopes is allowed for this client")
    return granted


def permits(granted: frozenset[str], needed: str) -> bool:
    """Whether granted scopes cover one needed scope such as 'system/Task.u'."""
    parsed = parse_scope(needed)
    if parsed is None:
        return False
    resource, letters = parsed
    return letters <= _permissions(granted).get(resource, frozenset())


# --- access tokens ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmartPrincipal(Principal):
    """A provider system calling with a SMART access token: limited to its granted scopes."""

    client_id: str
    scopes: frozenset[str]


def _signing_key(settings: Settings) -> OctKey:
    """The access-token key, derived from the installation secret shared by every API process."""
    derived = hmac.new(settings.key, b"smart-access-token", hashlib.sha256).digest()
    return OctKey.import_key(derived)


def issue_access_token(settings: Settings, client: Client, scopes: list[str]) -> str:
    now = int(time.time())
    claims = {
        "iss": settings.base_url,
        "aud": f"{settings.base_url}/fhir",
        "sub": client.provider_id,
        "client_id": client.client_id,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ACCESS_TOKEN_SECONDS,
        "jti": secrets.token_urlsafe(16),
    }
    header = {"alg": ACCESS_TOKEN_ALGORITHM}
    return jwt.encode(header, claims, _signing_key(settings), algorithms=[ACCESS_TOKEN_ALGORITHM])


class SmartTokens(TokenStore):
    """The token store that also accepts SMART access tokens (JWTs) beside the opaque ones."""

    def __init__(self, settings: Settings, clients: ClientStore) -> None:
        super().__init__(settings.event_store)
        self.settings = settings
        self.clients = clients

    def authenticate(self, token: str) -> Principal | None:
        if token.startswith(TOKEN_PREFIX) or token.count(".") != 2:
            return super().authenticate(token)
        return self._smart(token)

    def _smart(self, token: str) -> SmartPrincipal | None:
        """The principal of a live access token we issued to a still-registered client."""
        base_url = self.settings.base_url
        try:
            decoded = jwt.decode(
                token, _signing_key(self.settings), algorithms=[ACCESS_TOKEN_ALGORITHM]
            )
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": base_url},
                aud={"essential": True, "value": f"{base_url}/fhir"},
                exp={"essential": True},
                sub={"essential": True},
                client_id={"essential": True},
                scope={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError):
            return None
        claims = decoded.claims
        client = self.clients.get(str(claims["client_id"]))
        if client is None or client.provider_id != claims["sub"]:
            return None
        return SmartPrincipal(
            PrincipalKind.PROVIDER,
            client.provider_id,
            client_id=client.client_id,
            scopes=frozenset(str(claims["scope"]).split()),
        )


# --- client assertions (RFC 7523) ---------------------------------------------------------------


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


class JwksCache:
    """Clients' key sets fetched from their JWKS URLs, kept briefly (per process)."""

    def __init__(self) -> None:
        self._sets: dict[str, tuple[float, KeySet]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, url: str, refresh: bool = False) -> KeySet:
        cached = self._sets.get(url)
        now = time.monotonic()
        if cached is not None:
            age = now - cached[0]
            if age < JWKS_CACHE_SECONDS and not (refresh and age >= JWKS_REFRESH_AFTER_SECONDS):
                return cached[1]
        async with self._locks.setdefault(url, asyncio.Lock()):  # one fetch per URL at a time
            if self._sets.get(url, (0.0,))[0] > now:  # fetched while we waited
                return self._sets[url][1]
            keys = await _fetch_jwks(url)
            self._sets[url] = (time.monotonic(), keys)
            return keys


async def _fetch_jwks(url: str) -> KeySet:
    try:
        async with httpx.AsyncClient(timeout=JWKS_TIMEOUT_SECONDS, follow_redirects=False) as http:
            async with http.stream("GET", url, headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise invalid_client(f"the client's JWKS URL answered {response.status_code}")
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > JWKS_MAX_BYTES:
                        raise invalid_client("the client's JWKS is too large")
    except httpx.HTTPError:
        raise invalid_client("the client's JWKS URL could not be fetched") from None
    return key_set(body)


def key_set(raw: bytes | str | dict[str, Any]) -> KeySet:
    """A public key set from JWKS JSON; invalid_client if it is not one."""
    try:
        value = json.loads(raw) if isinstance(raw, bytes | str) else raw
        return KeySet.import_key_set(cast(KeySetSerialization, value))
    except (ValueError, TypeError, KeyError, JoseError):
        raise invalid_client("the client's JWKS is not a valid JWK Set") from None


async def authenticate_client(
    request: Request, assertion: str, token_url: str
) -> tuple[Client, dict[str, Any]]:
    """The registered client that signed `assertion`, and its verified claims; or invalid_client."""
    clients: ClientStore = request.app.state.smart_clients
    try:
        unverified = jws.extract_compact(assertion.encode())
        header = unverified.headers()
        claims = json.loads(unverified.payload)
    except (JoseError, ValueError, TypeError):
        raise invalid_client("client_assertion is not a JWT") from None
    if not isinstance(claims, dict):
        raise invalid_client("client_assertion is not a JWT")
    client_id = claims.get("iss")
    if not isinstance(client_id, str) or claims.get("sub") != client_id:
        raise invalid_client("iss and sub must both be the client_id")
    client = await asyncio.to_thread(clients.get, client_id)
    if client is None:
        raise invalid_client("unknown client")
    algorithm = header.get("alg")
    if algorithm not in ASSERTION_ALGORITHMS:
        raise invalid_client(f"alg must be one of {', '.join(ASSERTION_ALGORITHMS)}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise invalid_client("the assertion header must name its key (kid)")
    key = await _client_key(request, client, kid)
    try:
        verified = jwt.decode(assertion, key, algorithms=list(ASSERTION_ALGORITHMS))
    except BadSignatureError:
        raise invalid_client("the assertion signature does not verify") from None
    except JoseError:
        raise invalid_client(f"key {kid} cannot verify an {algorithm} signature") from None
    _check_claims(verified.claims, client_id, token_url)
    # Remember the jti past exp by the skew we tolerate, so no replay slips in while it is ignored.
    expires = datetime.fromtimestamp(float(verified.claims["exp"]) + 2 * CLOCK_SKEW_SECONDS, UTC)
    if not await asyncio.to_thread(clients.use_assertion, client_id, claims["jti"], expires):
        raise invalid_client("this assertion (jti) was already used")
    return client, verified.claims


async def _client_key(request: Request, client: Client, kid: str) -> Any:
    """The client's public key named `kid` (a fresh fetch of its JWKS URL if not cached)."""
    cache: JwksCache = request.app.state.smart_jwks
    keys = key_set(client.jwks) if client.jwks is not None else await cache.get(client.jwks_url or "")
    try:
        return keys.get_by_kid(kid)
    except InvalidKeyIdError:
        pass
    if client.jwks_url is not None:
        try:
            return (await cache.get(client.jwks_url, refresh=True)).get_by_kid(kid)
        except InvalidKeyIdError:
            pass
    raise invalid_client(f"unknown kid {kid!r}: no such key in the client's JWKS")


def _check_claims(claims: dict[str, Any], client_id: str, token_url: str) -> None:
    now = time.time()
    if claims.get("aud") != token_url:
        raise invalid_client(f"aud must be the token URL {token_url}")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise invalid_client("exp is required (a NumericDate)")
    if exp > now + MAX_ASSERTION_SECONDS + CLOCK_SKEW_SECONDS:
        raise invalid_client(f"exp must be at most {MAX_ASSERTION_SECONDS} seconds ahead")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise invalid_client("jti is required (a unique string of at most 256 characters)")
    try:
        jwt.JWTClaimsRegistry(
            leeway=CLOCK_SKEW_SECONDS,
            iss={"essential": True, "value": client_id},
            sub={"essential": True, "value": client_id},
            exp={"essential": True},
        ).validate(claims)
    except ExpiredTokenError:
        raise invalid_client("the assertion has expired (exp)") from None
    except MissingClaimError as error:
        raise invalid_client(f"missing claim: {error.description}") from None
    except JoseError as error:
        raise invalid_client(f"invalid claim: {error.description}") from None


# --- routes -------------------------------------------------------------------------------------


class TokenResponse(BaseModel):
    """RFC 6749 §5.1 access token response."""

    access_token: str
    token_type: Literal["bearer"]
    expires_in: int
    scope: str


class OAuthErrorResponse(BaseModel):
    """RFC 6749 §5.2 error response."""

    error: Literal[
        "invalid_request", "invalid_client", "invalid_grant", "invalid_scope", "unsupported_grant_type"
    ]
    error_description: str


class SmartConfiguration(BaseModel):
    issuer: str
    token_endpoint: str
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    scopes_supported: list[str]
    capabilities: list[str]


router = APIRouter(tags=["SMART Backend Services"])


def token_url(settings: Settings) -> str:
    return f"{settings.base_url}{TOKEN_PATH}"


def smart_configuration(settings: Settings) -> dict[str, Any]:
    """SMART App Launch 2.x discovery, for backend services only."""
    return {
        "issuer": settings.base_url,
        "token_endpoint": token_url(settings),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "scopes_supported": list(SYSTEM_SCOPES),
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
    }


@router.get(
    "/.well-known/smart-configuration",
    response_model=SmartConfiguration,
    summary="SMART configuration",
    name="smart_configuration",
)
@router.get(
    "/fhir/.well-known/smart-configuration",
    response_model=SmartConfiguration,
    summary="SMART configuration (FHIR base)",
    name="fhir_smart_configuration",
)
def configuration(request: Request) -> JSONResponse:
    """How to get an access token: discovery for SMART Backend Services clients."""
    return JSONResponse(smart_configuration(request.app.state.settings))


async def _form(request: Request) -> dict[str, str]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", f"the form must be at most {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the form is not valid") from None
    repeated = sorted(name for name, values in fields.items() if len(values) > 1)
    if repeated:
        raise OAuthError("invalid_request", f"parameters given more than once: {', '.join(repeated)}")
    return {name: values[0] for name, values in fields.items()}


def _oauth_response(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status, {"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.post(
    TOKEN_PATH,
    summary="Token endpoint (client_credentials with a private_key_jwt assertion)",
    response_model=TokenResponse,
    responses={
        400: {"model": OAuthErrorResponse, "description": "invalid_request, invalid_scope, …"},
        401: {"model": OAuthErrorResponse, "description": "invalid_client"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": [
                            "grant_type",
                            "scope",
                            "client_assertion_type",
                            "client_assertion",
                        ],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["client_credentials"]},
                            "scope": {"type": "string", "example": "system/Task.rs system/Task.u"},
                            "client_assertion_type": {"type": "string", "enum": [ASSERTION_TYPE]},
                            "client_assertion": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def token(request: Request) -> JSONResponse:
    """Exchange a signed client assertion for a 5-minute access token."""
    settings: Settings = request.app.state.settings
    try:
        form = await _form(request)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant_type != "client_credentials":
            raise OAuthError("unsupported_grant_type", "only client_credentials is supported")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise invalid_client(f"client_assertion_type must be {ASSERTION_TYPE}")
        if not form.get("client_assertion"):
            raise invalid_client("client_assertion is required")
        client, _ = await authenticate_client(request, form["client_assertion"], token_url(settings))
        try:
            scopes = grant(form.get("scope", ""), client.scopes)
        except ValueError as error:
            raise OAuthError("invalid_scope", str(error)) from None
    except OAuthError as error:
        log.info("smart token refused", error=error.error)
        return _oauth_response(
            {"error": error.error, "error_description": error.description}, error.status
        )
    log.info("smart token issued", client_id=client.client_id, scope=" ".join(scopes))
    return _oauth_response(
        {
            "access_token": issue_access_token(settings, client, scopes),
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "scope": " ".join(scopes),
        }
    )


def install(app: FastAPI, settings: Settings) -> SmartTokens:
    """Add discovery and the token endpoint; the returned store checks both kinds of token."""
    clients = ClientStore(settings.event_store)
    clients.migrate()
    app.state.smart_clients = clients
    app.state.smart_jwks = JwksCache()
    app.include_router(router)
    tokens = SmartTokens(settings, clients)
    tokens.migrate()
    return tokens
