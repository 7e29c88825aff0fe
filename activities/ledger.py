"""The settlement ledger's storage: append-only entries and the inputs settlement records.

Entries are never updated or deleted. `post` replays the event log (pathways.settlement.derive)
and appends what is new. When a stored entry no longer matches the replay (a fact was written
after a posting had passed its time, e.g. an event store write delayed past a close), nothing
stored is changed: the differences per pathway, handover, provider and rule are appended as
adjusting entries in the first open period. Tables have their own schema versions
(`ledger_schema_version`), migrated like activities/store.py's, on the event store's database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from activities.store import EventStore, UtcDateTime, event_rows, pathway_rows
from pathways.events import PathwayEvent
from pathways.settlement.ledger import derive
from pathways.settlement.model import InputKind, LedgerEntry, LedgerInput, Rule
from pathways.settlement.periods import Period
from pathways.settlement.terms import Contracts, Outcome

Json = JSON().with_variant(postgresql.JSONB(), "postgresql")
metadata = MetaData()

ledger_versions = Table(
    "ledger_schema_version", metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UtcDateTime, nullable=False),
)

entry_rows = Table(
    "ledger_entries", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("entry_id", String(), nullable=False, unique=True),
    Column("period", String(), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("pathway_id", String()),
    Column("handover_id", String()),
    Column("provider_id", String(), nullable=False),
    Column("contract", String(), nullable=False),
    Column("rule", String(), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("caused_by", Json, nullable=False),
    Column("adjusts", String()),
    Column("note", String(), nullable=False),
    Index("ix_ledger_entries_period_provider", "period", "provider_id"),
    Index("ix_ledger_entries_pathway", "pathway_id"),
)

input_rows = Table(
    "ledger_inputs", metadata,
    Column("input_id", String(), primary_key=True),
    Column("kind", String(), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("pathway_id", String()),
    Column("period", String()),
    Column("outcome", String()),
    Column("actor", String()),
)
"""Outcome scores recorded by a coordinator on the patient's behalf, and period closes."""


def _create_v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[entry_rows, input_rows], checkfirst=True)


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _create_v1)]
"""Versioned ledger schema steps; append new steps, never edit old ones."""

_PG_LEDGER_LOCK = 724_170_013
"""Advisory lock id serialising ledger migrations and postings on PostgreSQL."""


class LedgerRefused(ValueError):
    """A settlement input that cannot be recorded (unknown pathway, period not over, closed)."""


class LedgerStore:
    """The ledger tables beside an event store, and the contracts it settles under."""

    def __init__(self, store: EventStore, contracts: Contracts) -> None:
        self.store = store
        self.contracts = contracts

    def migrate(self) -> int:
        with self._locked() as conn:
            ledger_versions.create(conn, checkfirst=True)
            current = conn.execute(select(func.max(ledger_versions.c.version))).scalar() or 0
            for version, step in MIGRATIONS:
                if version > current:
                    step(conn)
                    conn.execute(insert(ledger_versions).values(
                        version=version, applied_at=datetime.now(UTC)))
                    current = version
            return int(current)

    # --- inputs ---------------------------------------------------------------------------
    def record_outcome(self, pathway_id: str, outcome: Outcome, actor: str,
                       at: datetime) -> LedgerInput:
        """Record a pathway's outcome score (a later one replaces it from its time on)."""
        with self._locked() as conn:
            known = conn.execute(select(pathway_rows.c.pathway_id).where(
                pathway_rows.c.pathway_id == pathway_id)).first()
            if known is None:
                raise LedgerRefused(f"no pathway {pathway_id}")
            count = conn.execute(select(func.count()).select_from(input_rows).where(
                input_rows.c.pathway_id == pathway_id,
                input_rows.c.kind == InputKind.OUTCOME.value)).scalar_one()
            item = LedgerInput(input_id=f"outcome:{pathway_id}:{count + 1}",
                               kind=InputKind.OUTCOME, at=at, pathway_id=pathway_id,
                               outcome=outcome, actor=actor)
            conn.execute(insert(input_rows).values(_input_values(item)))
            return item

    def close(self, period: Period, at: datetime, actor: str) -> list[LedgerEntry]:
        """Post everything up to `at`, close the period (booking its alliance shares) and return
        the entries appended. Refused before the period is over or when already closed."""
        if at < period.end:
            raise LedgerRefused(f"{period} is not over until {period.end.isoformat()}")
        with self._locked() as conn:
            if str(period) in _closed(conn):
                raise LedgerRefused(f"{period} is already closed")
            item = LedgerInput(input_id=f"close:{period}", kind=InputKind.CLOSE, at=at,
                               period=str(period), actor=actor)
            first = self._post(conn, at)
            conn.execute(insert(input_rows).values(_input_values(item)))
            return first + self._post(conn, at, closing=str(period))

    # --- posting --------------------------------------------------------------------------
    def post(self, as_of: datetime) -> list[LedgerEntry]:
        """Append the entries the event log and inputs give up to `as_of`; return them."""
        with self._locked() as conn:
            return self._post(conn, as_of)

    def rebuild(self, as_of: datetime) -> list[LedgerEntry]:
        """The ledger replayed from scratch (read only): equals `entries()` when nothing arrived
        late."""
        with self.store.engine.connect() as conn:
            return derive(_events(conn), _inputs(conn), self.contracts, as_of)

    def entries(self, period: str | None = None, provider_id: str | None = None
                ) -> list[LedgerEntry]:
        query = select(entry_rows)
        if period is not None:
            query = query.where(entry_rows.c.period == period)
        if provider_id is not None:
            query = query.where(entry_rows.c.provider_id == provider_id)
        with self.store.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(query.order_by(entry_rows.c.seq))]

    def events(self) -> list[PathwayEvent]:
        """The whole event log, by pathway and seq (what the ledger is derived from)."""
        with self.store.engine.connect() as conn:
            return _events(conn)

    def inputs(self) -> list[LedgerInput]:
        with self.store.engine.connect() as conn:
            return _inputs(conn)

    def closed_periods(self) -> set[str]:
        with self.store.engine.connect() as conn:
            return _closed(conn)

    def _post(self, conn: Connection, as_of: datetime, closing: str | None = None
              ) -> list[LedgerEntry]:
        stored = [_entry(r) for r in conn.execute(select(entry_rows).order_by(entry_rows.c.seq))]
        as_of = max([as_of, *(e.at for e in stored)])  # a posting never goes back in time
        derived = derive(_events(conn), _inputs(conn), self.contracts, as_of)
        closed = _closed(conn) - {closing}
        new = derived[len(stored):]
        if derived[: len(stored)] != stored or any(e.period in closed for e in new):
            new = adjustments(stored, derived, as_of, closed)
        if new:
            conn.execute(insert(entry_rows), [_entry_values(e) for e in new])
        return new

    def _locked(self) -> Any:
        return _Locked(self.store)


