"""The API's door to the durable engine: Queries for reads, Updates for changes, with deadlines.

Every call has a deadline: with no worker an Update would block until the client gives up, so we
answer 503 (nothing changed, retry later) instead. Refusals come back as `ApiError`s with the
engine's own problem list.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable
from contextlib import suppress
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from api.problems import ApiError, unavailable
from pathways.model import PathwayDefinition
from pathways.settings import Settings
from pathways.state import PathwayState, Patient
from workflows.client import connect, refusal_of, start_pathway
from workflows.pathway import PathwayWorkflow

T = TypeVar("T")
R = TypeVar("R")


def update_id(name: str, pathway_id: str, actor: str, command: BaseModel, basis: str) -> str:
    """Deterministic Update id: a retried request is applied once, a new request gets a new id.

    `basis` separates requests that are alike but not repeats (e.g. the handover version the
    provider acted on, or a client's Idempotency-Key).
    """
    body = json.dumps(command.model_dump(mode="json"), sort_keys=True)
    digest = hashlib.sha256(f"{name}\n{pathway_id}\n{actor}\n{basis}\n{body}".encode())
    return f"{name}-{digest.hexdigest()[:32]}"


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

    async def _deadline(self, call: Awaitable[T], missing: ApiError) -> T:
        try:
            return await asyncio.wait_for(call, self.settings.update_timeout_seconds)
        except TimeoutError:
            raise unavailable(
                "the pathway engine did not answer in time; nothing changed"
            ) from None
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                raise missing from None
            raise unavailable("the pathway engine is unavailable; nothing changed") from None
        except WorkflowQueryFailedError:
            raise unavailable("the pathway could not be read; try again later") from None

    async def state(self, pathway_id: str) -> PathwayState:
        """The pathway's current state (strongly consistent: a Query on its workflow)."""
        handle = (await self.client()).get_workflow_handle(pathway_id)
        missing = ApiError(404, [f"no pathway {pathway_id}"])
        return await self._deadline(handle.query(PathwayWorkflow.state), missing)

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
            return await self._deadline(handle.execute_update(method, command, id=key), ended)
        except ApiError as error:
            if error is ended:  # no running workflow: tell a finished pathway from none at all
                await self._deadline(handle.describe(), ApiError(404, [f"no pathway {pathway_id}"]))
            raise
        except WorkflowUpdateFailedError as error:
            refusal = refusal_of(error)
            if refusal is None:
                raise ApiError(409, ["the pathway refused the change"]) from None
            raise ApiError.from_refusal(refusal) from None

    async def start(self, definition: PathwayDefinition, patient: Patient) -> str:
        call = start_pathway(await self.client(), self.settings, definition, patient)
        try:
            return await asyncio.wait_for(call, self.settings.update_timeout_seconds)
        except (TimeoutError, RPCError):
            raise unavailable("the pathway engine is unavailable; no pathway started") from None
