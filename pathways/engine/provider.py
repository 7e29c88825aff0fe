"""Provider commands: FHIR Task status moves, idempotent retries and the contract at the door."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pathways import commands as cmd
from pathways.commands import Refusal
from pathways.contract import check_fields
from pathways.engine import broker, escalations, flow
from pathways.engine.base import REMEMBERED_COMMANDS, RunBase
from pathways.events import EventKind
from pathways.lifecycle import check_provider_move
from pathways.state import Handover, TaskStatus


def check_provider(run: RunBase, c: cmd.ProviderCommand) -> None:
    """Raise Refusal unless the command may be applied (idempotent repeats pass)."""
    handover = run.state.handovers.get(c.handover_id)
    _check(run, c, handover, None if handover is None else _prepare(run, handover, c))


def apply_provider(run: RunBase, c: cmd.ProviderCommand, now: datetime) -> Handover:
    """Apply a provider's status move; a non-conforming delivery is counted, then refused."""
    handover = run.state.handovers.get(c.handover_id)
    prepared = None if handover is None else _prepare(run, handover, c)
    if _check(run, c, handover, prepared):
        assert handover is not None
        return handover
    assert handover is not None and prepared is not None
    output, problems, fingerprint = prepared
    if problems:
        _refuse_delivery(run, handover, problems, c.actor, now)
    assert fingerprint is not None  # an output without completion was refused by _check
    handover.applied_commands = [*handover.applied_commands, fingerprint][-REMEMBERED_COMMANDS:]
    _move(run, handover, c, output, now)
    return handover


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
"""json.dumps(..., sort_keys=True, separators=(",", ":"), default=str), built once: the same
text, so fingerprints already in recorded states still match."""

_Prepared = tuple[dict[str, Any], list[tuple[str, str]], str | None]


def _prepare(run: RunBase, handover: Handover, c: cmd.ProviderCommand) -> _Prepared:
    """(output as kept, contract problems, fingerprint) of the command, worked out once: the
    check and the apply both need them. No fingerprint when it cannot be a repeat (a delivery
    with problems, an output without completion)."""
    if c.status is TaskStatus.COMPLETED:
        output, problems = check_fields(run.step(handover), c.output)
        return output, problems, None if problems else _fingerprint(c, output)
    return {}, [], None if c.output else _fingerprint(c, {})


def _check(run: RunBase, c: cmd.ProviderCommand, handover: Handover | None,
           prepared: _Prepared | None) -> bool:
    """Raise Refusal unless the command may be applied; True when it is a repeat of the
    latest command this provider had applied to the handover (acknowledged, not re-applied)."""
    if handover is not None and prepared is not None and _is_repeat(handover, c, prepared):
        return True
    if handover is None or handover.provider_id != c.provider_id:
        raise Refusal("not-found", [f"handover {c.handover_id} not found"])
    problems = _malformed(c)
    if problems:
        raise Refusal("invalid", problems)
    run.require_active()
    if c.expected_version is not None and c.expected_version != handover.version:
        raise Refusal(
            "conflict",
            [f"handover {handover.id} is at version {handover.version}, not {c.expected_version}"],
        )
    check_provider_move(handover.id, handover.status, c.status)
    if c.status is TaskStatus.COMPLETED and c.output:
        _check_output_budget(run, c.output)
    return False


def _check_output_budget(run: RunBase, output: dict[str, Any]) -> None:
    kept = sum(cmd.json_size(h.output) for h in run.state.handovers.values())
    if kept + cmd.json_size(output) > cmd.PATHWAY_OUTPUT_BUDGET:
        raise Refusal("invalid", [
            f"this pathway keeps at most {cmd.PATHWAY_OUTPUT_BUDGET // 1024} KiB of handover "
            "data: send large documents as references (url)"])


