"""The SMART client registry on SQLite and PostgreSQL: clients round-trip, and an assertion id is
accepted once, even when several API processes race to use it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.clients import ClientStore

JWKS = {"keys": [{"kty": "EC", "crv": "P-384", "kid": "k1", "x": "x", "y": "y"}]}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'pathways.db'}"
    else:
        yield request.getfixturevalue("postgres_database")


def test_clients_round_trip_and_are_removed(url: str) -> None:
    store = ClientStore(url)
    store.migrate()
    store.migrate()  # idempotent
    store.register("gp.1", "gp", ["system/Task.rs"], jwks=JWKS)
    store.register("gp.2", "gp", ["system/Task.u"], jwks_url="https://gp.example/jwks")
    client = store.get("gp.1")
    assert client is not None and client.jwks == JWKS and client.scopes == ("system/Task.rs",)
    assert [c.client_id for c in store.list()] == ["gp.1", "gp.2"]
    assert store.remove("gp.1") and not store.remove("gp.1")
    assert store.get("gp.1") is None
    with pytest.raises(ValueError):
        store.register("gp.3", "gp", [], jwks=JWKS, jwks_url="https://gp.example/jwks")


def test_an_assertion_id_is_used_once_across_racing_processes(url: str) -> None:
    ClientStore(url).migrate()
    stores = [ClientStore(url) for _ in range(4)]  # one engine each, as separate API processes
    expires = datetime.now(UTC) + timedelta(minutes=5)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: stores[i % 4].use_assertion("gp.1", "jti-1", expires), range(16)))
    assert results.count(True) == 1
    assert stores[0].use_assertion("gp.2", "jti-1", expires)  # ids are per client
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert stores[0].use_assertion("gp.1", "old", past)
    assert stores[1].use_assertion("gp.1", "old", expires)  # the expired row was pruned
