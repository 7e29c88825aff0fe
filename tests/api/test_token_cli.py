"""`pathways token`: a token issued on the command line works on the API until revoked."""

from __future__ import annotations

import asyncio
import subprocess

import httpx
import pytest

from tests.api.conftest import RunningApi
from tests.api.flow import bearer
from tests.ops.processes import PATHWAYS

pytestmark = pytest.mark.devserver



async def _pathways(api: RunningApi, *args: str) -> subprocess.CompletedProcess[str]:
    command = [PATHWAYS, "token", *args, "--event-store-url", api.settings.event_store]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60
    )


async def test_an_issued_token_works_until_revoked(
    api: RunningApi, http: httpx.AsyncClient
) -> None:
    issued = await _pathways(api, "issue", "--coordinator", "cli-coordinator")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    token_id = issued.stdout.split()[1]
    assert (await http.get("/api/catalogue", headers=bearer(token))).status_code == 200

    listed = await _pathways(api, "list")
    line = next(line for line in listed.stdout.splitlines() if line.startswith(token_id))
    assert "coordinator:cli-coordinator" in line and "live" in line
    assert token not in listed.stdout

    by_id = await _pathways(api, "revoke", token_id)
    assert by_id.returncode == 0
    assert (await http.get("/api/catalogue", headers=bearer(token))).status_code == 401
    again = await _pathways(api, "revoke", token)
    assert again.returncode == 1 and "no such live token" in again.stderr


async def test_a_provider_token_acts_for_that_provider_only(
    api: RunningApi, http: httpx.AsyncClient
) -> None:
    issued = await _pathways(api, "issue", "--provider", "elmshire-care-transfer-hub")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    unknown_task = "/fhir/Task/nonsense"  # answered without the engine: 404 once authenticated
    assert (await http.get(unknown_task, headers=bearer(token))).status_code == 404
    assert (await http.get("/api/catalogue", headers=bearer(token))).status_code == 403
    revoked = await _pathways(api, "revoke", token)
    assert revoked.returncode == 0
    assert (await http.get(unknown_task, headers=bearer(token))).status_code == 401


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("issue", "--provider", "no-such-provider"), 1, "no provider 'no-such-provider'"),
        (("issue", "--provider", "a", "--coordinator", "b"), 2, "exactly one of"),
        (("issue",), 2, "exactly one of"),
        (("revoke", "tok-000000000000"), 1, "no such live token"),
    ],
)
async def test_bad_token_commands_fail_clearly(
    api: RunningApi, args: tuple[str, ...], code: int, message: str
) -> None:
    result = await _pathways(api, *args)
    assert result.returncode == code and message in result.stderr
