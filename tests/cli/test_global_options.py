"""Every command honours the global options (`pathways --data-dir D --catalogue-dir C ...`):
nothing is written to ./.data of the directory it runs in, and the catalogue is the one given."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from pathways.catalogue import load_catalogue
from pathways.settings import SHIPPED_CATALOGUE
from tests.ops.processes import PATHWAYS, free_port

pytestmark = pytest.mark.devserver

ONLY = "urgent-community-response"


def _clean_env() -> dict[str, str]:
    """No PATHWAYS_* variables: only the global options can point the command elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATHWAYS_")}
    return env | {"PATHWAYS_LOG_FORMAT": "json", "PATHWAYS_SECRET_KEY": "test-secret-key"}


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """A working directory, a data dir elsewhere, and a catalogue holding one definition."""
    cwd, data, catalogue = tmp_path / "cwd", tmp_path / "data", tmp_path / "catalogue"
    for folder in (cwd, catalogue):
        folder.mkdir()
    shutil.copy(SHIPPED_CATALOGUE / f"{ONLY}.yaml", catalogue)
    return {"cwd": cwd, "data": data, "catalogue": catalogue}


def _run(places: dict[str, Path], *args: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    command = [
        PATHWAYS, "--data-dir", str(places["data"]), "--catalogue-dir", str(places["catalogue"]),
        *extra, *args,
    ]
    return subprocess.run(
        command, cwd=places["cwd"], env=_clean_env(), capture_output=True, text=True, timeout=60
    )


def _other_provider() -> str:
    """A provider some shipped pathway names, but not the one definition in our catalogue."""
    shipped = load_catalogue(SHIPPED_CATALOGUE)
    ours = {p.id for r in shipped.resolve(ONLY).roles for p in r.providers}
    return next(
        p.id for d in shipped for r in d.roles for p in r.providers if p.id not in ours
    )


def test_token_commands_use_the_global_data_dir_and_catalogue(places: dict[str, Path]) -> None:
    issued = _run(places, "token", "issue", "--coordinator", "night-desk")
    assert issued.returncode == 0, issued.stderr
    token_id = issued.stdout.split()[1]
    listed = _run(places, "token", "list")
    assert listed.returncode == 0 and token_id in listed.stdout
    assert _run(places, "token", "revoke", token_id).returncode == 0
    other = _run(places, "token", "issue", "--provider", _other_provider())
    assert other.returncode == 1 and "no provider" in other.stderr  # not in *this* catalogue
    assert (places["data"] / "pathways.db").exists()
    assert not (places["cwd"] / ".data").exists()


def test_catalogue_commands_use_the_global_catalogue_dir(places: dict[str, Path]) -> None:
    listed = _run(places, "catalog")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.strip().splitlines()[1:]
    assert [row.split()[0] for row in rows] == [ONLY]
    assert _run(places, "show", ONLY).returncode == 0
    missing = _run(places, "show", "hip-replacement-d2a")
    assert missing.returncode == 1 and "hip-replacement-d2a" in missing.stderr
    assert not (places["cwd"] / ".data").exists()


def test_engine_commands_use_the_global_options(
    places: dict[str, Path], dev_env: WorkflowEnvironment
) -> None:
    address = dev_env.client.service_client.config.target_host
    setup = _run(places, "setup", extra=("--temporal-address", address))
    assert setup.returncode == 0, setup.stderr
    assert (places["data"] / "pathways.db").exists()
    refused = _run(places, "start", "hip-replacement-d2a", "--nhs-number", "9434765919",
                   extra=("--temporal-address", f"127.0.0.1:{free_port()}"))
    assert refused.returncode == 2 and "hip-replacement-d2a" in refused.stderr
    for reading in ("list", "inbox"):
        done = _run(places, reading)
        assert done.returncode == 0, done.stderr
    unknown = _run(places, "resume", "pw-0000000000000000", extra=("--temporal-address", address))
    assert unknown.returncode == 2, unknown.stderr
    for offline in (("validate", str(places["catalogue"])), ("schema",)):
        assert _run(places, *offline).returncode == 0
    assert not (places["cwd"] / ".data").exists()


def test_an_invalid_setting_is_named_without_its_value(places: dict[str, Path]) -> None:
    env = _clean_env() | {"PATHWAYS_METRICS_PORT": "s3cr3t-value"}
    done = subprocess.run(
        [PATHWAYS, "--data-dir", str(places["data"]), "worker"],
        cwd=places["cwd"], env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "PATHWAYS_METRICS_PORT" in done.stderr
    assert "s3cr3t-value" not in done.stdout + done.stderr
