"""The settlement ledger's storage: append-only entries and the inputs settlement records.

Entries are never updated or deleted. `post` is incremental: the replay (pathways.settlement.
Replay) is kept in memory at the horizon of the last posting, whose watermark (horizon, entry,
event and input counts) is stored in `ledger_watermark`; events and inputs written since are
read alone and applied on top. The whole log is replayed from the start (what every posting did
before) only when the watermark is not this process's (first use, another process posted) or a
fact was written timed at or before the horizon; both ways give the same entries (tested).
When a stored entry no longer matches the replay (a fact was written after a posting had passed
its time, e.g. an event store write delayed past a close), nothing stored is changed: the
differences per pathway, handover, provider and rule are appended as adjusting entries in the
first open period. Tables have their own schema versions (`ledger_schema_version`), migrated
like activities/store.py's, on the event store's database. The patient's questionnaire links
(`ledger_links`) live here too: issued when a pathway completes or on request, spent by the
answer they record.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from activities.store import EventStore, UtcDateTime, event_rows, pathway_rows
from pathways.events import EventKind, PathwayEvent
from pathways.settlement.ledger import LateFact, Replay, derive
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
    Column("answers", Json),
)
"""Outcome scores (by the patient's link or a coordinator on the patient's behalf, with the
questionnaire's other answers in `answers`, v2) and period closes."""

watermark_rows = Table(
    "ledger_watermark", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("as_of", UtcDateTime, nullable=False),
    Column("entries", Integer, nullable=False),
    Column("events", Integer, nullable=False),
    Column("inputs", Integer, nullable=False),
)
"""One row: the horizon the ledger is posted to and what it had read and written then."""

link_rows = Table(
    "ledger_links", metadata,
    Column("link_id", String(), primary_key=True),
    Column("pathway_id", String(), nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("issued_by", String(), nullable=False),
    Column("used_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
    Index("ix_ledger_links_pathway", "pathway_id"),
)
"""The patient's single-use questionnaire links: the signed token names only `link_id`."""


def _create_v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[entry_rows, input_rows], checkfirst=True)


def _create_v2(conn: Connection) -> None:
    metadata.create_all(conn, tables=[watermark_rows, link_rows], checkfirst=True)
    if "answers" not in {c["name"] for c in inspect(conn).get_columns("ledger_inputs")}:
        conn.execute(text("ALTER TABLE ledger_inputs ADD COLUMN answers "
                          + ("JSONB" if conn.dialect.name == "postgresql" else "JSON")))


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _create_v1), (2, _create_v2)]
"""Versioned ledger schema steps; append new steps, never edit old ones."""

_PG_LEDGER_LOCK = 724_170_013
"""Advisory lock id serialising ledger migrations and postings on PostgreSQL."""


class LedgerRefused(ValueError):
    """A settlement input that cannot be recorded (unknown pathway, period not over, closed)."""


class LinkGone(LookupError):
    """A questionnaire link that no longer opens: `reason` is what the patient is told."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Link:
    link_id: str
    pathway_id: str
    issued_at: datetime
    expires_at: datetime
    issued_by: str
    used_at: datetime | None = None
    revoked_at: datetime | None = None


Mark = tuple[datetime, int, int, int]
"""A watermark: (horizon, entries stored, events read, inputs read)."""


@dataclass
class _Cache:
    """This process's replay at the stored watermark `mark`."""

    replay: Replay
    mark: Mark
    event_ids: set[str]
    input_ids: set[str]
    entry_ids: set[str]
    offset: int = field(default=0, metadata={"doc": "stored seq minus replay seq"})


def migrate(store: EventStore) -> int:
    """Bring the ledger's tables to the latest version (`pathways setup` runs it); return it."""
    with _Locked(store) as conn:
        ledger_versions.create(conn, checkfirst=True)
        current = conn.execute(select(func.max(ledger_versions.c.version))).scalar() or 0
        for version, step in MIGRATIONS:
            if version > current:
                step(conn)
                conn.execute(insert(ledger_versions).values(
                    version=version, applied_at=datetime.now(UTC)))
                current = version
        return int(current)


