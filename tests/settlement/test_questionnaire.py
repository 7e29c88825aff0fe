"""The patient's questionnaire by single-use link, over real HTTP (uvicorn) on SQLite and
PostgreSQL event stores holding real engine runs: the link issued at completion or on the
coordinator's request, the page without sign-in, the answer recorded as the pathway's outcome,
the link spent after one use, replaced or expired (a plain 410 page, never a 500), and an
unanswered questionnaire counting as the contract's default after its deadline."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from activities.store import EventStore
from api.tokens import TokenStore
from pathways.settings import Settings
from tests.api.conftest import free_port, serve_in_thread
from tests.conftest import make_settings
from tests.settlement.support import DAY, HOUR, MINUTE, PATIENT, Scenario, record

UCR, GP = "elmshire-ucr-central", "elmshire-central-pcn"
EXPIRES_IN = 8  # seconds: pw-soon's outcome deadline (and its link's expiry) from the start


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    url = (f"sqlite:///{tmp_path / 'pathways.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("postgres_database")))
    settings = make_settings(tmp_path, "127.0.0.1:1", api_port=free_port(),
                             update_timeout_seconds=1.0, event_store_url=url)
    store = EventStore(settings.event_store)
    store.migrate()
    now = datetime.now(UTC).replace(microsecond=0)
    # simple(): the pathway ends 1 hour + 1 day after it starts (the GP follow-up)
    run = HOUR + DAY
    scenarios = [
        Scenario("pw-new", start=now - run - 2 * HOUR).simple(),
        Scenario("pw-soon", start=now - run - 14 * DAY + timedelta(seconds=EXPIRES_IN)).simple(),
        Scenario("pw-old", start=now - run - 20 * DAY).simple(),
    ]
    open_one = Scenario("pw-open", start=now - 3 * HOUR)
    open_one.accept("urgent-response", now - 3 * HOUR + 5 * MINUTE)
    for s in [*scenarios, open_one]:
        for batch in s.batches:
            record(store, s, batch)
    store.close()
    server = serve_in_thread(settings)
    yield next(server), settings
    server.close()


def _claims(url: str) -> dict[str, object]:
    payload = url.rsplit("/", 1)[1].split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_the_patient_answers_once_by_link(served: tuple[str, Settings]) -> None:
    base_url, settings = served
    tokens = TokenStore(settings.event_store)
    coordinator = {"Authorization": f"Bearer {tokens.issue_coordinator('casey')}"}
    provider = {"Authorization": f"Bearer {tokens.issue_provider(UCR)}"}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        assert http.get("/api/settlement/pathways/pw-new/questionnaire-link",
                        headers=provider).status_code == 403
        # issued when the pathway completed (the first posting saw it complete)
        issued = http.get("/api/settlement/pathways/pw-new/questionnaire-link",
                          headers=coordinator)
        assert issued.status_code == 200, issued.text
        link = issued.json()
        assert link["issued_by"] == "ledger" and "/questionnaire/" in link["url"]
        assert set(_claims(link["url"])) == {"sub", "exp"}  # no patient data, no pathway id
        token = link["url"].rsplit("/", 1)[1]
        assert "pw-new" not in json.dumps(_claims(link["url"])) and PATIENT.nhs_number not in token
        page_url = "/questionnaire/" + token

        shown = http.get(page_url)  # no sign-in
        assert shown.status_code == 200, shown.text
        assert "Overall, how was your experience of our service?" in shown.text
        assert "Did you feel involved in decisions about your care?" in shown.text
        assert shown.headers["cache-control"] == "no-store"
        assert shown.headers["referrer-policy"] == "no-referrer"
        assert PATIENT.nhs_number not in shown.text and "Test Patient" not in shown.text

        unanswered = http.post(page_url, data={"item.involved": "No"})
        assert unanswered.status_code == 400 and "There is a problem" in unanswered.text
        assert http.get(page_url).status_code == 200  # not spent by a refused form

        sent = http.post(page_url, data={"score": "very-good", "item.involved": "Yes, definitely",
                                         "item.stayed-home": "not an offered answer"})
        assert sent.status_code == 200 and "Thank you" in sent.text
        for again in (http.get(page_url), http.post(page_url, data={"score": "poor"})):
            assert again.status_code == 410 and "already been used" in again.text

        payments = http.get("/api/settlement/pathways/pw-new", headers=coordinator).json()
        assert payments["position"]["outcome"] == "very-good"
        assert payments["questionnaire"] is None  # nothing left to pass on
        released = {(e["provider_id"], e["amount"]) for e in payments["entries"]
                    if e["rule"] == "withhold-release"}
        assert released == {(UCR, 1800), (GP, 700)}  # 100% of the withheld share
        answer = http.get("/api/settlement/statements", headers=coordinator, params={
            "period": payments["entries"][0]["period"], "provider": UCR}).json()
        assert any(line["caused_by"] == ["outcome:pw-new:1"] or "outcome:pw-new:1"
                   in line["caused_by"] for line in answer["statements"][0]["lines"])

        for broken in (page_url[:-3] + ("AAA" if not page_url.endswith("AAA") else "BBB"),
                       "/questionnaire/not-a-token", "/questionnaire/a.b.c"):
            refused = http.get(broken)
            assert refused.status_code == 410 and "not copied in full" in refused.text
            assert http.post(broken, data={"score": "good"}).status_code == 410


def test_replaced_expired_and_the_default_after_the_deadline(
    served: tuple[str, Settings]
) -> None:
    base_url, settings = served
    started = time.monotonic()
    tokens = TokenStore(settings.event_store)
    coordinator = {"Authorization": f"Bearer {tokens.issue_coordinator('casey')}"}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        soon = http.get("/api/settlement/pathways/pw-soon/questionnaire-link",
                        headers=coordinator).json()
        soon_url = "/questionnaire/" + soon["url"].rsplit("/", 1)[1]
        assert http.get(soon_url).status_code == 200

        # past its deadline: no link issued by itself, the contract's default counts
        assert http.get("/api/settlement/pathways/pw-old/questionnaire-link",
                        headers=coordinator).status_code == 404
        old = http.get("/api/settlement/pathways/pw-old", headers=coordinator).json()
        assert old["position"]["outcome"] == "neither-good-nor-poor"
        assert {h["released"] for h in old["position"]["handovers"]} == {900, 350}  # 50%
        assert sorted(e["amount"] for e in old["entries"] if e["rule"] == "withhold-release") \
            == [350, 900]

        # the coordinator asks for one (a late answer trues up); a second replaces the first
        first = http.post("/api/settlement/pathways/pw-old/questionnaire-link",
                          headers=coordinator)
        assert first.status_code == 201, first.text
        assert first.json()["issued_by"] == "coordinator:casey"
        second = http.post("/api/settlement/pathways/pw-old/questionnaire-link",
                           headers=coordinator).json()
        replaced = http.get("/questionnaire/" + first.json()["url"].rsplit("/", 1)[1])
        assert replaced.status_code == 410 and "a newer link was sent" in replaced.text
        done = http.post("/questionnaire/" + second["url"].rsplit("/", 1)[1],
                         data={"score": "poor"})
        assert done.status_code == 200
        old = http.get("/api/settlement/pathways/pw-old", headers=coordinator).json()
        assert old["position"]["outcome"] == "poor"
        trued = [e for e in old["entries"] if e["rule"] == "withhold-release" and e["amount"] < 0]
        assert sorted(e["amount"] for e in trued) == [-900, -350]

        # an open pathway: a link on request; answered on the patient's behalf, it stops working
        opened = http.post("/api/settlement/pathways/pw-open/questionnaire-link",
                           headers=coordinator)
        assert opened.status_code == 201
        open_url = "/questionnaire/" + opened.json()["url"].rsplit("/", 1)[1]
        assert http.get(open_url).status_code == 200
        assert http.post("/api/settlement/outcomes", headers=coordinator,
                         json={"pathway_id": "pw-open", "score": "good"}).status_code == 201
        assert http.get(open_url).status_code == 410
        # unknown pathway: 404
        assert http.post("/api/settlement/pathways/pw-none/questionnaire-link",
                         headers=coordinator).status_code == 404

        time.sleep(max(0.0, EXPIRES_IN + 1.5 - (time.monotonic() - started)))
        expired = http.get(soon_url)
        assert expired.status_code == 410, expired.text
        assert "expired" in expired.text
        assert http.post(soon_url, data={"score": "good"}).status_code == 410
