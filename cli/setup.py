"""`pathways setup`: idempotent deploy step for a namespace, a database and the payload keys."""

from __future__ import annotations

import os
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client

from activities import ledger
from activities.clients import ClientStore
from activities.store import EventStore
from activities.subscriptions import SubscriptionStore
from activities.whatif_jobs import WhatifJobStore
from api.idempotency import idempotency_keys
from api.tokens import TokenStore
from pathways.settings import Settings
from worker.connection import connect_or_fail
from workflows import search
from workflows.codec import ensure_default_keys, load_keyring, make_private_dir


async def register_search_attributes(client: Client, namespace: str) -> list[str]:
    """Add the pathway search attributes the namespace lacks; returns the names added."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type)
        for key in search.ALL_KEYS
        if key.name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


def migrate_database(settings: Settings) -> None:
    """Create or migrate every table: the event store and read model, tokens, SMART clients,
    FHIR subscriptions, the settlement ledger, idempotency keys and what-if jobs. The API and
    the worker check their own tables again on start, but after this no two processes race on
    one."""
    url = settings.event_store
    EventStore(url).migrate()
    TokenStore(url).migrate()
    ClientStore(url).migrate()
    SubscriptionStore(url).migrate()
    ledger.migrate(EventStore(url))
    EventStore(url).create_tables([idempotency_keys])
    WhatifJobStore(EventStore(url)).migrate()  # also schema 9; the console's what-if jobs


def secure_data_dir(settings: Settings, create: bool = False) -> None:
    """Patient data at rest is the owner's only: the data dir 0700, its files 0600, and files
    created from now on by this process and its children (dev server database, event store)
    private through the umask. The dir is created when asked or when it holds the keys."""
    os.umask(0o077)
    embedded = settings.encryption_keys is None and settings.encryption_keys_file is None
    if not (create or embedded or settings.data_dir.exists()):
        return  # a deployment that keeps nothing in a data dir: don't create one
    make_private_dir(settings.data_dir)
    for path in settings.data_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(0o600)


def prepare_keys(settings: Settings) -> Path | None:
    """The embedded default's keys file, created if missing; then check the keys load (a clear
    one-line error otherwise). Returns the path when a key was created."""
    created = ensure_default_keys(settings)
    load_keyring(settings)
    return created


async def run_setup(settings: Settings) -> int:
    secure_data_dir(settings)
    created = prepare_keys(settings)
    client = await connect_or_fail(settings)
    added = await register_search_attributes(client, settings.namespace)
    migrate_database(settings)
    print(f"search attributes: {', '.join(added) if added else 'already registered'}")
    print("database: up to date")
    if created:
        print(f"encryption keys: created {created} (0600); back it up, pathways cannot be read "
              "without it")
    else:
        print("encryption keys: present")
    return 0
