"""What continue-as-new carries of unwritten batches stays small and complete."""

from __future__ import annotations

from pathways.events import Notification, NotificationKind, RecordBatch, TaskVersion
from tests.activities.test_event_store import T0, event, handover, pathway
from workflows.pathway import Outgoing, compact, merge_batches

TID = "pw-1.gp-review.1"


def outgoing(version: int, seq: int, notify: bool) -> Outgoing:
    notifications = [
        Notification(pathway_id="pw-1", handover_id="gp-review.1", provider_id="gp-1",
                     webhook="http://127.0.0.1/gp-1", kind=NotificationKind.REMINDER,
                     version=version)
    ] if notify else []
    batch = RecordBatch(
        events=[event("pw-1", seq, T0)],
        handovers=[handover("pw-1", version=version)],
        pathway=pathway("pw-1"),
        tasks=[TaskVersion(task_id=TID, version=version, task={"v": version})],
    )
    return Outgoing(batch=batch, notifications=notifications)


def test_merged_batches_keep_every_event_in_order_and_the_newest_rows() -> None:
    merged = merge_batches([outgoing(v, v, False).batch for v in (1, 2, 3)])
    assert [e.seq for e in merged.events] == [1, 2, 3]
    assert [row.version for row in merged.handovers] == [3]
    assert [t.version for t in merged.tasks] == [1, 2, 3]


def test_compacted_carry_keeps_renders_named_by_webhooks_and_the_latest() -> None:
    carried = compact([outgoing(1, 1, True), outgoing(2, 2, False), outgoing(3, 3, False),
                       outgoing(4, 4, True), outgoing(5, 5, False)])
    [one] = carried
    assert [e.seq for e in one.batch.events] == [1, 2, 3, 4, 5]
    assert [n.version for n in one.notifications] == [1, 4]
    assert sorted(t.version for t in one.batch.tasks) == [1, 4, 5]
