"""Which webhook URLs the engine will POST patient Tasks to: https, or plain http on loopback only.

Checked twice: when a definition is validated (so a bad URL is refused with a clear message) and
again at send time (a definition recorded in an old history is not re-validated).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
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


# --- provider-created subscription endpoints (server-side request forgery) -----------------------

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""Host name and port to the addresses it resolves to (as text); OSError when it does not."""

NOT_PUBLIC = (
    "the endpoint's host must be a public internet address (not loopback, private, link-local, "
    "shared, multicast, reserved or unspecified)"
)
RESOLVES_NOT_PUBLIC = (
    "the endpoint's host name resolves to an address that is not a public internet address "
    "(loopback, private, link-local, shared, multicast, reserved or unspecified)"
)
DOES_NOT_RESOLVE = "the endpoint's host name does not resolve"


def is_public(address: Address) -> bool:
    """A public unicast address: what a provider-created endpoint may reach. An IPv6 address
    carrying an IPv4 one (IPv4-mapped, 6to4, NAT64 64:ff9b::/96) must carry a public one too."""
    if isinstance(address, ipaddress.IPv6Address):
        if any(not is_public(inner) for inner in _embedded(address)):
            return False
        if address.ipv4_mapped is not None:
            return True  # judged by the IPv4 address alone
    return address.is_global and not (
        address.is_loopback or address.is_private or address.is_link_local
        or address.is_multicast or address.is_reserved or address.is_unspecified
        or address in SHARED_ADDRESS_SPACE
    )


def _embedded(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    inner = [address.ipv4_mapped, address.sixtofour]
    if address in NAT64:
        inner.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in inner if a is not None]


SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def literal(host: str) -> Address | None:
    """The host as an IP address when it is one (brackets and zone ids dropped), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the operating system resolves `host` to (TCP)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def public_addresses(host: str, port: int, resolve: Resolver) -> list[Address]:
    """The addresses to connect to for `host`, all public; raises EndpointRefused when any
    address is not public (a name resolving to a mix is refused: one could be chosen) and
    OSError when the name does not resolve."""
    if (address := literal(host)) is not None:
        if not is_public(address):
            raise EndpointRefused(NOT_PUBLIC)
        return [address]
    addresses = [a for raw in resolve(host.rstrip("."), port) if (a := literal(raw)) is not None]
    if not addresses:
        raise OSError(DOES_NOT_RESOLVE)
    if not all(is_public(a) for a in addresses):
        raise EndpointRefused(RESOLVES_NOT_PUBLIC)
    return list(dict.fromkeys(addresses))


class EndpointRefused(Exception):
    """A provider's endpoint is refused by the address policy (the reason names no address)."""


def endpoint_problem(url: str, policy: str, resolve: Resolver = system_resolver) -> str | None:
    """Why a provider-created subscription may not send to `url`, or None. Under `any`, the
    webhook rule only; under `public`, also every address of its host must be public. A name
    that does not resolve now is accepted: each delivery resolves and checks again."""
    if problem := webhook_url_problem(url):
        return problem
    if policy == "any":
        return None
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        public_addresses(parts.hostname or "", port, resolve)
    except EndpointRefused as refused:
        return str(refused)
    except (OSError, UnicodeError, ValueError):
        return None
    return None
