"""Builders shared by the engine tests: small pathway definitions and provider commands."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pathways.commands import ProviderCommand
from pathways.engine import PathwayRun
from pathways.events import Effects
from pathways.model import PathwayDefinition
from pathways.state import Patient, TaskStatus

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PATIENT = Patient(nhs_number="9434765919", name="Test Patient", birth_date="1950-01-01")
HOOK = "http://127.0.0.1:8765/hook"

ROLES: list[dict[str, Any]] = [
    {
        "id": "gp",
        "title": "GP practice",
        "providers": [
            {"id": "gp-a", "name": "GP A", "webhook": HOOK},
            {"id": "gp-b", "name": "GP B"},
            {"id": "gp-c", "name": "GP C", "webhook": HOOK},
        ],
    },
    {
        "id": "nurse",
        "title": "Community nursing",
        "providers": [
            {"id": "nurse-a", "name": "Nursing A", "webhook": HOOK},
            {"id": "nurse-b", "name": "Nursing B"},
        ],
    },
    {"id": "lab", "title": "Pathology", "providers": [{"id": "lab-a", "name": "Lab A"}]},
]


def step(step_id: str, role: str = "gp", after: tuple[str, ...] = (), *,
         accept: str = "PT4H", complete: str = "P2D", **extra: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "title": step_id.replace("-", " ").title(),
        "role": role,
        "after": list(after),
        "sla": {"accept_within": accept, "complete_within": complete},
        **extra,
    }


def definition(*steps: dict[str, Any], escalation: list[dict[str, Any]] | None = None
               ) -> PathwayDefinition:
    return PathwayDefinition.model_validate(
        {
            "id": "test-pathway",
            "version": 3,
            "title": "Test pathway",
            "lead_provider": {"id": "lead", "name": "Lead provider"},
            "roles": ROLES,
            "escalation": escalation or [],
            "steps": list(steps),
        }
    )


def start(defn: PathwayDefinition, now: datetime = T0) -> PathwayRun:
    return PathwayRun.begin("pw-test", defn, PATIENT, now)


def provider_of(run: PathwayRun, handover_id: str) -> str:
    return run.state.handovers[handover_id].provider_id


def command(run: PathwayRun, handover_id: str, status: TaskStatus | str, *,
            provider: str | None = None, output: dict[str, Any] | None = None,
            reason: str | None = None, version: int | None = None) -> ProviderCommand:
    provider_id = provider or provider_of(run, handover_id)
    return ProviderCommand(
        handover_id=handover_id,
        provider_id=provider_id,
        status=TaskStatus(status),
        output=output or {},
        reason=reason,
        expected_version=version,
        actor=f"provider:{provider_id}",
    )


def complete(run: PathwayRun, handover_id: str, now: datetime,
             output: dict[str, Any] | None = None) -> None:
    run.apply_provider(command(run, handover_id, "completed", output=output), now)


def kinds(effects: Effects) -> list[str]:
    return [e.kind.value for e in effects.events]
