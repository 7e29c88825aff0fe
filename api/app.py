"""The HTTP API application: FHIR R4 for provider systems at /fhir, coordinator JSON at /api."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from activities.store import EventStore
from api import coordinator, fhir, problems
from api.gateway import Gateway
from api.tokens import TokenStore
from pathways.catalogue import load_catalogue
from pathways.settings import Settings


def create_app(settings: Settings, client: Client | None = None) -> FastAPI:
    """The API for one installation; connects to Temporal on start unless given a client."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = await Gateway.connect(settings, client)
        yield

    app = FastAPI(
        title="Pathway Orchestrator API",
        version="1",
        description="Handovers as FHIR R4 Tasks for provider systems (/fhir); pathways, "
        "escalations and the catalogue for coordinators (/api). Bearer tokens throughout.",
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.settings = settings
    app.state.catalogue = load_catalogue(settings.catalogue_dir)
    app.state.store = EventStore(settings.event_store)
    app.state.tokens = TokenStore(settings.event_store)
    app.state.tokens.migrate()
    problems.install(app)
    app.include_router(fhir.router)
    app.include_router(coordinator.router)
    return app
