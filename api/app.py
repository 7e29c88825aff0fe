"""The HTTP API application: FHIR R4 for provider systems at /fhir, coordinator JSON at /api."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from temporalio.client import Client

from activities.store import EventStore
from api import analytics, codec, console, coordinator, fhir, portal, problems, settlement, simulation, smart
from api.door import Door
from api.gateway import Gateway
from api.idempotency import IdempotencyKeys
from api.subscriptions import install as install_subscriptions
from pathways.catalogue import load_catalogue
from pathways.model import DURATION_SCHEMA
from pathways.settings import Settings

SWAGGER_UI = Path(__file__).parent / "static" / "swagger-ui"
"""Swagger UI from the swagger-ui-dist npm package (`make swagger-ui`), served by the API itself
so /docs works without internet access."""
DOCS_ASSETS = "/docs/assets"


def _iso_durations(node: Any) -> Any:
    """JSON Schema's "duration" format forbids fractional seconds; our durations may have them."""
    if isinstance(node, dict):
        if node.get("format") == "duration":
            return {**{k: v for k, v in node.items() if k != "format"}, **DURATION_SCHEMA}
        return {key: _iso_durations(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_iso_durations(item) for item in node]
    return node


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        app.openapi_schema = _iso_durations(schema)
    return app.openapi_schema


def _install_docs(app: FastAPI) -> None:
    """Interactive docs at /docs from same-origin assets; no CDN, no validator badge."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_UI), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )


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
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.catalogue = load_catalogue(settings.catalogue_dir)
    app.state.store = EventStore(settings.event_store)
    app.state.tokens = smart.install(app, settings)  # opaque and SMART access tokens
    app.state.idempotency = IdempotencyKeys(settings.event_store, settings.key)
    app.state.idempotency.migrate()
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(Door, settings=settings, tokens=app.state.tokens)  # inside contain_bugs
    problems.install(app)
    _install_docs(app)
    app.include_router(fhir.router)
    install_subscriptions(app, settings)  # FHIR Subscriptions (backport IG)
    app.include_router(coordinator.router)
    app.include_router(analytics.router)
    app.include_router(settlement.router)
    app.include_router(simulation.router)
    portal.install(app)
    console.install(app)  # the coordinator console at /
    codec.install(app, settings)
    return app