class LedgerStore:
    """The ledger tables beside an event store, and the contracts it settles under."""

    def __init__(self, store: EventStore, contracts: Contracts) -> None:
        self.store = store
        self.contracts = contracts
        self._cache: _Cache | None = None
        self.full_replays = 0
        """How many postings replayed the whole log (first use, another writer, a late fact)."""

    def migrate(self) -> int:
        return migrate(self.store)

    # --- inputs ---------------------------------------------------------------------------
    def record_outcome(self, pathway_id: str, outcome: Outcome, actor: str,
                       at: datetime, answers: dict[str, str] | None = None) -> LedgerInput:
        """Record a pathway's outcome score (a later one replaces it from its time on); the
        patient's unused links stop working (answered on their behalf)."""
        with self._locked() as conn:
            item = self._record_outcome(conn, pathway_id, outcome, actor, at, answers or {})
            conn.execute(update(link_rows).where(
                link_rows.c.pathway_id == pathway_id, link_rows.c.used_at.is_(None),
                link_rows.c.revoked_at.is_(None)).values(revoked_at=at))
            return item

    def _record_outcome(self, conn: Connection, pathway_id: str, outcome: Outcome, actor: str,
                        at: datetime, answers: dict[str, str]) -> LedgerInput:
        known = conn.execute(select(pathway_rows.c.pathway_id).where(
            pathway_rows.c.pathway_id == pathway_id)).first()
        if known is None:
            raise LedgerRefused(f"no pathway {pathway_id}")
        count = conn.execute(select(func.count()).select_from(input_rows).where(
            input_rows.c.pathway_id == pathway_id,
            input_rows.c.kind == InputKind.OUTCOME.value)).scalar_one()
        item = LedgerInput(input_id=f"outcome:{pathway_id}:{count + 1}",
                           kind=InputKind.OUTCOME, at=at, pathway_id=pathway_id,
                           outcome=outcome, actor=actor, answers=answers)
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

    # --- the patient's questionnaire links --------------------------------------------------
    def issue_link(self, pathway_id: str, actor: str, now: datetime) -> Link:
        """A new single-use link for the pathway's outcome questionnaire (older unused ones
        stop working). It expires at the outcome deadline (the pathway's end plus the
        contract's set time), or that set time from now when the deadline is not ahead."""
        with self._locked() as conn:
            self._post(conn, now)
            return self._issue(conn, pathway_id, actor, now)

    def _issue(self, conn: Connection, pathway_id: str, actor: str, now: datetime) -> Link:
        assert self._cache is not None
        p = self._cache.replay.pathways.get(pathway_id)
        if p is None:
            raise LedgerRefused(f"no pathway {pathway_id} settled under a contract")
        expires = p.due if p.due is not None and p.due > now else now + p.contract.outcome.deadline
        conn.execute(update(link_rows).where(
            link_rows.c.pathway_id == pathway_id, link_rows.c.used_at.is_(None),
            link_rows.c.revoked_at.is_(None)).values(revoked_at=now))
        link = Link(secrets.token_urlsafe(16), pathway_id, now, expires, actor)
        conn.execute(insert(link_rows).values(**asdict(link)))
        return link

    def live_link(self, pathway_id: str, now: datetime) -> Link | None:
        """The pathway's link that still works, if any."""
        query = select(link_rows).where(
            link_rows.c.pathway_id == pathway_id, link_rows.c.used_at.is_(None),
            link_rows.c.revoked_at.is_(None), link_rows.c.expires_at > now,
        ).order_by(link_rows.c.issued_at.desc())
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else Link(**row._mapping)

    def link(self, link_id: str, now: datetime) -> Link:
        """The link if it still works, else LinkGone saying why."""
        with self.store.engine.connect() as conn:
            return _usable(conn, link_id, now)

    def answer_by_link(self, link_id: str, outcome: Outcome, answers: dict[str, str],
                       now: datetime) -> LedgerInput:
        """Record the patient's answer and spend the link, in one transaction (the same outcome
        input a coordinator records); LinkGone when used, revoked or expired."""
        with self._locked() as conn:
            link = _usable(conn, link_id, now)
            spent = conn.execute(update(link_rows).where(
                link_rows.c.link_id == link_id, link_rows.c.used_at.is_(None)
            ).values(used_at=now)).rowcount
            if spent != 1:
                raise LinkGone("This link has already been used: your answer was recorded.")
            return self._record_outcome(conn, link.pathway_id, outcome, "patient:link", now,
                                        answers)

    def _issue_on_completion(self, conn: Connection, completed: set[str], now: datetime) -> None:
        """A link for each pathway that completed and has none yet, while its outcome deadline
        is ahead (the coordinator passes it on to the patient)."""
        if not completed:
            return
        assert self._cache is not None
        pathways = self._cache.replay.pathways
        have = set(conn.execute(select(link_rows.c.pathway_id).distinct()).scalars())
        for pid in sorted(completed - have):
            due = pathways[pid].due if pid in pathways else None
            if due is not None and due > now:  # after the deadline only on request
                self._issue(conn, pid, "ledger", now)

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

    def entries(self, period: str | None = None, provider_id: str | None = None,
                pathway_id: str | None = None) -> list[LedgerEntry]:
        query = select(entry_rows)
        if period is not None:
            query = query.where(entry_rows.c.period == period)
        if provider_id is not None:
            query = query.where(entry_rows.c.provider_id == provider_id)
        if pathway_id is not None:
            query = query.where(entry_rows.c.pathway_id == pathway_id)
        with self.store.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(query.order_by(entry_rows.c.seq))]

    def events(self) -> list[PathwayEvent]:
        """The whole event log, by pathway and seq (what the ledger is derived from)."""
        with self.store.engine.connect() as conn:
            return _events(conn)

    def settled_events(self, as_of: datetime) -> list[PathwayEvent]:
        """The events of the pathways settled under a contract, posted up to `as_of` first
        (from the replay kept in memory: no second read of the log)."""
        with self._locked() as conn:  # the replay is only read or changed under the lock
            self._post(conn, as_of)
            assert self._cache is not None
            return self._cache.replay.events()

    def inputs(self) -> list[LedgerInput]:
        with self.store.engine.connect() as conn:
            return _inputs(conn)

    def periods(self) -> list[str]:
        """Periods with entries, in order."""
        with self.store.engine.connect() as conn:
            return sorted(conn.execute(select(entry_rows.c.period).distinct()).scalars())

    def closed_periods(self) -> set[str]:
        with self.store.engine.connect() as conn:
            return _closed(conn)

    def _post(self, conn: Connection, as_of: datetime, closing: str | None = None
              ) -> list[LedgerEntry]:
        cache = self._cache
        if cache is not None and cache.mark == _watermark(conn):
            try:
                return self._post_on_top(conn, cache, as_of)
            except LateFact:
                pass  # nothing applied yet: replay from the start
            except BaseException:
                self._cache = None  # the replay may be ahead of what was stored
                raise
        return self._post_from_start(conn, as_of, closing)

    def _post_on_top(self, conn: Connection, cache: _Cache, as_of: datetime
                     ) -> list[LedgerEntry]:
        """Read the events and inputs written since the watermark and apply them on top;
        LateFact when one is timed before the horizon (or was written unseen behind it)."""
        replay = cache.replay
        assert replay.horizon is not None
        as_of = max(as_of, replay.horizon)
        events = [e for e in _events(conn, after=replay.horizon)
                  if e.event_id not in cache.event_ids]
        inputs = [i for i in _inputs(conn, since=replay.horizon)
                  if i.input_id not in cache.input_ids]
        counted = _counts(conn)
        if counted != (len(cache.event_ids) + len(events), len(cache.input_ids) + len(inputs)):
            raise LateFact("facts were written behind the horizon")
        replay.add(events, inputs)
        booked = [self._stored_form(cache, e) for e in replay.advance(as_of)]
        if booked:
            conn.execute(insert(entry_rows), [_entry_values(e) for e in booked])
        cache.event_ids.update(e.event_id for e in events)
        cache.input_ids.update(i.input_id for i in inputs)
        cache.mark = _set_watermark(conn, as_of, cache.mark[1] + len(booked), *counted)
        self._issue_on_completion(conn, _completed(events), as_of)
        return booked

    @staticmethod
    def _stored_form(cache: _Cache, entry: LedgerEntry) -> LedgerEntry:
        """The replay's entry numbered after the stored ones (they differ once a late fact was
        trued up by adjusting entries)."""
        if not cache.offset and entry.entry_id not in cache.entry_ids:
            cache.entry_ids.add(entry.entry_id)
            return entry
        seq = entry.seq + cache.offset
        entry_id = entry.entry_id if entry.entry_id not in cache.entry_ids else f"{entry.entry_id}@{seq}"
        cache.entry_ids.add(entry_id)
        return entry.model_copy(update={"seq": seq, "entry_id": entry_id})

    def _post_from_start(self, conn: Connection, as_of: datetime, closing: str | None
                         ) -> list[LedgerEntry]:
        """Replay the whole log; append what is new, or adjusting entries where the stored
        ledger is no longer its line-for-line replay."""
        self.full_replays += 1
        stored = [_entry(r) for r in conn.execute(select(entry_rows).order_by(entry_rows.c.seq))]
        as_of = max([as_of, *(e.at for e in stored)])  # a posting never goes back in time
        mark = _watermark(conn)
        if mark is not None:
            as_of = max(as_of, mark[0])
        events, inputs = _events(conn), _inputs(conn)
        replay = Replay(self.contracts)
        replay.add(events, inputs)
        derived = list(replay.advance(as_of))
        closed = _closed(conn) - {closing}
        new = derived[len(stored):]
        if derived[: len(stored)] != stored or any(e.period in closed for e in new):
            new = adjustments(stored, derived, as_of, closed)
        if new:
            conn.execute(insert(entry_rows), [_entry_values(e) for e in new])
        total = len(stored) + len(new)
        self._cache = _Cache(
            replay, _set_watermark(conn, as_of, total, len(events), len(inputs)),
            {e.event_id for e in events}, {i.input_id for i in inputs},
            {e.entry_id for e in [*stored, *new]}, total - len(derived))
        self._issue_on_completion(conn, _completed(events), as_of)
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


