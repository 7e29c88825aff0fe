"""The escalation inbox with many open escalations, over real HTTP: paged, each page with the
patients' names (from the read model's rendered Tasks, as the worklist), and "then next" lands
on the page that holds the escalation. Before paging, 1,000 open escalations rendered as one
page, and only the first 100 pathway ids (by id, not by order) had a name."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from activities.store import EventStore
from api.tokens import TokenStore
from bench.console_worklist import fill
from pathways.settings import Settings
from tests.api.conftest import serve_in_thread
from tests.ops.processes import free_port

PATHWAYS = 600  # one in ten escalated: 60 open escalations, two pages of 50 and 10
ITEM = re.compile(r'<li class="esc level-[^"]*" id="esc-(pw-[0-9a-f]+-\d+)"')


@pytest.fixture
def inbox(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An API on its own event store holding 60 open escalations; (base URL, coordinator token)."""
    served = settings.model_copy(update={
        "api_port": free_port(), "event_store_url": f"sqlite:///{tmp_path / 'inbox.db'}"})
    store = EventStore(served.event_store)
    store.migrate()
    fill(store, PATHWAYS)
    token = TokenStore(served.event_store)
    token.migrate()
    server = serve_in_thread(served, timeout_graceful_shutdown=2)
    base_url = next(server)
    yield base_url, token.issue_coordinator("casey")
    server.close()
    store.close()


def _signed_in(base_url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=30)
    client.get("/signin")
    done = client.post("/signin", data={"token": token,
                                        "csrf": client.cookies["pathways_signin"]})
    assert done.status_code == 303
    return client


def test_the_inbox_is_paged_with_every_name_and_next_lands_on_its_page(
    inbox: tuple[str, str],
) -> None:
    client = _signed_in(*inbox)
    try:
        first = client.get("/escalations")
        assert first.status_code == 200
        assert "60 open" in first.text and "Page 1 of 2" in first.text
        on_first = ITEM.findall(first.text)
        assert len(on_first) == 50
        assert "Name unavailable" not in first.text
        assert re.search(r">Patient \d+</a>", first.text)

        second = client.get("/escalations", params={"page": 2})
        on_second = ITEM.findall(second.text)
        assert len(on_second) == 10 and not set(on_second) & set(on_first)
        assert "Page 2 of 2" in second.text and "Name unavailable" not in second.text

        focused = client.get("/escalations", params={"focus": on_second[3]})
        assert ITEM.findall(focused.text) == on_second  # where "then next" lands

        for absurd in ("abc", "0", "-1", "99", "9" * 50):
            answer = client.get("/escalations", params={"page": absurd})
            assert answer.status_code == 200, absurd
            assert len(ITEM.findall(answer.text)) in (50, 10), absurd
    finally:
        client.close()
