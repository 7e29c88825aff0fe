"""Just-in-time notification: POST a handover's FHIR Task to the provider system, signed.

Signed with the Standard Webhooks scheme (standardwebhooks.com), through the `standardwebhooks`
package: `webhook-id` (the idempotency key, the same on every retry), `webhook-timestamp` (unix
seconds of this attempt) and `webhook-signature`, `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
one per active secret version, space-separated, so a provider keeps verifying while its secret
rotates. A provider verifies with its `whsec_` secret and a tolerance window, and de-duplicates on
webhook-id (also sent as Idempotency-Key). Every non-2xx answer is retried: the workflow bounds the
total time and records the failure. Errors name the status class, never the body (the Task may
reference a patient).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import httpx
from standardwebhooks import Webhook, WebhookVerificationError
from temporalio.exceptions import ApplicationError

from pathways import fhir
from pathways.events import Notification, NotificationKind
from pathways.portal_link import expiry, link
from pathways.settings import Settings, WebhookSecret
from pathways.webhook_url import webhook_url_problem

__all__ = [
    "TOLERANCE",
    "WebhookVerificationError",
    "deliver",
    "idempotency_key",
    "post_signed",
    "sign",
    "task_body",
    "verify",
    "with_portal_link",
]

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
"""Short: a slow provider is retried by Temporal rather than holding an activity slot."""

TOLERANCE = timedelta(minutes=5)
"""How far a webhook-timestamp may be from the verifier's clock (the spec's recommendation)."""


def sign(msg_id: str, timestamp: int, body: bytes, secrets: Iterable[WebhookSecret]) -> str:
    """The webhook-signature header: one `v1,<base64>` per secret, space-separated."""
    at = datetime.fromtimestamp(timestamp, UTC)
    text = body.decode()
    return " ".join(Webhook(secret.key).sign(msg_id, at, text) for secret in secrets)


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Iterable[str | bytes],
    *,
    tolerance: timedelta = TOLERANCE,
    now: float | None = None,
) -> None:
    """Raise WebhookVerificationError unless one signature in `headers` is by one of `secrets`
    (`whsec_...` strings or raw keys) over these exact body bytes, with a timestamp within
    `tolerance` of `now` (default: this clock). Malformed headers fail verification, never crash.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    msg_id = lower.get("webhook-id", "")
    stamp = lower.get("webhook-timestamp", "")
    if not (msg_id and stamp.isascii() and stamp.isdigit() and lower.get("webhook-signature")):
        raise WebhookVerificationError("missing or malformed webhook headers")
    timestamp = int(stamp)
    if abs((time.time() if now is None else now) - timestamp) > tolerance.total_seconds():
        raise WebhookVerificationError("webhook-timestamp outside the tolerance window")
    offered = _v1_signatures(lower["webhook-signature"])
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise WebhookVerificationError("body is not UTF-8") from None
    at = datetime.fromtimestamp(timestamp, UTC)
    for secret in secrets:
        expected = base64.b64decode(Webhook(secret).sign(msg_id, at, text).split(",", 1)[1])
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise WebhookVerificationError("no matching signature")


def _v1_signatures(header: str) -> list[bytes]:
    """The decoded `v1` signatures of a webhook-signature header; others and garbage skipped."""
    decoded = []
    for entry in header.split():
        version, _, value = entry.partition(",")
        if version == "v1":
            try:
                decoded.append(base64.b64decode(value, validate=True))
            except binascii.Error:
                continue
    return decoded


def idempotency_key(notification: Notification) -> str:
    """The webhook-id: one per notification, the same on every retry of it."""
    n = notification
    return f"{n.pathway_id}.{n.handover_id}.v{n.version}.{n.kind.value}"


def with_portal_link(notification: Notification, settings: Settings) -> Notification:
    """For a `portal: true` provider, the Task carries its signed page link (extension
    PORTAL_LINK_EXTENSION), so a provider with no FHIR system can act on the webhook alone.

    The link depends only on the Task version (expiry from its due time and last change), so
    every retry of a notification sends the same bytes. A withdrawal gets no link: the page
    would only say the handover has moved on."""
    task = notification.task
    if not notification.portal or notification.kind is NotificationKind.CANCELLED or not task:
        return notification
    try:
        due = _instant(task["restriction"]["period"]["end"])
        changed = _instant(task["meta"]["lastUpdated"])
    except (KeyError, TypeError, ValueError):
        return notification
    url = link(settings, str(task["id"]), notification.provider_id, expiry(due, changed))
    return notification.model_copy(update={"task": fhir.with_portal_link(task, url)})


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def task_body(notification: Notification) -> bytes:
    """Compact JSON with sorted keys: the exact bytes that are signed and sent."""
    return json.dumps(notification.task, separators=(",", ":"), sort_keys=True).encode()


async def deliver(
    client: httpx.AsyncClient, notification: Notification, secrets: Sequence[WebhookSecret]
) -> int:
    """POST the notification's Task, signed with every active secret; return the 2xx status."""
    return await post_signed(
        client,
        notification.webhook,
        task_body(notification),
        msg_id=idempotency_key(notification),
        event=notification.kind.value,
        secrets=secrets,
        where=f"provider {notification.provider_id} webhook",
    )


async def post_signed(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    *,
    msg_id: str,
    event: str,
    secrets: Sequence[WebhookSecret],
    where: str,
    timestamp: int | None = None,
) -> int:
    """POST `body` to `url` signed for this attempt; return the 2xx status, else raise.

    A URL that is neither https nor loopback is refused for good (WebhookInsecureUrl). Every
    other failure is retryable: unreachable (WebhookUnreachable) or any non-2xx answer, typed by
    its class (WebhookStatus3xx: a redirect, which is not followed; WebhookStatus4xx; ...).
    """
    if problem := webhook_url_problem(url):
        raise ApplicationError(f"{where} refused: {problem}", type="WebhookInsecureUrl",
                               non_retryable=True)
    if not secrets:
        raise ApplicationError(f"{where}: no signing secret", type="WebhookNoSecret",
                               non_retryable=True)
    stamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/fhir+json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(msg_id, stamp, body, secrets),
        "Idempotency-Key": msg_id,
        "X-Pathways-Event": event,
        "X-Pathways-Key-Ids": " ".join(secret.key_id for secret in secrets),
    }
    try:
        response = await client.post(
            url, content=body, headers=headers, timeout=TIMEOUT, follow_redirects=False
        )
    except httpx.TransportError as error:
        raise ApplicationError(
            f"{where} unreachable: {type(error).__name__}", type="WebhookUnreachable"
        ) from None
    status = response.status_code
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        raise ApplicationError(
            f"{where} answered {status}: redirects are not followed, configure the final URL",
            type="WebhookStatus3xx",
        )
    status_class = f"{status // 100}xx" if 400 <= status < 600 else "Other"
    raise ApplicationError(f"{where} answered {status}", type=f"WebhookStatus{status_class}")