def _events(conn: Connection, after: datetime | None = None) -> list[PathwayEvent]:
    query = select(event_rows).order_by(event_rows.c.pathway_id, event_rows.c.seq)
    if after is not None:
        query = query.where(event_rows.c.at > after)
    return [PathwayEvent.model_validate(dict(row._mapping)) for row in conn.execute(query)]


def _inputs(conn: Connection, since: datetime | None = None) -> list[LedgerInput]:
    query = select(input_rows).order_by(input_rows.c.at, input_rows.c.input_id)
    if since is not None:
        query = query.where(input_rows.c.at >= since)
    return [LedgerInput.model_validate({k: v for k, v in row._mapping.items() if v is not None})
            for row in conn.execute(query)]


def _counts(conn: Connection) -> tuple[int, int]:
    """(events, inputs) stored: read after the rows, so a row written meanwhile shows."""
    events = conn.execute(select(func.count()).select_from(event_rows)).scalar_one()
    inputs = conn.execute(select(func.count()).select_from(input_rows)).scalar_one()
    return int(events), int(inputs)


def _watermark(conn: Connection) -> Mark | None:
    row = conn.execute(select(watermark_rows).where(watermark_rows.c.id == 1)).first()
    return None if row is None else (row.as_of, row.entries, row.events, row.inputs)


def _set_watermark(conn: Connection, as_of: datetime, entries: int, events: int,
                   inputs: int) -> Mark:
    values = {"as_of": as_of, "entries": entries, "events": events, "inputs": inputs}
    if conn.execute(update(watermark_rows).where(watermark_rows.c.id == 1)
                    .values(**values)).rowcount == 0:
        conn.execute(insert(watermark_rows).values(id=1, **values))
    mark = _watermark(conn)
    assert mark is not None
    return mark


def _completed(events: list[PathwayEvent]) -> set[str]:
    return {e.pathway_id for e in events if e.kind is EventKind.PATHWAY_COMPLETED}


def _usable(conn: Connection, link_id: str, now: datetime) -> Link:
    row = conn.execute(select(link_rows).where(link_rows.c.link_id == link_id)).first()
    if row is None:
        raise LinkGone("This link is not valid.")
    link = Link(**row._mapping)
    if link.used_at is not None:
        raise LinkGone("This link has already been used: your answer was recorded.")
    if link.revoked_at is not None:
        raise LinkGone("This link no longer works: a newer link was sent to you, or your "
                       "answer was recorded by the team that looked after you.")
    if link.expires_at <= now:
        raise LinkGone("This link has expired.")
    return link


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
