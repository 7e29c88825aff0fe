"""schemathesis, driven by /openapi.json alone, finds no 5xx and no response outside the schema."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import RunningApi
from tests.api.flow import start_pathway

pytestmark = pytest.mark.devserver

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
)


async def _fuzz(api: RunningApi, token: str, tmp_path: Path, *only: str) -> tuple[int, str]:
    command = [
        SCHEMATHESIS, "run", f"{api.base_url}/openapi.json",
        "--checks", CHECKS,
        "--header", f"Authorization: Bearer {token}",
        "--max-examples", "15",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--generation-database", "none",
        "--seed", "20261123",
        "--workers", "1",  # 2 threads crashed schemathesis itself (CPython ast.parse race)
        "--request-timeout", "30",
        "--report-dir", str(tmp_path),
        "--no-color",
        *only,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    return process.returncode or 0, output.decode()


async def test_the_coordinator_api_survives_schema_driven_fuzzing(
    api: RunningApi, http: httpx.AsyncClient, coordinator: dict[str, str], tmp_path: Path
) -> None:
    await start_pathway(http, coordinator)  # something to list, read and act on
    code, output = await _fuzz(api, coordinator["Authorization"].removeprefix("Bearer "), tmp_path)
    assert code == 0, output[-6000:]


async def test_the_fhir_api_survives_schema_driven_fuzzing_as_a_provider(
    api: RunningApi, tmp_path: Path
) -> None:
    token = api.provider_token("elmshire-elective-ortho-centre")
    code, output = await _fuzz(api, token, tmp_path, "--include-path-regex", "^/fhir")
    assert code == 0, output[-6000:]
