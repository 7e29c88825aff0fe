"""The pathway workflow's input, result and carried effects, as pydantic models.

Outside workflows/pathway.py and passed through the sandbox on purpose: the sandbox re-runs the
workflow's module for every workflow instance it creates (each start, and each wake-up of a
pathway evicted from the worker's cache), and building these models' validators, which embed
the whole definition and state schemas, was most of that cost (measured: about 13 of the 17 ms a
re-run of the module took on this machine; bench/scale.py). Pure data, no Temporal import: safe to share.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from pathways.events import Notification, RecordBatch
from pathways.model import PathwayDefinition
from pathways.state import Handover, PathwayState, PathwayStatus, Patient

NOTIFY_GIVE_UP_AFTER = timedelta(hours=24)


class Outgoing(BaseModel):
    """One engine step's effects not yet written to the event store: the batch, and the
    notifications to send once the batch (which holds their Task bodies) is written."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    batch: RecordBatch
    notifications: list[Notification] = []


class PathwayInput(BaseModel):
    """Start (or continue-as-new) input: the pinned definition, the patient, and carried state
    (the run's state, event-store batches not yet written, notifications not yet delivered).
    Validation errors hide the input: it holds the patient, and a failed workflow task is logged."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    definition: PathwayDefinition
    patient: Patient
    patient_key: str | None = None
    public_base_url: str = ""
    search_attributes: bool = True
    state: PathwayState | None = None
    max_history_events: int | None = None
    unwritten: list[Outgoing] = []
    undelivered: list[Notification] = []
    notify_give_up_after: timedelta = NOTIFY_GIVE_UP_AFTER


class ProviderAnswer(BaseModel):
    """A provider move's answer: the handover as that provider now sees it, and its FHIR Task
    rendered in the workflow at that version (None if rendering failed), so that the API
    answers a PUT without reading the pathway before or after."""

    model_config = ConfigDict(hide_input_in_errors=True)

    handover: Handover
    task: dict[str, Any] | None


class PathwayResult(BaseModel):
    pathway_id: str
    status: PathwayStatus
    ended_at: datetime | None
    handovers: int
    refused_deliveries: int
    escalations: int
