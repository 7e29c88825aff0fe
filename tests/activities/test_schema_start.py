"""A fresh deployment's schema: `pathways setup` creates every table, and the API and worker
processes that each check their own tables on start never race each other on a fresh
database (seen on `make run`: the API died with SQLite's "database is locked" while the worker
created the subscription tables)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect

from activities import ledger
from activities.clients import ClientStore
from activities.store import EventStore
from activities.subscriptions import SubscriptionStore
from activities.whatif_jobs import WhatifJobStore
from api.idempotency import IdempotencyKeys
from api.tokens import TokenStore
from cli.setup import migrate_database
from pathways.settings import Settings

EVERY_TABLE = {
    "events", "handovers", "pathways", "task_versions", "api_tokens", "smart_clients",
    "smart_assertions", "fhir_subscriptions", "fhir_subscription_events", "ledger_entries",
    "api_idempotency_keys", "whatif_jobs",
}


def _starters(url: str) -> list[Callable[[], object]]:
    """What the API and the worker each run on start, and `pathways setup`, as separate
    processes would: each with its own engine."""
    return [
        lambda: EventStore(url).migrate(),
        lambda: TokenStore(url).migrate(),
        lambda: ClientStore(url).migrate(),
        lambda: SubscriptionStore(url).migrate(),
        lambda: IdempotencyKeys(url, b"secret").migrate(),
        lambda: ledger.migrate(EventStore(url)),
        lambda: WhatifJobStore(EventStore(url)).migrate(),
    ]


def _start_together(steps: list[Callable[[], object]]) -> list[BaseException]:
    """Run every step at once, each in its own thread; the errors they raised."""
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(steps))

    def start(step: Callable[[], object]) -> None:
        barrier.wait()
        try:
            step()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=start, args=(step,)) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_processes_starting_together_on_a_fresh_database_all_start(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    for attempt in range(5 if database == "sqlite" else 1):  # timing-dependent: several tries
        url = (f"sqlite:///{tmp_path}/race-{attempt}.db" if database == "sqlite"
               else request.getfixturevalue("postgres_database"))
        assert not _start_together(_starters(url) * 2)
        assert EVERY_TABLE <= set(inspect(EventStore(url).engine).get_table_names())


def test_setup_creates_every_table(settings: Settings, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    migrate_database(settings.model_copy(update={"event_store_url": url}))
    assert EVERY_TABLE <= set(inspect(EventStore(url).engine).get_table_names())
