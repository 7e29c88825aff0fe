"""The API under test: a real uvicorn on a free 127.0.0.1 port, a real worker, real Temporal.

The server runs in its own thread with its own event loop and its own Temporal client, as in
production; tests talk to it over HTTP only. Tests are async so the session's worker keeps
running while they wait for answers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from temporalio.worker import Worker

from api.app import create_app
from api.tokens import TokenStore
from pathways.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningApi:
    base_url: str
    settings: Settings
    tokens: TokenStore

    def provider_token(self, provider_id: str) -> str:
        return self.tokens.issue_provider(provider_id)

    def coordinator_token(self, name: str = "test-coordinator") -> str:
        return self.tokens.issue_coordinator(name)


def serve_in_thread(settings: Settings, **config: Any) -> Generator[str, None, None]:
    """Run the API until the generator is closed; yields its base URL."""
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "on"} | config
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.api_port, **options)
    )
    thread = threading.Thread(target=server.run, name="api-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield settings.base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def api_settings(settings: Settings) -> Settings:
    """The shared test settings, with the API on its own free port (so Task URLs point at it)."""
    return settings.model_copy(update={"api_port": free_port()})


@pytest_asyncio.fixture(scope="session")
async def api(api_settings: Settings, worker: Worker) -> AsyncIterator[RunningApi]:
    served = serve_in_thread(api_settings)
    base_url = next(served)
    yield RunningApi(base_url, api_settings, TokenStore(api_settings.event_store))
    served.close()


@pytest_asyncio.fixture
async def http(api: RunningApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def coordinator(api: RunningApi) -> dict[str, str]:
    """Headers of a coordinator."""
    return {"Authorization": f"Bearer {api.coordinator_token()}"}
