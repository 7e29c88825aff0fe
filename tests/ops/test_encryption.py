"""Patient data never reaches Temporal in clear: not in the dev server's database file, not in
`temporal workflow show`; only a coordinator's codec request (the UI's and CLI's way) decodes it.
Keys are a deploy concern: `pathways setup` makes them private, a worker without them says so in
one line."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import stat
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.tokens import TokenStore
from pathways.demo import DEMO_PATIENTS
from pathways.model import PathwayDefinition
from pathways.settings import Settings
from pathways.state import Patient
from tests.api.conftest import free_port, serve_in_thread
from tests.conftest import CONVERTER, make_settings, run_worker
from tests.ops.processes import PATHWAYS, env_for, port_is_free, run
from tests.workflows.support import TWO_DAY, deliver_everything, start, state_of
from worker.binaries import installed_binary
from workflows import search
from workflows.client import connect

pytestmark = pytest.mark.devserver

PATIENT = Patient(nhs_number="9990047006", name="Zebedee Quartermaine-Oakes")
NOTE = "Ramipril-Q7X3 5mg, dressing changed on the left shin"
SECRETS = (PATIENT.nhs_number, str(PATIENT.name), NOTE)
CONTROL = Patient(nhs_number="9990047014", name="Control Unencrypted-Person")

NOTED = PathwayDefinition.model_validate(
    {
        **TWO_DAY.model_dump(mode="json"),
        "id": "noted-handover",
        "steps": [
            {
                **TWO_DAY.model_dump(mode="json")["steps"][0],
                "handover": [
                    {"name": "wound_ok", "type": "boolean"},
                    {"name": "visit_note", "type": "text"},
                ],
            },
            TWO_DAY.model_dump(mode="json")["steps"][1],
        ],
    }
)


def _shown_bytes(output: str) -> bytes:
    """`temporal workflow show --output json` with every payload's base64 data decoded, so a
    plain-text value can't hide behind base64."""
    found: list[bytes] = [output.encode()]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    found.append(base64.b64decode(value))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(output))
    return b"\n".join(found)


def _database_bytes(folder: Path) -> bytes:
    """The SQLite file and its journals (-wal, -shm), as they sit on disk."""
    files = sorted(folder.glob("temporal.db*"))
    assert any(f.name == "temporal.db" for f in files)
    contents = []
    for file in files:
        try:
            contents.append(file.read_bytes())
        except FileNotFoundError:  # a rollback journal, gone as its transaction ended
            continue
    return b"".join(contents)


@pytest_asyncio.fixture
async def file_server(tmp_path: Path) -> AsyncIterator[tuple[WorkflowEnvironment, Path]]:
    """A dev server persisting to a SQLite file, as `pathways up` runs it."""
    folder = tmp_path / "temporal"
    folder.mkdir()
    env = await WorkflowEnvironment.start_local(
        data_converter=CONVERTER,
        search_attributes=search.ALL_KEYS,
        dev_server_existing_path=installed_binary("temporal"),
        dev_server_database_filename=str(folder / "temporal.db"),
        dev_server_log_level="error",
    )
    async with env:
        yield env, folder


