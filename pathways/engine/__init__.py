"""The pure state machine of one patient's pathway (no Temporal import), behind `PathwayRun`.

The workflow is a thin durable shell around `PathwayRun`: it passes in the current time, calls
`check_*` from Update validators and `apply_*` from Update handlers, asks `next_wakeup()` for its
durable timer and calls `tick()` when it fires, then drains `take_effects()` to activities.
Every method is deterministic: same state, same inputs, same result.

Where to change what (one module per concept; `run.py` only delegates):
- `clocks.py`: due times, the SLA agenda and timers, ladder rungs and breaches, extend, holds.
- `escalations.py`: escalation records (open, raise level, resolve), their commands, failed
  notifications.
- `broker.py`: attempts and reassignment (ladder, rejection, coordinator), which clocks restart.
- `provider.py`: provider status moves, idempotent retries, the delivery contract at the door.
- `flow.py`: which steps start, conditions, recurrence, dispatch of new handovers.
- `coordinator.py`: pathway-level commands: hold, resume, cancel, notes.
- `base.py`: the state, the outbox of effects (events, notifications) and shared look-ups.
"""

from pathways.engine.base import ENGINE, REMEMBERED_COMMANDS
from pathways.engine.escalations import REASON_LIMIT
from pathways.engine.run import PathwayRun

__all__ = ["ENGINE", "REASON_LIMIT", "REMEMBERED_COMMANDS", "PathwayRun"]
