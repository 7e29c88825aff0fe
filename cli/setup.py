"""`pathways setup`: idempotent deploy step for a namespace and a database."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client

from activities.store import EventStore
from api.tokens import TokenStore
from pathways.settings import Settings
from worker.connection import connect_or_fail
from workflows import search


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
    """Create or migrate the event store, read model and token tables."""
    EventStore(settings.event_store).migrate()
    TokenStore(settings.event_store).migrate()


async def run_setup(settings: Settings) -> int:
    client = await connect_or_fail(settings)
    added = await register_search_attributes(client, settings.namespace)
    migrate_database(settings)
    print(f"search attributes: {', '.join(added) if added else 'already registered'}")
    print("database: up to date")
    return 0
