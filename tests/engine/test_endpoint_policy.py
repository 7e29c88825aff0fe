"""The address policy for provider-created subscription endpoints (server-side request forgery):
under `public`, a host must be, or resolve only to, public unicast addresses. Names resolve
through an injected resolver here, never the real DNS."""

from __future__ import annotations

import ipaddress
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pathways.webhook_url import (
    DOES_NOT_RESOLVE,
    EndpointRefused,
    endpoint_problem,
    is_public,
    public_addresses,
    webhook_url_problem,
)
from worker.subscriptions import PublicOnly, PublicOnlyTransport

NOT_PUBLIC = [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.254",
    "192.168.1.1", "169.254.169.254", "100.64.0.1", "100.127.255.254", "0.0.0.0", "224.0.0.1",
    "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:100.64.0.1",
    "2002:a00:1::1",  # 6to4 around 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "100.128.0.1",
          "2606:4700:4700::1111", "2a00:1450:4009::200e", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_unicast_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def resolver(table: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("no such name")
        return table[host]
    return resolve


NAMES = resolver({
    "ehr.example": ["93.184.216.34", "2606:4700:4700::1111"],
    "mixed.example": ["93.184.216.34", "10.0.0.7"],
    "mapped.example": ["::ffff:192.168.0.4"],
    "metadata.example": ["169.254.169.254"],
    "localhost": ["127.0.0.1", "::1"],
})


@pytest.mark.parametrize("url", [
    "https://169.254.169.254/latest/meta-data/", "https://10.0.0.1/hook", "https://[fd00::1]/hook",
    "https://[::ffff:10.0.0.1]/hook", "https://100.64.1.1/hook", "http://127.0.0.1:8000/fhir",
    "https://localhost:7233/", "https://mixed.example/hook", "https://mapped.example/hook",
    "https://metadata.example/hook", "https://[fe80::1%25eth0]/hook",
])
def test_public_refuses_internal_hosts_by_literal_or_by_name(url: str) -> None:
    problem = endpoint_problem(url, "public", NAMES)
    assert problem is not None and "public" in problem
    assert not any(a in problem for a in ("10.0.0.7", "192.168", "169.254", "127.0.0.1")), (
        "a refusal never names an address the client did not send"
    )


def test_public_accepts_public_hosts_and_names_not_resolving_yet() -> None:
    assert endpoint_problem("https://ehr.example/hook", "public", NAMES) is None
    assert endpoint_problem("https://93.184.216.34:8443/hook", "public", NAMES) is None
    assert endpoint_problem("https://[2606:4700:4700::1111]/hook", "public", NAMES) is None
    # accepted: each delivery resolves and checks again, and the handshake fails meanwhile
    assert endpoint_problem("https://not-yet.example/hook", "public", NAMES) is None


def test_any_keeps_the_webhook_rule_only() -> None:
    assert endpoint_problem("http://127.0.0.1:9000/hook", "any", NAMES) is None
    assert endpoint_problem("https://169.254.169.254/", "any", NAMES) is None
    assert endpoint_problem("http://ehr.example/hook", "any", NAMES) == webhook_url_problem(
        "http://ehr.example/hook"
    )
    assert endpoint_problem("http://ehr.example/hook", "public", NAMES) is not None


def test_public_addresses_pins_what_was_checked() -> None:
    assert [str(a) for a in public_addresses("ehr.example", 443, NAMES)] == [
        "93.184.216.34", "2606:4700:4700::1111"
    ]
    with pytest.raises(EndpointRefused):
        public_addresses("mixed.example", 443, NAMES)
    with pytest.raises(OSError):
        public_addresses("not-yet.example", 443, NAMES)


class Dialler(httpcore.AsyncNetworkBackend):
    """Records where a connection would go, and goes nowhere."""

    def __init__(self) -> None:
        self.dialled: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> Any:
        self.dialled.append((host, port))
        raise httpcore.ConnectError("recorded")


async def test_the_delivery_backend_dials_only_a_checked_address() -> None:
    """The connection goes to the address that was checked, not to the name (which a rebinding
    DNS server could answer differently a moment later); an internal one is never dialled."""
    dialler = Dialler()
    backend = PublicOnly(NAMES, dialler)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("ehr.example", 443)
    assert dialler.dialled == [("93.184.216.34", 443), ("2606:4700:4700::1111", 443)]
    dialler.dialled.clear()
    for host in ("mixed.example", "localhost", "10.0.0.1", "metadata.example"):
        with pytest.raises(EndpointRefused):
            await backend.connect_tcp(host, 443)
    with pytest.raises(httpcore.ConnectError, match=DOES_NOT_RESOLVE):
        await backend.connect_tcp("not-yet.example", 443)
    assert dialler.dialled == []


def certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for subscriber.test: (CA, cert, key) files."""
    now = datetime.now(UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder().subject_name(name("subscriber.test")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("subscriber.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return files


class Route(httpcore.AsyncNetworkBackend):
    """Stands in for the internet: records the address dialled, reaches the local TLS server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dialled: list[str] = []
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> Any:
        self.dialled.append(host)
        return await self.inner.connect_tcp("127.0.0.1", self.port, timeout)


async def test_a_pinned_delivery_still_verifies_the_certificate_for_the_name(tmp_path: Path) -> None:
    """Dialling the checked address instead of the name keeps TLS right: SNI, certificate check
    and Host header are the URL's name; a certificate for another name is refused."""
    ca, cert, key = certificates(tmp_path)
    hosts: list[str] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hosts.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    route = Route(port)
    public = resolver({"subscriber.test": ["93.184.216.34"], "other.test": ["93.184.216.34"]})
    transport = PublicOnlyTransport(public, ssl.create_default_context(cafile=str(ca)), route)
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            answer = await client.post(f"https://subscriber.test:{port}/hook", content=b"{}")
            assert answer.status_code == 200
            assert hosts == [f"subscriber.test:{port}"] and route.dialled == ["93.184.216.34"]
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.post(f"https://other.test:{port}/hook", content=b"{}")
    finally:
        server.shutdown()
