"""Patient data never reaches the logs: not in access logs (paths only), not in error logs."""

from __future__ import annotations

import logging

import httpx
import pytest
from temporalio.worker import Worker

from api.tokens import TokenStore
from pathways.settings import Settings
from tests.api.conftest import free_port, serve_in_thread
from tests.api.flow import bearer, read_task

pytestmark = pytest.mark.devserver

NHS_NUMBER = "401 023 2137"
NAME = "Zebedee Quartermaine"


async def test_starting_reading_and_refusing_log_no_patient_data(
    api_settings: Settings,
    worker: Worker,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings = api_settings.model_copy(update={"api_port": free_port()})
    served = serve_in_thread(settings, log_config=None, log_level="info", access_log=True)
    base_url = next(served)
    tokens = TokenStore(settings.event_store)
    coordinator = bearer(tokens.issue_coordinator("privacy"))
    provider = bearer(tokens.issue_provider("elmshire-elective-ortho-centre"))
    caplog.set_level(logging.DEBUG)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            patient = {"nhs_number": NHS_NUMBER, "name": NAME}
            started = await http.post(
                "/api/pathways",
                json={"definition": "hip-replacement-d2a", "patient": patient},
                headers=coordinator,
            )
            assert started.status_code == 201
            pathway_id = started.json()["id"]
            task = await read_task(http, f"{pathway_id}.hip-replacement.1", provider)
            assert task["for"]["display"] == NAME, "the owning provider does see the patient"
            assert (await http.get(f"/api/pathways/{pathway_id}", headers=coordinator)).is_success
            bad = {"nhs_number": NHS_NUMBER.replace("7", "8"), "name": NAME}
            refused = await http.post(
                "/api/pathways",
                json={"definition": "hip-replacement-d2a", "patient": bad},
                headers=coordinator,
            )
            assert refused.status_code == 422
            assert NHS_NUMBER.replace("7", "8") not in refused.text and NAME not in refused.text
    finally:
        served.close()
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert f"/fhir/Task/{pathway_id}.hip-replacement.1" in logged, "access log was captured"
    for secret in (NHS_NUMBER, NHS_NUMBER.replace(" ", ""), NAME, "Quartermaine"):
        assert secret not in logged
