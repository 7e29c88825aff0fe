"""Which FHIR Task status moves a provider may make (HL7 SDOH Clinical Care referral Task).

The core FHIR state machine is only "typical"; this profile is enforceable. The requester
(the orchestrator) alone sets cancelled, so it is absent here.
"""

from __future__ import annotations

from collections.abc import Mapping

from pathways.commands import Refusal
from pathways.state import TaskStatus

_S = TaskStatus

PROVIDER_MOVES: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    _S.REQUESTED: frozenset({_S.ACCEPTED, _S.REJECTED, _S.COMPLETED}),
    _S.ACCEPTED: frozenset({_S.IN_PROGRESS, _S.ON_HOLD, _S.COMPLETED, _S.FAILED}),
    _S.IN_PROGRESS: frozenset({_S.ON_HOLD, _S.COMPLETED, _S.FAILED}),
    _S.ON_HOLD: frozenset({_S.IN_PROGRESS, _S.COMPLETED, _S.FAILED}),
}
"""Provider-settable moves; completion straight from requested implies acceptance."""


def provider_may_move(current: TaskStatus, target: TaskStatus) -> bool:
    return target in PROVIDER_MOVES.get(current, frozenset())


def check_provider_move(handover_id: str, current: TaskStatus, target: TaskStatus) -> None:
    """Raise Refusal("conflict") unless a provider may move the handover from current to target."""
    if not provider_may_move(current, target):
        raise Refusal(
            "conflict",
            [f"cannot move handover {handover_id} from {current.value} to {target.value}"],
        )
