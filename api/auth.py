"""Who may call what: every route but /fhir/metadata needs a bearer token.

A provider token acts only for its own organisation (and never on coordinator routes); a
coordinator token sees everything but cannot act as a provider. A SMART access token (see
api/smart.py) is a provider token limited to its granted scopes: each FHIR route declares the
scope it needs with `scoped(...)`, and a route that declares none refuses SMART tokens, so a new
route is closed to them until it says which scope opens it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from api.problems import ApiError
from api.smart import SmartPrincipal, permits
from api.tokens import Principal, PrincipalKind, TokenStore

bearer = HTTPBearer(
    auto_error=False,
    description="A token from `pathways token issue`, or a SMART Backend Services access token "
    "from /auth/token.",
)


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    security_scopes: SecurityScopes = SecurityScopes(),
) -> Principal:
    """The principal behind the request's bearer token; 401 without a live one, 403 when a SMART
    token lacks a scope the route needs. (A write was already authenticated at the door, before
    its body was read.)"""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        principal = _authenticate(request, credentials)
    if isinstance(principal, SmartPrincipal):
        _check_scopes(principal, security_scopes.scopes)
    return principal


def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, ["a bearer token is required (Authorization: Bearer <token>)"])
    tokens: TokenStore = request.app.state.tokens
    principal = tokens.authenticate(credentials.credentials)
    if principal is None:
        raise ApiError(401, ["the bearer token is unknown, expired or revoked"])
    return principal


def _check_scopes(principal: SmartPrincipal, needed: list[str]) -> None:
    if not needed:
        raise ApiError(403, ["this route does not accept SMART access tokens"])
    missing = [scope for scope in needed if not permits(principal.scopes, scope)]
    if missing:
        raise ApiError(403, [f"the access token lacks the scope {scope}" for scope in missing])


def provider(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    if principal.kind is not PrincipalKind.PROVIDER:
        raise ApiError(403, ["only a provider token can change a handover"])
    return principal


def coordinator(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    if principal.kind is not PrincipalKind.COORDINATOR:
        raise ApiError(403, ["this route is for coordinators; provider systems use /fhir"])
    return principal


def scoped(scope: str, dependency: Any = caller) -> Any:
    """A route's caller that, with a SMART token, must hold `scope` (e.g. 'system/Task.u').

    Use as `principal: Annotated[Principal, scoped("system/Task.rs")]`; opaque tokens pass as
    before. `dependency` is `caller` or `provider`.
    """
    return Security(dependency, scopes=[scope])


Caller = Annotated[Principal, Depends(caller)]
Provider = Annotated[Principal, Depends(provider)]
Coordinator = Annotated[Principal, Depends(coordinator)]
