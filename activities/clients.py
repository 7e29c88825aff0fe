"""SMART Backend Services clients: who may ask for an access token, and which assertions were used.

A client is a provider system that signs its token requests with its own private key (RFC 7523);
we keep only its public keys (an inline JWKS) or where to fetch them (a JWKS URL), and the scopes
it may be granted. Each assertion's `jti` is recorded until the assertion expires, in the event
store database, so a replay is refused by every API process, not just the one that saw it first.
Like the token table, these tables are created on first use (`migrate`, idempotent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Engine, MetaData, String, Table, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from activities.store import EventStore, UtcDateTime

metadata = MetaData()
smart_clients = Table(
    "smart_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("provider_id", String(128), nullable=False),
    Column("jwks_url", String(2048), nullable=True),
    Column("jwks", JSON, nullable=True),
    Column("scopes", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
smart_assertions = Table(
    "smart_assertions",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
)


@dataclass(frozen=True)
class Client:
    """A registered client: its provider, its public keys (inline or by URL), its allowed scopes."""

    client_id: str
    provider_id: str
    jwks_url: str | None
    jwks: dict[str, Any] | None = field(repr=False)
    scopes: tuple[str, ...]
    created_at: datetime


class ClientStore:
    """Register, list, find and remove clients; remember assertion ids until they expire."""

    def __init__(self, url: str) -> None:
        self._store = EventStore(url)
        self.engine: Engine = self._store.engine

    def migrate(self) -> None:
        """Create the client tables if they are missing (idempotent)."""
        self._store.create_tables([smart_clients, smart_assertions])

    def register(
        self,
        client_id: str,
        provider_id: str,
        scopes: list[str],
        jwks_url: str | None = None,
        jwks: dict[str, Any] | None = None,
    ) -> Client:
        """Store a new client with exactly one key source: a JWKS URL or an inline public JWKS."""
        if (jwks_url is None) == (jwks is None):
            raise ValueError("a client needs exactly one of a JWKS URL or an inline JWKS")
        client = Client(client_id, provider_id, jwks_url, jwks, tuple(scopes), datetime.now(UTC))
        with self.engine.begin() as conn:
            conn.execute(
                insert(smart_clients).values(
                    client_id=client_id,
                    provider_id=provider_id,
                    jwks_url=jwks_url,
                    jwks=jwks,
                    scopes=list(scopes),
                    created_at=client.created_at,
                )
            )
        return client

    def get(self, client_id: str) -> Client | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(smart_clients).where(smart_clients.c.client_id == client_id)
            ).first()
        return None if row is None else _client(row)

    def list(self) -> list[Client]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(smart_clients).order_by(smart_clients.c.created_at)).all()
        return [_client(row) for row in rows]

    def remove(self, client_id: str) -> bool:
        """Forget a client: no new tokens, and its live access tokens stop working at once."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(smart_clients).where(smart_clients.c.client_id == client_id))
            conn.execute(delete(smart_assertions).where(smart_assertions.c.client_id == client_id))
        return result.rowcount > 0

    def use_assertion(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Record an assertion id; False if this client already used it (a replay).

        Ids of expired assertions are dropped on the way: an expired assertion is refused anyway.
        """
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(delete(smart_assertions).where(smart_assertions.c.expires_at < now))
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            inserted = conn.execute(
                dialect.insert(smart_assertions)
                .values(client_id=client_id, jti=jti, expires_at=expires_at)
                .on_conflict_do_nothing()
                .returning(smart_assertions.c.jti)  # rowcount is -1 here on psycopg 3
            ).first()
        return inserted is not None


def _client(row: Any) -> Client:
    jwks = row.jwks if row.jwks is None or isinstance(row.jwks, dict) else json.loads(row.jwks)
    return Client(
        client_id=row.client_id,
        provider_id=row.provider_id,
        jwks_url=row.jwks_url,
        jwks=jwks,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
    )
