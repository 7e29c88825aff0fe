"""Bearer tokens: who is calling (a provider organisation or a named coordinator).

Only the SHA-256 hash of a token is stored, in the event store database, so a leaked database
does not leak working tokens. A token is shown once, when issued.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Column, Engine, MetaData, String, Table, insert, select, update

from activities.store import EventStore, UtcDateTime

TOKEN_PREFIX = "pwt_"
"""Marks a secret token, so `revoke` can tell a token from a token id."""

metadata = MetaData()
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
)


class PrincipalKind(StrEnum):
    PROVIDER = "provider"
    COORDINATOR = "coordinator"


@dataclass(frozen=True)
class Principal:
    """The caller a token stands for."""

    kind: PrincipalKind
    subject: str

    @property
    def actor(self) -> str:
        """How commands record who sent them, e.g. 'provider:gp-north'."""
        return f"{self.kind.value}:{self.subject}"


@dataclass(frozen=True)
class TokenRecord:
    """A stored token, without its secret."""

    id: str
    principal: Principal
    created_at: datetime
    revoked_at: datetime | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Issue, revoke, list and check tokens."""

    def __init__(self, url: str) -> None:
        self._store = EventStore(url)
        self.engine: Engine = self._store.engine

    def migrate(self) -> None:
        """Create the token table if it is missing (idempotent; `pathways setup` calls it)."""
        self._store.create_tables([api_tokens])

    def issue_provider(self, provider_id: str) -> str:
        return self.issue(Principal(PrincipalKind.PROVIDER, provider_id))[1]

    def issue_coordinator(self, name: str) -> str:
        return self.issue(Principal(PrincipalKind.COORDINATOR, name))[1]

    def issue(self, principal: Principal) -> tuple[TokenRecord, str]:
        """A new token for `principal`: its record and the secret (shown once, never stored)."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = TokenRecord(
            id=f"tok-{secrets.token_hex(6)}",
            principal=principal,
            created_at=datetime.now(UTC),
            revoked_at=None,
        )
        with self.engine.begin() as conn:
            conn.execute(
                insert(api_tokens).values(
                    id=record.id,
                    token_hash=token_hash(secret),
                    kind=principal.kind.value,
                    subject=principal.subject,
                    created_at=record.created_at,
                )
            )
        return record, secret

    def revoke(self, token_or_id: str) -> bool:
        """Revoke by secret token or by token id; False if there is no such live token."""
        if token_or_id.startswith(TOKEN_PREFIX):
            match = api_tokens.c.token_hash == token_hash(token_or_id)
        else:
            match = api_tokens.c.id == token_or_id
        with self.engine.begin() as conn:
            result = conn.execute(
                update(api_tokens)
                .where(match, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        return result.rowcount > 0

    def list(self) -> list[TokenRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_tokens).order_by(api_tokens.c.created_at)).all()
        return [
            TokenRecord(
                id=row.id,
                principal=Principal(PrincipalKind(row.kind), row.subject),
                created_at=row.created_at,
                revoked_at=row.revoked_at,
            )
            for row in rows
        ]

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a live token, or None for an unknown or revoked one."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_tokens.c.kind, api_tokens.c.subject).where(
                    api_tokens.c.token_hash == token_hash(token),
                    api_tokens.c.revoked_at.is_(None),
                )
            ).first()
        return None if row is None else Principal(PrincipalKind(row.kind), row.subject)
