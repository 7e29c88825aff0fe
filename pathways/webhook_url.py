"""Which webhook URLs the engine will POST patient Tasks to: https, or plain http on loopback only.

Checked twice: when a definition is validated (so a bad URL is refused with a clear message) and
again at send time (a definition recorded in an old history is not re-validated).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost"})

INSECURE_WEBHOOK = (
    "a webhook must use https; plain http is allowed only to loopback "
    "(127.0.0.0/8, ::1, localhost)"
)


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (by name or literal, never by DNS lookup)."""
    host = host.strip("[]").rstrip(".").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def webhook_url_problem(url: str) -> str | None:
    """Why `url` may not receive webhooks, or None when it may (https, or http to loopback)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "a webhook must be an absolute http(s) URL"
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if not host or scheme not in {"http", "https"}:
        return "a webhook must be an absolute http(s) URL"
    if scheme == "http" and not is_loopback(host):
        return INSECURE_WEBHOOK
    return None
