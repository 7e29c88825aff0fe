"""The API's door to the durable engine: Queries for reads, Updates for changes, with deadlines.

Every call has a deadline. A read that misses it changed nothing. A change that misses it may
still be applied later (Temporal keeps an admitted Update until a worker takes it), so the answer
is 503 "outcome unknown: retry the same request": the retry carries the same deterministic Update
id (or start id) and is applied once. Refusals come back as `ApiError`s with the engine's own
problem list.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable
from contextlib import suppress
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from api.problems import ApiError, outcome_unknown, unavailable
from pathways.model import PathwayDefinition
from pathways.settings import Settings
from pathways.state import PathwayState, Patient
from workflows import search
from workflows.client import connect, refusal_of, start_pathway
from workflows.pathway import PathwayWorkflow

T = TypeVar("T")
R = TypeVar("R")

START_REQUEST = "pathways-start-request"
"""Memo key of a keyed start: the keyed hash of the request, to tell a retry from a misuse."""


def update_id(name: str, pathway_id: str, actor: str, command: BaseModel, basis: str) -> str:
    """Deterministic Update id: a retried request is applied once, a new request gets a new id.

    `basis` separates requests that are alike but not repeats (e.g. the handover version the
    provider acted on, or a client's Idempotency-Key).
    """
    body = json.dumps(command.model_dump(mode="json"), sort_keys=True)
    digest = hashlib.sha256(f"{name}\n{pathway_id}\n{actor}\n{basis}\n{body}".encode())
    return f"{name}-{digest.hexdigest()[:32]}"


_DEFINITIONS: dict[str, PathwayDefinition] = {}
_DEFINITIONS_KEPT = 64


def state_from_query(raw: dict[str, Any]) -> PathwayState:
    """The Query's JSON as a PathwayState, its definition validated once per distinct definition.

    Every PUT reads the state first, and validating its definition (graph checks, every field
    and webhook URL) was a fifth of the API's CPU under load; the definition of a pathway never
    changes, so the validated one is reused (an immutable model) for equal JSON.
    """
    definition = raw.get("definition")
    key = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    validated = _DEFINITIONS.get(key)
    if validated is None:
        validated = PathwayDefinition.model_validate_json(key)
        if len(_DEFINITIONS) >= _DEFINITIONS_KEPT:
            _DEFINITIONS.clear()
        _DEFINITIONS[key] = validated
    return PathwayState.model_validate({**raw, "definition": validated})


class Gateway:
    """Talks to pathway workflows on behalf of HTTP requests."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.settings = settings
        self._client = client

    @classmethod
    async def connect(cls, settings: Settings, client: Client | None = None) -> Gateway:
        """A gateway, connected now if Temporal is up (else on the first request)."""
        gateway = cls(settings, client)
        with suppress(ApiError):
            await gateway.client()
        return gateway

    async def client(self) -> Client:
        """The Temporal client; 503 while Temporal cannot be reached."""
        if self._client is None:
            try:
                call = connect(self.settings)
                self._client = await asyncio.wait_for(call, self.settings.update_timeout_seconds)
            except (RuntimeError, TimeoutError, OSError):
                raise unavailable("the pathway engine cannot be reached; nothing changed") from None
        return self._client

    async def _deadline(self, call: Awaitable[T], missing: ApiError, changes: bool = False) -> T:
        """Await an engine call within the API's deadline; every failure becomes an ApiError.

        `changes`: the call may change the pathway, so a missed deadline leaves its outcome
        unknown (it may be applied later) rather than "nothing changed".
        """
        try:
            return await asyncio.wait_for(call, self.settings.update_timeout_seconds)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            if changes:
                raise outcome_unknown() from None
            raise unavailable("the pathway engine did not answer in time; nothing changed") from None
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                raise missing from None
            if changes:
                raise outcome_unknown() from None
            raise unavailable("the pathway engine is unavailable; nothing changed") from None
        except WorkflowQueryFailedError:
            raise unavailable("the pathway could not be read; try again later") from None

    async def state(self, pathway_id: str) -> PathwayState:
        """The pathway's current state (strongly consistent: a Query on its workflow)."""
        handle = (await self.client()).get_workflow_handle(pathway_id)
        missing = ApiError(404, [f"no pathway {pathway_id}"])
        raw = await self._deadline(
            handle.query(PathwayWorkflow.state.__name__, result_type=dict), missing
        )
        return state_from_query(raw)

    async def states(self, pathway_ids: list[str]) -> dict[str, PathwayState]:
        """Several pathways' states, queried in parallel; pathways that no longer exist (e.g.
        past retention while the read model still lists them) are left out."""
        answers = await asyncio.gather(*map(self.state, pathway_ids), return_exceptions=True)
        found: dict[str, PathwayState] = {}
        for pathway_id, answer in zip(pathway_ids, answers, strict=True):
            if isinstance(answer, ApiError) and answer.status == 404:
                continue
            if isinstance(answer, BaseException):
                raise answer
            found[pathway_id] = answer
        return found

    async def update(
        self,
        pathway_id: str,
        method: UpdateMethodMultiParam[[Any, Any], R],
        command: BaseModel,
        basis: str,
    ) -> R:
        """Apply one command as an Update; refusals raise ApiError with every problem."""
        handle = (await self.client()).get_workflow_handle(pathway_id)
        actor = str(getattr(command, "actor", ""))
        name = getattr(method, "__name__", "update")  # the handler function: its Update name
        key = update_id(name, pathway_id, actor, command, basis)
        ended = ApiError(409, [f"pathway {pathway_id} has ended"])
        try:
            call = handle.execute_update(method, command, id=key)
            return await self._deadline(call, ended, changes=True)
        except ApiError as error:
            if error is ended:  # no running workflow: tell a finished pathway from none at all
                await self._deadline(handle.describe(), ApiError(404, [f"no pathway {pathway_id}"]))
            raise
        except WorkflowUpdateFailedError as error:
            refusal = refusal_of(error)
            if refusal is None:
                raise ApiError(409, ["the pathway refused the change"]) from None
            raise ApiError.from_refusal(refusal) from None

    async def start(
        self,
        definition: PathwayDefinition,
        patient: Patient,
        *,
        idempotency_key: str | None = None,
        caller: str = "",
        allow_duplicate: bool = False,
    ) -> str:
        """Start a pathway; returns its id.

        With an `idempotency_key` the pathway id is derived from the key and the caller, so a
        retry returns the same pathway; the same key with a different request is 422. Unless
        `allow_duplicate`, a running pathway of the same definition for the same patient (found
        through the keyed patient hash, never the NHS number) is 409 naming that pathway.
        """
        client = await self.client()
        request = self._start_fingerprint(definition, patient, allow_duplicate)
        pathway_id = None
        if idempotency_key is not None:
            pathway_id = self.keyed_pathway_id(caller, idempotency_key)
            if await self._started_before(pathway_id, request):
                return pathway_id
        if not allow_duplicate:
            await self._refuse_duplicate(definition, patient)
        call = start_pathway(
            client, self.settings, definition, patient, pathway_id, {START_REQUEST: request}
        )
        try:
            return await self._deadline(call, ApiError(409, ["the pathway exists"]), changes=True)
        except WorkflowAlreadyStartedError:  # a concurrent retry with the same key won the race
            if pathway_id is not None and await self._started_before(pathway_id, request):
                return pathway_id
            raise ApiError(409, ["a pathway with this id exists"]) from None

    def keyed_pathway_id(self, caller: str, idempotency_key: str) -> str:
        """The pathway id a keyed start uses: stable per caller and key, revealing neither."""
        text = f"start\n{caller}\n{idempotency_key}".encode()
        return f"pw-{hmac.new(self.settings.key, text, hashlib.sha256).hexdigest()[:16]}"

    def _start_fingerprint(
        self, definition: PathwayDefinition, patient: Patient, allow_duplicate: bool
    ) -> str:
        """Keyed hash of what was asked for: tells a retry from a different request under the
        same key, without putting patient data in the workflow's memo."""
        body = json.dumps(
            [definition.id, definition.version, patient.model_dump(mode="json"), allow_duplicate],
            sort_keys=True,
        )
        return hmac.new(self.settings.key, body.encode(), hashlib.sha256).hexdigest()

    async def _started_before(self, pathway_id: str, request: str) -> bool:
        """True if this keyed pathway exists for the same request; 422 if for another one."""
        handle = (await self.client()).get_workflow_handle(pathway_id)
        absent = ApiError(404, ["absent"])
        try:
            description = await self._deadline(handle.describe(), absent)
        except ApiError as error:
            if error is absent:
                return False
            raise
        earlier = await description.memo_value(START_REQUEST, default=None)
        if earlier != request:
            raise ApiError(
                422,
                ["this Idempotency-Key was already used with a different request; "
                 "use a new key for a new request"],
            )
        return True

    async def _refuse_duplicate(self, definition: PathwayDefinition, patient: Patient) -> None:
        """409 if the same definition already runs for this patient (by the keyed hash)."""
        patient_key = self.settings.patient_key(patient.nhs_number)
        existing = await self._deadline(
            self._running_for(definition.id, patient_key), ApiError(404, ["absent"])
        )
        if existing is not None:
            raise ApiError(
                409,
                [f"pathway {existing} of {definition.id} is already running for this patient; "
                 "act on it, or start with allow_duplicate: true"],
                {"Link": f'</api/pathways/{existing}>; rel="duplicate"'},
                {"pathway_id": existing, "definition_id": definition.id},
            )

    async def _running_for(self, definition_id: str, patient_key: str) -> str | None:
        """A running pathway of the definition for the patient key, from Temporal visibility
        (none found on a server without the custom search attributes)."""
        if not self.settings.search_attributes:
            return None
        query = (
            f"{search.DEFINITION.name} = '{definition_id}' AND "
            f"{search.PATIENT_KEY.name} = '{patient_key}' AND ExecutionStatus = 'Running'"
        )
        async for execution in (await self.client()).list_workflows(query, limit=1):
            return execution.id
        return None
