"""Who may call what: every route but /fhir/metadata needs a bearer token.

A provider token acts only for its own organisation (and never on coordinator routes); a
coordinator token sees everything but cannot act as a provider.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.problems import ApiError
from api.tokens import Principal, PrincipalKind, TokenStore

bearer = HTTPBearer(auto_error=False, description="A token from `pathways token issue`.")


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The principal behind the request's bearer token; 401 without a live one (a write was
    already authenticated at the door, before its body was read)."""
    admitted = getattr(request.state, "principal", None)
    if isinstance(admitted, Principal):
        return admitted
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, ["a bearer token is required (Authorization: Bearer <token>)"])
    tokens: TokenStore = request.app.state.tokens
    principal = tokens.authenticate(credentials.credentials)
    if principal is None:
        raise ApiError(401, ["the bearer token is unknown or revoked"])
    return principal


def provider(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    if principal.kind is not PrincipalKind.PROVIDER:
        raise ApiError(403, ["only a provider token can change a handover"])
    return principal


def coordinator(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    if principal.kind is not PrincipalKind.COORDINATOR:
        raise ApiError(403, ["this route is for coordinators; provider systems use /fhir"])
    return principal


Caller = Annotated[Principal, Depends(caller)]
Provider = Annotated[Principal, Depends(provider)]
Coordinator = Annotated[Principal, Depends(coordinator)]
