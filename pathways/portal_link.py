"""Signed page links for providers with no FHIR system (`portal: true`): one per handover.

Here, below the API and the worker, because both hand the link out: the coordinator's console
and API show it, and the worker puts it in the provider's webhook. The link is an HS256 JWT
naming one Task and one provider, signed with a key derived from the deployment's secret key.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from pathways.settings import Settings

LINK_VALID_AFTER_DUE = timedelta(days=7)
"""A link works until the handover's completion due time plus this (and while it is open)."""


PORTAL = b"portal-link"


def signing_key(settings: Settings, purpose: bytes = PORTAL) -> OctKey:
    """A key derived from the deployment's secret for one `purpose`, so a token for one kind of
    page (a provider's portal, a patient's questionnaire) never opens another."""
    return OctKey.import_key(hmac.new(settings.key, purpose, hashlib.sha256).digest())


def sign(settings: Settings, claims: dict[str, Any], purpose: bytes = PORTAL) -> str:
    """A signed, expiring link token (HS256)."""
    return jwt.encode({"alg": "HS256"}, claims, signing_key(settings, purpose), algorithms=["HS256"])


def verify(settings: Settings, token: str, essential: tuple[str, ...],
           purpose: bytes = PORTAL) -> dict[str, Any] | None:
    """The token's claims when its signature holds, it has not expired and it names each of
    `essential`; else None."""
    try:
        claims = jwt.decode(token, signing_key(settings, purpose), algorithms=["HS256"]).claims
        options: dict[str, Any] = {name: {"essential": True} for name in ("exp", *essential)}
        jwt.JWTClaimsRegistry(**options).validate(claims)
    except (JoseError, ValueError):
        return None
    return claims


def expiry(complete_by: datetime, not_before: datetime) -> datetime:
    """When a link handed out at `not_before` stops working."""
    return max(complete_by, not_before) + LINK_VALID_AFTER_DUE


def link(settings: Settings, task_id: str, provider_id: str, expires: datetime) -> str:
    """The signed page URL for one provider's one handover."""
    claims = {"task": task_id, "sub": provider_id, "exp": int(expires.timestamp())}
    return f"{settings.base_url}/portal/{sign(settings, claims)}"
