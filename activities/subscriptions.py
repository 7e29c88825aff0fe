"""FHIR Subscriptions in the event store: each subscription, its numbered events and its cursor.

Delivery is driven from the event store's Task versions (`task_versions`), not from memory:
each pass of the delivery loop takes a lease on a subscription, finds the pathways whose
batches naming its provider were *recorded* since its cursor (`store_writes`, stamped by the
database's clock in the batch's own transaction), turns those pathways' Task versions that are
events for it (its own handovers, and those that moved away from it) and match its filter into
numbered events (once each: unique per subscription, Task and version), and sends what is not yet
delivered, in number order. A batch the worker held through an event store outage is recorded
late with the times its changes happened, and is found all the same. The event counter, the delivered number,
the retry schedule and the heartbeat clock are columns here, so a worker restart (or another
worker taking over the lease) carries on exactly where the last one stopped. These tables are
created by `pathways setup` and again on first use (`migrate`, idempotent); `store_writes` is
the event store's own (schema 6), pruned here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection

from activities.store import (
    EventStore,
    Json,
    UtcDateTime,
    database_now,
    event_rows,
    handover_rows,
    store_writes,
    task_versions,
)
from pathways.events import EventKind
from pathways.state import task_id as make_task_id
from pathways.subscriptions import Event, Spec, Status, task_events

CHUNK = 500
"""Pathway ids per query (bound parameters stay well under every driver's limit)."""
MAX_PER_PROVIDER = 20
"""Subscriptions one provider may hold (each costs a delivery pass)."""
LOOKBACK = timedelta(seconds=60)
"""How far before its cursor (a `store_writes.recorded_at`) a pass looks again: a transaction
that stamped its row before another's but committed after it (commit lag) is still found; the
unique key keeps a version from being numbered twice. Only commit lag longer than this (or the
database clock stepping back by more) could hide a change."""

metadata = MetaData()
subscriptions = Table(
    "fhir_subscriptions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("provider_id", String(128), nullable=False),
    Column("spec", Json, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", String(500), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("events_count", Integer, nullable=False, default=0),
    Column("delivered_through", Integer, nullable=False, default=0),
    Column("scanned_until", UtcDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime(), nullable=True),
    Column("last_sent_at", UtcDateTime(), nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UtcDateTime(), nullable=True),
    Index("ix_fhir_subscriptions_provider", "provider_id"),
    Index("ix_fhir_subscriptions_status", "status"),
)
subscription_events = Table(
    "fhir_subscription_events",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("task_id", String(), nullable=False),
    Column("version", Integer, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("withdrawn", Boolean, nullable=False, default=False),
    UniqueConstraint("subscription_id", "task_id", "version", name="uq_fhir_subscription_event"),
)


LIVE = (Status.REQUESTED.value, Status.ACTIVE.value)


@dataclass(frozen=True)
class Record:
    """A stored subscription and where its delivery stands."""

    id: str
    spec: Spec
    status: Status
    error: str | None
    created_at: datetime
    updated_at: datetime
    events_count: int
    delivered_through: int
    attempts: int
    next_attempt_at: datetime | None
    last_sent_at: datetime | None


class TooMany(Exception):
    """The provider already holds MAX_PER_PROVIDER subscriptions."""


class SubscriptionStore:
    """Subscriptions per provider, their events, and the delivery loop's bookkeeping."""

    def __init__(self, url: str) -> None:
        self.store = EventStore(url)
        self.engine = self.store.engine

    def close(self) -> None:
        self.store.close()

    def migrate(self) -> None:
        """Create the subscription tables if they are missing (idempotent; on PostgreSQL under
        an advisory lock, so API and worker processes starting together don't race)."""
        self.store.create_tables(list(metadata.sorted_tables))

    # --- the API side: a provider's own subscriptions --------------------------------------

    def create(self, spec: Spec, now: datetime) -> Record:
        """Store a new subscription, `requested` (or `off`); events count from now. Its cursor
        starts at the database's clock, the one batches are stamped by."""
        record_id = f"sub-{secrets.token_hex(8)}"
        status = Status.OFF if spec.off else Status.REQUESTED
        with self.store.write() as conn:
            held = conn.execute(
                select(func.count()).where(subscriptions.c.provider_id == spec.provider_id)
            ).scalar_one()
            if held >= MAX_PER_PROVIDER:
                raise TooMany(spec.provider_id)
            conn.execute(
                insert(subscriptions).values(
                    id=record_id, provider_id=spec.provider_id, spec=spec.to_json(),
                    status=status.value, created_at=now, updated_at=now, events_count=0,
                    delivered_through=0, scanned_until=database_now(conn), attempts=0,
                )
            )
        found = self.get(spec.provider_id, record_id)
        assert found is not None
        return found

    def get(self, provider_id: str, record_id: str) -> Record | None:
        """A provider's subscription; None for another provider's (as if it did not exist)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(subscriptions).where(
                    subscriptions.c.id == record_id, subscriptions.c.provider_id == provider_id
                )
            ).first()
        return None if row is None else _record(row)

    def list_for(self, provider_id: str) -> list[Record]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(subscriptions)
                .where(subscriptions.c.provider_id == provider_id)
                .order_by(subscriptions.c.created_at, subscriptions.c.id)
            ).all()
        return [_record(row) for row in rows]

    def replace(self, provider_id: str, record_id: str, spec: Spec, now: datetime) -> Record | None:
        """Update a subscription: a new endpoint, headers or filter (or turning it back on)
        needs a new handshake; `off` stops delivery. Event numbers carry on. Turned back on
        after `off`, it looks for changes from now on (nothing was sent while off, and an
        `off` subscription holds no recorded-batch rows back from pruning)."""
        current = self.get(provider_id, record_id)
        if current is None:
            return None
        values: dict[str, Any] = {"spec": spec.to_json(), "updated_at": now}
        if spec.off:
            values["status"] = Status.OFF.value
        elif current.status is not Status.ACTIVE or not spec.same_channel(current.spec):
            values |= {"status": Status.REQUESTED.value, "error": None, "attempts": 0,
                       "next_attempt_at": None}
        with self.store.write() as conn:
            if current.status is Status.OFF and not spec.off:
                values["scanned_until"] = database_now(conn)
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id == record_id, subscriptions.c.provider_id == provider_id)
                .values(**values)
            )
        return self.get(provider_id, record_id)

    def delete(self, provider_id: str, record_id: str) -> bool:
        with self.store.write() as conn:
            gone = conn.execute(
                delete(subscriptions).where(
                    subscriptions.c.id == record_id, subscriptions.c.provider_id == provider_id
                )
            ).rowcount
            if gone:
                conn.execute(
                    delete(subscription_events).where(
                        subscription_events.c.subscription_id == record_id
                    )
                )
        return bool(gone)

    def events(self, record_id: str, low: int, high: int) -> list[Event]:
        """Events numbered low..high (inclusive), in number order."""
        e = subscription_events.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(e.number, e.task_id, e.version, e.at, e.withdrawn)
                .where(e.subscription_id == record_id, e.number >= low, e.number <= high)
                .order_by(e.number)
            ).all()
        return [Event(row.number, row.task_id, row.version, row.at, row.withdrawn) for row in rows]

    def task_at(self, task_id: str, version: int) -> dict[str, Any] | None:
        return self.store.task_at(task_id, version)

    # --- the delivery loop's side ------------------------------------------------------------

    def due(self, now: datetime, owner: str) -> list[str]:
        """Live subscriptions no other worker holds a lease on."""
        c = subscriptions.c
        free = or_(c.lease_until.is_(None), c.lease_until < now, c.lease_owner == owner)
        with self.engine.connect() as conn:
            return list(
                conn.execute(select(c.id).where(c.status.in_(LIVE), free).order_by(c.id)).scalars()
            )

    def claim(self, record_id: str, owner: str, now: datetime, lease: timedelta) -> Record | None:
        """Take the subscription's lease (None if another worker holds it or it is not live)."""
        c = subscriptions.c
        with self.store.write() as conn:
            taken = conn.execute(
                update(subscriptions)
                .where(
                    c.id == record_id,
                    c.status.in_(LIVE),
                    or_(c.lease_until.is_(None), c.lease_until < now, c.lease_owner == owner),
                )
                .values(lease_owner=owner, lease_until=now + lease)
            ).rowcount
            if not taken:
                return None
            row = conn.execute(select(subscriptions).where(c.id == record_id)).first()
        return None if row is None else _record(row)

    def release_all(self, owner: str) -> None:
        """Give back every lease `owner` holds (a worker stopping)."""
        c = subscriptions.c
        with self.store.write() as conn:
            conn.execute(
                update(subscriptions)
                .where(c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def current(self, record_id: str) -> Record | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(subscriptions).where(subscriptions.c.id == record_id)).first()
        return None if row is None else _record(row)

    def set_status(self, record_id: str, status: Status, now: datetime,
                   error: str | None = None) -> None:
        """A life-cycle move (active after a handshake, error, off at its end)."""
        values: dict[str, Any] = {"status": status.value, "error": error, "updated_at": now}
        if status is Status.ACTIVE:
            values |= {"attempts": 0, "next_attempt_at": None, "last_sent_at": now}
        self._set(record_id, **values)

    def delivered(self, record_id: str, number: int, now: datetime) -> None:
        """Event `number` reached the endpoint: the next one goes next; the error clears."""
        c = subscriptions.c
        with self.store.write() as conn:
            conn.execute(
                update(subscriptions)
                .where(c.id == record_id, c.delivered_through < number)
                .values(delivered_through=number, attempts=0, next_attempt_at=None,
                        last_sent_at=now, error=None)
            )

    def failed(self, record_id: str, attempts: int, retry_at: datetime, error: str) -> None:
        """A delivery failed: try again at `retry_at`, the same event first."""
        self._set(record_id, attempts=attempts, next_attempt_at=retry_at, error=error[:500])

    def heartbeat(self, record_id: str, now: datetime, error: str | None) -> None:
        self._set(record_id, last_sent_at=now, error=error)

    def _set(self, record_id: str, **values: Any) -> None:
        with self.store.write() as conn:
            conn.execute(
                update(subscriptions).where(subscriptions.c.id == record_id).values(**values)
            )

    def discover(self, record_id: str, lookback: timedelta = LOOKBACK) -> int:
        """Number the Task versions recorded since the cursor that are events for the
        subscription; return how many new events. Read first (an idle pass writes nothing but
        a cursor move now and then); then one transaction moves the events, the counter and the
        cursor together. The caller holds the lease.

        The cursor is a recording time (`store_writes.recorded_at`, the database's clock),
        never a change's own time, so a batch recorded long after its changes happened is found:
        candidates are the Tasks of the pathways whose batches naming the provider were recorded
        since the cursor (less `lookback`). The cursor moves to the newest recording seen."""
        with self.engine.connect() as conn:
            row = conn.execute(select(subscriptions).where(subscriptions.c.id == record_id)).first()
            if row is None:
                return 0
            record = _record(row)
            since = row.scanned_until - lookback
            latest = _latest_write(conn)  # before the candidates: they see no less
            if latest is None or latest < since:
                return 0  # nothing recorded since: nothing to number, the cursor stays
            task_ids = _candidates(conn, record.spec.filter.owner, since)
            found: list[tuple[datetime, str, int, bool]] = []
            if task_ids:
                found = _new_events(record, _versions(conn, task_ids), _seen(conn, record_id, task_ids))
        cursor = max(row.scanned_until, latest)
        if not found and cursor - row.scanned_until < lookback / 2:
            return 0  # nothing new, and the cursor may lag a little: scanning again finds nothing
        with self.store.write() as conn:
            number = conn.execute(
                select(subscriptions.c.events_count).where(subscriptions.c.id == record_id)
            ).scalar_one()
            for at, task_id, version, withdrawn in found:
                number += 1
                conn.execute(
                    insert(subscription_events).values(
                        subscription_id=record_id, number=number, task_id=task_id,
                        version=version, at=at, withdrawn=withdrawn,
                    )
                )
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id == record_id)
                .values(events_count=number, scanned_until=cursor)
            )
        return len(found)

    def prune(self, lookback: timedelta = LOOKBACK) -> int:
        """Delete the recorded-batch rows no pass can look at again: older than every
        subscription's cursor (but `off` ones') and than the database's clock (a new
        subscription starts there), less twice the look-back. Return how many went."""
        c, w = subscriptions.c, store_writes.c
        with self.store.write() as conn:
            oldest = conn.execute(
                select(type_coerce(func.min(c.scanned_until), UtcDateTime())).where(
                    c.status != Status.OFF.value
                )
            ).scalar()
            now = conn.execute(select(database_now(conn))).scalar_one()
            horizon = (now if oldest is None else min(now, oldest)) - 2 * lookback
            return int(conn.execute(delete(store_writes).where(w.recorded_at < horizon)).rowcount)


def _latest_write(conn: Connection) -> datetime | None:
    """When the newest batch was recorded (None: none is kept), whoever it named: every
    cursor moves on, so none holds pruning back for long."""
    newest = type_coerce(func.max(store_writes.c.recorded_at), UtcDateTime())
    return conn.execute(select(newest)).scalar()


def _candidates(conn: Connection, owner: str, since: datetime) -> list[str]:
    """Task ids, in the pathways of the batches naming the owner recorded since `since`, of
    the owner's handovers and of handovers whose events name it (it acted on them, or they
    were reassigned from it, which the read model files under their new provider)."""
    h, ev, w = handover_rows.c, event_rows.c, store_writes.c
    pathway_ids = sorted(
        conn.execute(
            select(w.pathway_id).where(w.provider_id == owner, w.recorded_at >= since).distinct()
        ).scalars()
    )
    found: set[str] = set()
    for start in range(0, len(pathway_ids), CHUNK):
        chunk = pathway_ids[start : start + CHUNK]
        found.update(
            conn.execute(
                select(h.task_id).where(h.pathway_id.in_(chunk), h.provider_id == owner)
            ).scalars()
        )
        named = conn.execute(
            select(ev.pathway_id, ev.handover_id, ev.provider_id, ev.detail).where(
                ev.pathway_id.in_(chunk),
                ev.handover_id.is_not(None),
                or_(ev.provider_id == owner, ev.kind == EventKind.REASSIGNED.value),
            )
        ).all()
        found.update(
            make_task_id(row.pathway_id, row.handover_id)
            for row in named
            if row.provider_id == owner or (row.detail or {}).get("from") == owner
        )
    return sorted(found)


def _seen(conn: Connection, record_id: str, task_ids: list[str]) -> dict[str, int]:
    """Per Task, the newest version already numbered for this subscription."""
    e = subscription_events.c
    rows = conn.execute(
        select(e.task_id, func.max(e.version))
        .where(e.subscription_id == record_id, e.task_id.in_(task_ids))
        .group_by(e.task_id)
    ).all()
    return {row[0]: row[1] for row in rows}


def _versions(conn: Connection, task_ids: list[str]) -> list[Any]:
    tv = task_versions.c
    return list(
        conn.execute(select(tv.task_id, tv.version, tv.task).where(tv.task_id.in_(task_ids))).all()
    )


def _new_events(
    record: Record, versions: Any, seen: dict[str, int]
) -> list[tuple[datetime, str, int, bool]]:
    """The events among these Task versions not numbered yet: (time, Task id, version,
    withdrawn), in time order."""
    by_task: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for task_id, version, task in versions:
        by_task.setdefault(task_id, []).append((version, dict(task)))
    found = []
    for task_id, recorded in by_task.items():
        recorded.sort(key=lambda pair: pair[0])
        for version, at, withdrawn in task_events(
            record.spec.filter, recorded, seen.get(task_id, 0), record.created_at
        ):
            found.append((at, task_id, version, withdrawn))
    return sorted(found)


def _record(row: Any) -> Record:
    spec = row.spec if isinstance(row.spec, dict) else {}
    return Record(
        id=row.id,
        spec=Spec.from_json(spec),
        status=Status(row.status),
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        events_count=row.events_count,
        delivered_through=row.delivered_through,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_sent_at=row.last_sent_at,
    )
