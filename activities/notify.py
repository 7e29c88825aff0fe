"""Just-in-time notification: POST a handover's FHIR Task to the provider system, signed.

The provider verifies the HMAC signature over the exact body bytes with its secret and
de-duplicates on Idempotency-Key, since Temporal retries a delivery that may have landed.
Errors name the status, never the body (the Task may reference a patient).
"""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
from temporalio.exceptions import ApplicationError

from pathways.events import Notification

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
"""Short: a slow provider is retried by Temporal rather than holding an activity slot."""

RETRYABLE_STATUSES = frozenset({408, 425, 429})
SIGNATURE_PREFIX = "sha256="


def sign(body: bytes, secret: bytes) -> str:
    """The X-Pathways-Signature header value for `body`."""
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str, secret: bytes) -> bool:
    """True if `header` is our signature of `body` with `secret` (constant-time comparison)."""
    return hmac.compare_digest(sign(body, secret).encode(), header.strip().encode())


def idempotency_key(notification: Notification) -> str:
    n = notification
    return f"{n.pathway_id}.{n.handover_id}.v{n.version}.{n.kind.value}"


def task_body(notification: Notification) -> bytes:
    """Compact JSON with sorted keys: the exact bytes that are signed and sent."""
    return json.dumps(notification.task, separators=(",", ":"), sort_keys=True).encode()


async def deliver(client: httpx.AsyncClient, notification: Notification, secret: bytes) -> int:
    """POST the Task; return the 2xx status, else raise (retryable unless the provider refused)."""
    body = task_body(notification)
    headers = {
        "Content-Type": "application/fhir+json",
        "X-Pathways-Signature": sign(body, secret),
        "Idempotency-Key": idempotency_key(notification),
        "X-Pathways-Event": notification.kind.value,
    }
    where = f"provider {notification.provider_id} webhook"
    try:
        response = await client.post(
            notification.webhook, content=body, headers=headers, timeout=TIMEOUT
        )
    except httpx.TransportError as error:
        raise ApplicationError(
            f"{where} unreachable: {type(error).__name__}", type="WebhookUnreachable"
        ) from None
    status = response.status_code
    if 200 <= status < 300:
        return status
    if status in RETRYABLE_STATUSES or status >= 500:
        raise ApplicationError(f"{where} answered {status}", type="WebhookUnavailable")
    raise ApplicationError(
        f"{where} refused the delivery with {status}", type="WebhookRefused", non_retryable=True
    )
