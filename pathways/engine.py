"""PathwayRun: the pure state machine of one patient's pathway (no Temporal import).

The workflow is a thin durable shell around this class: it passes in the current time, calls
`check_*` from Update validators and `apply_*` from Update handlers, asks `next_wakeup()` for its
durable timer and calls `tick()` when it fires, then hands the returned `Effects` to activities.
Every method is deterministic: same state, same inputs, same result.
"""

from __future__ import annotations

from datetime import datetime

from pathways import commands as cmd
from pathways.events import Effects
from pathways.model import PathwayDefinition
from pathways.state import Handover, Patient, PathwayState


class PathwayRun:
    """Wraps a PathwayState and owns every change to it."""

    def __init__(self, state: PathwayState) -> None:
        self.state = state

    @classmethod
    def begin(
        cls, pathway_id: str, definition: PathwayDefinition, patient: Patient, now: datetime
    ) -> tuple[PathwayRun, Effects]:
        """New pathway: dispatch every step with no dependencies (skipping false conditions)."""
        raise NotImplementedError

    # --- timers -------------------------------------------------------------------------
    def next_wakeup(self) -> datetime | None:
        """Earliest future moment something time-driven happens (rung, due time, recurrence)."""
        raise NotImplementedError

    def tick(self, now: datetime) -> Effects:
        """Fire everything due at or before `now`, in order."""
        raise NotImplementedError

    # --- provider -----------------------------------------------------------------------
    def check_provider(self, command: cmd.ProviderCommand) -> None:
        """Raise cmd.Refusal unless the command may be applied (idempotent repeats pass)."""
        raise NotImplementedError

    def apply_provider(self, command: cmd.ProviderCommand, now: datetime) -> tuple[Handover, Effects]:
        raise NotImplementedError