def _fingerprint(command: cmd.ProviderCommand, output: dict[str, Any]) -> str:
    """'{provider}:{sha256}' identity of a provider command (the If-Match version is not part).

    The provider prefix lets a retry be matched against that provider's latest command only:
    a later genuine repeat of an earlier move (in-progress, on-hold, in-progress) is not a retry.
    """
    payload = {"status": command.status.value, "output": output, "reason": command.reason}
    text = _CANONICAL.encode(payload)
    return f"{command.provider_id}:{hashlib.sha256(text.encode()).hexdigest()}"


def _latest_by(handover: Handover, provider_id: str) -> str | None:
    prefix = f"{provider_id}:"
    return next((f for f in reversed(handover.applied_commands) if f.startswith(prefix)), None)


def _is_repeat(handover: Handover, c: cmd.ProviderCommand, prepared: _Prepared) -> bool:
    """Identical to the latest command this provider had applied to the handover."""
    fingerprint = prepared[2]
    return fingerprint is not None and fingerprint == _latest_by(handover, c.provider_id)


def _malformed(c: cmd.ProviderCommand) -> list[str]:
    problems = []
    if c.status in (TaskStatus.REJECTED, TaskStatus.FAILED) and not (c.reason or "").strip():
        problems.append(f"a {c.status.value} handover needs a reason")
    if c.output and c.status is not TaskStatus.COMPLETED:
        problems.append("output is only accepted with status completed")
    return problems


def _refuse_delivery(
    run: RunBase, handover: Handover, problems: list[tuple[str, str]], actor: str, now: datetime
) -> None:
    """Count the refused delivery in the state and the event log (field names and rules, never
    values), then refuse it."""
    handover.refused_deliveries += 1
    run.state.updated_at = now
    detail = {
        "fields": sorted({name for name, _ in problems}),
        "problems": [problem for _, problem in problems],
    }
    run.emit(EventKind.REFUSED_DELIVERY, now, handover=handover, actor=actor, detail=detail)
    raise Refusal("non-conforming", [problem for _, problem in problems])


def _move(
    run: RunBase, handover: Handover, c: cmd.ProviderCommand, output: dict[str, Any],
    now: datetime,
) -> None:
    attempt = handover.attempts[-1]
    previous, target = handover.status, c.status
    detail: dict[str, Any] = {}
    if target is TaskStatus.ACCEPTED or (
        target is TaskStatus.COMPLETED and handover.accepted_at is None
    ):
        handover.accepted_at = attempt.accepted_at = now
    if target is TaskStatus.IN_PROGRESS and handover.started_at is None:
        handover.started_at = now
    if target is TaskStatus.COMPLETED:
        handover.completed_at = handover.ended_at = now
        handover.output = output
        broker.end_attempt(handover, now, "completed", None)
        detail = {"fields": sorted(output)}
    if target in (TaskStatus.REJECTED, TaskStatus.FAILED):
        handover.ended_at = now
        broker.end_attempt(handover, now, target.value, c.reason)
    # statusReason describes the status it comes with (why on hold, why rejected): kept with
    # every move, cleared by a move without one.
    handover.status_reason = c.reason
    if c.reason is not None:
        detail["reason"] = c.reason
    handover.status = target
    run.touch(handover, now)
    run.emit(_provider_event(previous, target), now, handover=handover, actor=c.actor,
             detail=detail)
    if target is TaskStatus.COMPLETED:
        escalations.resolve_automatically(run, handover, "completed", now)
        flow.after_completion(run, handover, now)
    elif target in (TaskStatus.REJECTED, TaskStatus.FAILED):
        broker.after_refusal(run, handover, now)


def _provider_event(previous: TaskStatus, target: TaskStatus) -> EventKind:
    """The event a provider's move records (on-hold back to in-progress is a resumption)."""
    if target is TaskStatus.IN_PROGRESS:
        return EventKind.RESUMED if previous is TaskStatus.ON_HOLD else EventKind.STARTED
    return {
        TaskStatus.ACCEPTED: EventKind.ACCEPTED,
        TaskStatus.ON_HOLD: EventKind.HELD,
        TaskStatus.COMPLETED: EventKind.COMPLETED,
        TaskStatus.REJECTED: EventKind.REJECTED,
        TaskStatus.FAILED: EventKind.FAILED,
    }[target]