async def test_no_patient_data_in_the_database_file_or_the_cli_only_through_the_codec(
    file_server: tuple[WorkflowEnvironment, Path], tmp_path: Path
) -> None:
    env, folder = file_server
    target = env.client.service_client.config.target_host
    settings = make_settings(tmp_path / "data", target, task_queue="encrypted")
    settings = settings.model_copy(update={"api_port": free_port()})
    client = await connect(settings)  # the production client: keys from the data dir
    async for _ in run_worker(client, settings):
        handle = await start(client, settings, NOTED, PATIENT)
        await deliver_everything(handle, {"first-visit": {"visit_note": NOTE}})
        state = await state_of(handle)
        assert state.patient.name == PATIENT.name  # the data is there, for clients with the key
        assert state.handovers["first-visit.1"].output["visit_note"] == NOTE

        # The scan does find plain text when it is there: a client without the codec.
        plain = await Client.connect(target, data_converter=pydantic_data_converter)
        control = await start(plain, settings, NOTED, CONTROL)
        await control.terminate("control only")

        raw = _database_bytes(folder)
        assert str(CONTROL.name).encode() in raw
        for secret in SECRETS:
            assert secret.encode() not in raw, "patient data in the dev server's database file"

        show = [installed_binary("temporal"), "workflow", "show", "--address", target,
                "--workflow-id", handle.id, "--output", "json"]  # fmt: skip
        shown = subprocess.run(show, capture_output=True, text=True, timeout=60, check=True).stdout
        assert handle.id in shown
        for secret in SECRETS:
            assert secret.encode() not in _shown_bytes(shown), "patient data in `workflow show`"

        # An operator with a coordinator token decodes through the API's codec, as the UI does.
        served = serve_in_thread(settings)
        codec = f"{next(served)}/codec"
        token = TokenStore(settings.event_store).issue_coordinator("ops")
        try:
            refused = subprocess.run([*show, "--codec-endpoint", codec], capture_output=True,
                                     text=True, timeout=60)  # fmt: skip
            assert refused.returncode != 0 and PATIENT.nhs_number not in refused.stdout
            decoded = subprocess.run(
                [*show, "--codec-endpoint", codec, "--codec-auth", f"Bearer {token}"],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout
        finally:
            served.close()
        assert all(secret.encode() in _shown_bytes(decoded) for secret in SECRETS)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _fresh(settings: Settings, data_dir: Path, **extra: str) -> dict[str, str]:
    """A child's environment on the session's server, with its own (empty) data dir."""
    env = env_for(settings, PATHWAYS_DATA_DIR=str(data_dir), **extra)
    env["PATHWAYS_EVENT_STORE_URL"] = f"sqlite:///{data_dir / 'pathways.db'}"
    return env


def test_setup_creates_a_private_key_once(settings: Settings, tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    env = _fresh(settings, data_dir)
    first = run("setup", env=env)
    assert first.returncode == 0, first.stderr
    keys = data_dir / "encryption.keys"
    assert "encryption keys: created" in first.stdout
    assert _mode(data_dir) == 0o700 and _mode(keys) == 0o600
    assert _mode(data_dir / "pathways.db") == 0o600
    content = keys.read_text()
    assert content.split()[-1] not in first.stdout + first.stderr  # the key is never printed
    again = run("setup", env=env)
    assert again.returncode == 0 and "encryption keys: present" in again.stdout
    assert keys.read_text() == content  # setup never replaces a key: old payloads stay readable


@pytest.mark.parametrize("command", ["worker", "api"])
def test_a_process_without_its_keys_file_says_so_in_one_line(
    settings: Settings, tmp_path: Path, command: str
) -> None:
    missing = tmp_path / "nowhere" / "keys"
    done = run(command, env=_fresh(settings, tmp_path / "w", PATHWAYS_ENCRYPTION_KEYS_FILE=str(missing)),
               timeout=60)  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"error: no encryption keys file at {missing}: copy the installation's keys file there, "
        "or set PATHWAYS_ENCRYPTION_KEYS_FILE"
    ]
    assert "Traceback" not in done.stdout + done.stderr

    secret_looking = "k1:bm90LWEtMzItYnl0ZS1rZXktYnV0LWNsb3Nl"
    bad = tmp_path / "bad.keys"
    bad.write_text(secret_looking + "\n")
    done = run(command, env=_fresh(settings, tmp_path / "w", PATHWAYS_ENCRYPTION_KEYS_FILE=str(bad)),
               timeout=60)  # fmt: skip
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
    assert "32 random bytes" in done.stderr and secret_looking.split(":")[1] not in done.stderr



def _up(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`pathways up` until its banner lists the demo pathways."""
    process = subprocess.Popen([PATHWAYS, "up"], cwd=data_dir.parent, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "Demo pathways" not in "".join(lines[-1:]):
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
    if "Demo pathways" not in "".join(lines):
        process.kill()
        raise AssertionError("pathways up did not start:\n" + "".join(lines))
    return process, "".join(lines)


async def test_up_keeps_its_state_private_and_points_the_ui_at_the_codec(tmp_path: Path) -> None:
    port = next(p for p in iter(lambda: random.randint(20000, 29000), 0)
                if port_is_free(p) and port_is_free(p + 1000))  # fmt: skip
    api_port = free_port()
    data_dir = tmp_path / "data"
    env = dict(os.environ)
    env.update(
        PATHWAYS_DATA_DIR=str(data_dir),
        PATHWAYS_TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
        PATHWAYS_API_PORT=str(api_port),
        PATHWAYS_METRICS_PORT=str(free_port()),
        PATHWAYS_HEALTH_PORT=str(free_port()),
        PATHWAYS_LOG_FORMAT="json",
    )
    env.pop("PATHWAYS_ENCRYPTION_KEYS_FILE", None)
    process, output = _up(data_dir, env)
    try:
        assert f"http://127.0.0.1:{api_port}/codec/session" in output
        async with httpx.AsyncClient(timeout=10) as http:
            ui = (await http.get(f"http://127.0.0.1:{port + 1000}/api/v1/settings")).json()
        assert ui["Codec"]["Endpoint"] == f"http://127.0.0.1:{api_port}/codec"
        assert _mode(data_dir) == 0o700
        files = [p for p in data_dir.iterdir() if p.is_file()]
        assert {"temporal.db", "encryption.keys", "pathways.db"} <= {p.name for p in files}
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
        raw = _database_bytes(data_dir)
        for patient in DEMO_PATIENTS:  # the demo pathways ran, their data sealed
            assert patient.nhs_number.encode() not in raw
            assert str(patient.name).encode() not in raw
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=90)
    assert process.returncode == 0, rest
