"""The API reads each pathway's state (Query) before every PUT: its cheaper decoding, which
validates a definition once and reuses it, must give exactly the state the full decoding gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from temporalio.contrib.pydantic import pydantic_data_converter

from api.gateway import state_from_query
from pathways.catalogue import load_catalogue
from pathways.commands import AddNote, ProviderCommand
from pathways.demo import example_output
from pathways.engine import PathwayRun
from pathways.settings import SHIPPED_CATALOGUE
from pathways.state import PathwayState, Patient, TaskStatus

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _runs() -> list[PathwayRun]:
    """Every shipped definition, started and moved on a few steps (data, notes, breaches)."""
    runs = []
    for n, definition in enumerate(load_catalogue(SHIPPED_CATALOGUE).all_versions()):
        patient = Patient(nhs_number="9434765919", name="Test Patient")
        run = PathwayRun.begin(f"pw-{n}", definition, patient, T0)
        now = T0
        for _ in range(3):
            open_ = [h for h in run.state.handovers.values() if h.is_open]
            if not open_:
                break
            h = open_[0]
            now += timedelta(hours=30)  # late: SLA breaches and escalations in the state
            run.tick(now)
            output = example_output(definition.step(h.step_id))
            run.apply_provider(ProviderCommand(
                handover_id=h.id, provider_id=h.provider_id, status=TaskStatus.COMPLETED,
                output=output, actor=f"provider:{h.provider_id}"), now)
        if not run.state.is_finished:
            run.apply_note(AddNote(text="called the patient", actor="coordinator:c1"), now)
        runs.append(run)
    return runs


def test_cheap_decoding_equals_full_decoding() -> None:
    for run in _runs():
        payload = pydantic_data_converter.payload_converter.to_payloads([run.state])[0]
        full = PathwayState.model_validate_json(payload.data)
        cheap = state_from_query(json.loads(payload.data))
        again = state_from_query(json.loads(payload.data))
        assert cheap == full
        assert cheap.model_dump_json() == full.model_dump_json()
        assert again.definition is cheap.definition  # validated once, reused
