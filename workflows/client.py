"""Client side of the engine: connect, start a pathway, and read refusals back.

Shared by the worker, the API and the CLI so that every process talks to Temporal the same way.
"""

from __future__ import annotations

import secrets

from temporalio.client import Client, TLSConfig, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.runtime import Runtime

from pathways.commands import Refusal
from pathways.model import PathwayDefinition
from pathways.settings import Settings
from pathways.state import Patient
from workflows import search
from workflows.codec import data_converter
from workflows.pathway import REFUSAL, PathwayInput, PathwayWorkflow


def _tls(settings: Settings) -> TLSConfig | bool:
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        return TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    return settings.temporal_tls


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """Connect with the one data converter: pydantic payloads, encrypted by the payload codec.

    Raises KeysUnavailable (a one-line CommandFailed) when the encryption keys are missing.
    """
    converter = data_converter(settings)
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.namespace,
        data_converter=converter,
        tls=_tls(settings),
        api_key=api_key,
        runtime=runtime,
    )


def new_pathway_id() -> str:
    """Random, so a workflow id never reveals who the pathway is for."""
    return f"pw-{secrets.token_hex(8)}"


async def start_pathway(
    client: Client,
    settings: Settings,
    definition: PathwayDefinition,
    patient: Patient,
    pathway_id: str | None = None,
    memo: dict[str, str] | None = None,
) -> str:
    """Start a pathway on the pinned definition; returns its id (the workflow id).

    A caller-derived `pathway_id` makes the start idempotent: the id can be used once, ever
    (REJECT_DUPLICATE), so a retried start raises WorkflowAlreadyStartedError instead of
    starting a second pathway; `memo` lets the caller tell a retry from a different request.
    """
    pathway_id = pathway_id or new_pathway_id()
    patient_key = settings.patient_key(patient.nhs_number)
    await client.start_workflow(
        PathwayWorkflow.run,
        PathwayInput(
            definition=definition,
            patient=patient,
            patient_key=patient_key,
            public_base_url=settings.base_url,
            search_attributes=settings.search_attributes,
            notify_give_up_after=settings.webhook_give_up_after,
        ),
        id=pathway_id,
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        search_attributes=(
            search.initial(definition, patient_key) if settings.search_attributes else None
        ),
        static_summary=f"{definition.title} ({definition.key})",
        memo=memo,
    )
    return pathway_id


def refusal_of(error: BaseException) -> Refusal | None:
    """The engine's Refusal behind a failed Update, or None if it failed for another reason."""
    cause = error.cause if isinstance(error, WorkflowUpdateFailedError) else error
    if isinstance(cause, ApplicationError) and cause.type == REFUSAL and cause.details:
        detail = cause.details[0]
        if isinstance(detail, dict):
            return Refusal(str(detail.get("kind", "conflict")), list(detail.get("problems", [])))
    return None