class _Locked:
    """A write transaction holding the ledger lock (BEGIN IMMEDIATE on SQLite)."""

    def __init__(self, store: EventStore) -> None:
        self._cm = store.write()

    def __enter__(self) -> Connection:
        conn = self._cm.__enter__()
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LEDGER_LOCK})
        return conn

    def __exit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)


TotalKey = tuple[str | None, str | None, str, Rule, str, str | None]


def adjustments(stored: list[LedgerEntry], derived: list[LedgerEntry], as_of: datetime,
                closed: set[str]) -> list[LedgerEntry]:
    """Entries that bring the stored totals to the replayed ones (stored entries are never
    changed). Each is booked when the replay booked its latest line for that key, in that
    period if it is still open, else in the first open period after it."""
    def totals(entries: list[LedgerEntry]) -> dict[TotalKey, list[LedgerEntry]]:
        out: dict[TotalKey, list[LedgerEntry]] = {}
        for e in entries:
            alliance_period = (e.adjusts or e.period) if e.rule is Rule.ALLIANCE else None
            key = (e.pathway_id, e.handover_id, e.provider_id, e.rule, e.contract, alliance_period)
            out.setdefault(key, []).append(e)
        return out

    have, want = totals(stored), totals(derived)
    new: list[LedgerEntry] = []
    seq = len(stored)
    for key in sorted(set(have) | set(want), key=lambda k: tuple(str(p) for p in k)):
        before = sum(e.amount for e in have.get(key, []))
        after = sum(e.amount for e in want.get(key, []))
        if before == after:
            continue
        model = (want.get(key) or have[key])[-1]
        at = want[key][-1].at if key in want else as_of
        period = Period.parse(want[key][-1].period) if key in want else Period.containing(as_of)
        while str(period) in closed:
            period = period.next()
        first = (have.get(key) or want[key])[0].period
        seq += 1
        new.append(model.model_copy(update={
            "entry_id": f"adjust:{seq}", "seq": seq, "period": str(period), "at": at,
            "amount": after - before, "adjusts": first if first != str(period) else None,
            "note": f"late-arriving fact, true-up from {before} to {after}: {model.note}",
        }))
    return new


def _events(conn: Connection) -> list[PathwayEvent]:
    query = select(event_rows).order_by(event_rows.c.pathway_id, event_rows.c.seq)
    return [PathwayEvent.model_validate(dict(row._mapping)) for row in conn.execute(query)]


def _inputs(conn: Connection) -> list[LedgerInput]:
    rows = conn.execute(select(input_rows).order_by(input_rows.c.at, input_rows.c.input_id))
    return [LedgerInput.model_validate({k: v for k, v in row._mapping.items() if v is not None})
            for row in rows]


def _closed(conn: Connection) -> set[str]:
    query = select(input_rows.c.period).where(input_rows.c.kind == InputKind.CLOSE.value)
    return {p for p in conn.execute(query).scalars() if p}


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry.model_validate(dict(row._mapping))


def _entry_values(entry: LedgerEntry) -> dict[str, Any]:
    return {**entry.model_dump(), "rule": entry.rule.value}


def _input_values(item: LedgerInput) -> dict[str, Any]:
    values = item.model_dump()
    values["kind"] = item.kind.value
    values["outcome"] = item.outcome.value if item.outcome else None
    return values
