"""Signed page links for providers with no FHIR system (`portal: true`): one per handover.

Here, below the API and the worker, because both hand the link out: the coordinator's console
and API show it, and the worker puts it in the provider's webhook. The link is an HS256 JWT
naming one Task and one provider, signed with a key derived from the deployment's secret key.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from joserfc import jwt
from joserfc.jwk import OctKey

from pathways.settings import Settings

LINK_VALID_AFTER_DUE = timedelta(days=7)
"""A link works until the handover's completion due time plus this (and while it is open)."""


def signing_key(settings: Settings) -> OctKey:
    return OctKey.import_key(hmac.new(settings.key, b"portal-link", hashlib.sha256).digest())


def expiry(complete_by: datetime, not_before: datetime) -> datetime:
    """When a link handed out at `not_before` stops working."""
    return max(complete_by, not_before) + LINK_VALID_AFTER_DUE


def link(settings: Settings, task_id: str, provider_id: str, expires: datetime) -> str:
    """The signed page URL for one provider's one handover."""
    claims = {"task": task_id, "sub": provider_id, "exp": int(expires.timestamp())}
    token = jwt.encode({"alg": "HS256"}, claims, signing_key(settings), algorithms=["HS256"])
    return f"{settings.base_url}/portal/{token}"
