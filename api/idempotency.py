"""Idempotency-Key bookkeeping for coordinator commands: a key stands for one request.

A retry with the same key and the same body is applied once (the key is part of the Update id);
the same key with a different body is refused (422) rather than silently answered with the first
request's outcome. Only keyed hashes are stored: never a body, never patient data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Engine, MetaData, String, Table, delete, select
from sqlalchemy.exc import IntegrityError

from activities.store import EventStore, UtcDateTime
from api.problems import ApiError

metadata = MetaData()
idempotency_keys = Table(
    "api_idempotency_keys",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("request", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

KEEP = timedelta(days=30)
"""How long a key is remembered (pruned when the API starts): far beyond any client retry."""

KEY_REUSED = (
    "this Idempotency-Key was already used with a different request; use a new key for a new "
    "request"
)


class IdempotencyKeys:
    """Which request each (caller, command, pathway, key) stood for."""

    def __init__(self, url: str, secret: bytes) -> None:
        self._store = EventStore(url)
        self.engine: Engine = self._store.engine
        self._secret = secret

    def migrate(self, keep: timedelta = KEEP) -> None:
        """Create the table if missing and forget keys older than `keep`."""
        self._store.create_tables([idempotency_keys])
        cutoff = datetime.now(UTC) - keep
        with self.engine.begin() as conn:
            conn.execute(delete(idempotency_keys).where(idempotency_keys.c.created_at < cutoff))

    def _hash(self, *parts: str) -> str:
        return hmac.new(self._secret, "\n".join(parts).encode(), hashlib.sha256).hexdigest()

    def claim(self, actor: str, command: str, pathway_id: str, key: str, body: Any) -> None:
        """Remember the key for this request; 422 if it already stands for another one."""
        scope = self._hash("scope", actor, command, pathway_id, key)
        request = self._hash("request", json.dumps(body, sort_keys=True, default=str))
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    idempotency_keys.insert().values(
                        scope=scope, request=request, created_at=datetime.now(UTC)
                    )
                )
            return
        except IntegrityError:
            pass
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(idempotency_keys.c.request).where(idempotency_keys.c.scope == scope)
            ).scalar_one_or_none()
        if stored is not None and stored != request:
            raise ApiError(422, [KEY_REUSED])
