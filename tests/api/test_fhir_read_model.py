"""The read model behind FHIR search and history, on real SQLite and PostgreSQL: code and _id
filters, newest-first pages continued by cursor, and every recorded Task version newest first."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from activities.store import EventStore
from pathways.elements import Provider
from pathways.events import HandoverRow, RecordBatch, TaskVersion
from tests.activities.test_event_store import T0, handover, pathway


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fhir.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    event_store = EventStore(url)
    event_store.migrate()
    yield event_store
    event_store.close()


def _ids(found: list[tuple[HandoverRow, dict[str, Any] | None]]) -> list[str]:
    return [row.task_id for row, _ in found]


def test_code_id_and_newest_first_pages(store: EventStore) -> None:
    for n in range(6):
        step = "triage" if n % 2 else "review"
        row = handover(f"pw-{n}", step=step, updated_at=T0 + timedelta(minutes=n))
        store.record(RecordBatch(handovers=[row], pathway=pathway(f"pw-{n}")))
    store.record(RecordBatch(handovers=[handover("pw-9", step="triage", provider="gp-2")],
                             pathway=pathway("pw-9")))
    found, total = store.search_task_resources("gp-1", None, [], 10, 0, steps=["triage"])
    assert (total, _ids(found)) == (3, ["pw-1.triage.1", "pw-3.triage.1", "pw-5.triage.1"])
    assert store.search_task_resources("gp-1", None, [], 10, 0, steps=[])[1] == 0
    wanted = ["pw-0.review.1", "pw-5.triage.1", "pw-9.triage.1"]
    found, total = store.search_task_resources("gp-1", None, [], 10, 0, task_ids=wanted)
    assert (total, _ids(found)) == (2, ["pw-0.review.1", "pw-5.triage.1"]), "own Tasks only"
    newest, total = store.search_task_resources("gp-1", None, [], 2, 0, newest_first=True)
    assert total == 6 and _ids(newest) == ["pw-5.triage.1", "pw-4.review.1"]
    last = newest[-1][0]
    following, total = store.search_task_resources(
        "gp-1", None, [], 10, 0, (last.updated_at, last.task_id), newest_first=True
    )
    assert total == 6
    assert _ids(following) == ["pw-3.triage.1", "pw-2.review.1", "pw-1.triage.1", "pw-0.review.1"]


def test_task_history_is_every_recorded_version_newest_first(store: EventStore) -> None:
    versions = [
        TaskVersion(task_id="pw-1.gp-review.1", version=v, task={"id": "x", "v": v})
        for v in (1, 2, 4)
    ]
    row = handover("pw-1", version=4)
    store.record(RecordBatch(handovers=[row], tasks=versions, pathway=pathway("pw-1")))
    assert [v for v, _ in store.task_history("pw-1.gp-review.1")] == [4, 2, 1]
    assert store.task_history("pw-1.gp-review.1")[0][1] == {"id": "x", "v": 4}
    assert [v for v, _ in store.task_history("pw-1.gp-review.1", limit=2)] == [4, 2]
    assert store.task_history("pw-2.gp-review.1") == []


@pytest.mark.parametrize("code", ["rxq01", "RX", "RXQ-01", "ABCDEFGHI", ""])
def test_a_providers_ods_code_must_look_like_one(code: str) -> None:
    with pytest.raises(ValidationError, match="ods_code"):
        Provider(id="p", name="P", ods_code=code)


def test_ods_codes_of_trusts_sites_and_practices_are_accepted() -> None:
    assert [Provider(id="p", name="P", ods_code=c).ods_code for c in ("RXH", "RXH01", "Y05123")]
