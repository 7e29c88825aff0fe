"""FHIR Subscriptions, the pure part: what a provider may subscribe to, what matches, and the
backport IG's R4 shapes (checked against the fhir.resources R4B models)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.basic import Basic
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.subscription import Subscription

from pathways.fhir import STEP_SYSTEM
from pathways.subscriptions import (
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    NOTIFICATION_PROFILE,
    PAYLOAD_CONTENT,
    STATUS_PROFILE,
    SUBSCRIPTION_PROFILE,
    Content,
    Event,
    Filter,
    Spec,
    Status,
    SubscriptionInvalid,
    as_seen,
    backoff_seconds,
    event_range,
    matches,
    notification_bundle,
    parse_filters,
    parse_headers,
    parse_subscription,
    status_parameters,
    subscription_resource,
    task_events,
    topic_resource,
    topic_url,
)

BASE = "https://orchestrator.example.org"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ME = "gp-north"


def body(**changes: Any) -> dict[str, Any]:
    """A valid backport Subscription, as a provider system would post it."""
    subscription: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {"profile": [SUBSCRIPTION_PROFILE]},
        "status": "requested",
        "reason": "our handovers",
        "criteria": topic_url(BASE),
        "_criteria": {"extension": [{"url": FILTER_CRITERIA, "valueString": "Task?status=requested"}]},
        "channel": {
            "type": "rest-hook",
            "endpoint": "https://ehr.example.org/fhir-hook",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": "full-resource"}]},
            "header": ["Authorization: Bearer abc"],
            "extension": [{"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 60}],
        },
    }
    subscription.update(changes)
    return subscription


def task(status: str = "requested", owner: str = ME, code: str = "discharge") -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": "pw-1.discharge.1",
        "status": status,
        "intent": "order",
        "owner": {"reference": f"Organization/{owner}"},
        "code": {"coding": [{"system": STEP_SYSTEM, "code": code}]},
    }


def test_a_valid_subscription_is_kept_with_its_channel_and_the_owner_forced() -> None:
    spec, problems = parse_subscription(body(), ME, BASE, NOW)
    assert problems == []
    assert spec.filter == Filter(ME, frozenset({"requested"}))
    assert spec.content is Content.FULL_RESOURCE
    assert spec.headers == ("Authorization: Bearer abc",)
    assert spec.heartbeat_seconds == 60
    rendered = subscription_resource("sub-1", spec, Status.REQUESTED, None, BASE)
    Subscription.model_validate(rendered)
    filters = [e["valueString"] for e in rendered["_criteria"]["extension"]]
    assert filters == [f"Task?owner=Organization/{ME}", "Task?status=requested"]


def test_id_only_is_the_default_payload() -> None:
    subscription = body()
    del subscription["channel"]["_payload"]
    spec, problems = parse_subscription(subscription, ME, BASE, NOW)
    assert problems == [] and spec.content is Content.ID_ONLY


@pytest.mark.parametrize(
    ("criteria", "problem"),
    [
        ("Task?owner=Organization/gp-south", "owner can only be your own"),
        ("Task?priority=urgent", "unknown filter 'priority'"),
        ("Task?status=finished", "unknown Task status finished"),
        ("Patient?status=requested", "resource is Task"),
        ("Task?code=http://other|x", "code system must be"),
        ("Task?", "expected name=value"),
    ],
)
def test_filters_outside_the_topic_or_the_callers_tasks_are_refused(criteria: str, problem: str) -> None:
    _, problems = parse_filters([criteria], ME)
    assert any(problem in p for p in problems), problems


def test_filters_combine_with_and_and_values_with_or() -> None:
    made, problems = parse_filters(
        ["Task?status=requested,accepted&code=discharge", f"owner=Organization/{ME}"], ME
    )
    assert problems == []
    assert matches(made, task("accepted"))
    assert not matches(made, task("completed"))
    assert not matches(made, task(code="assessment"))
    assert matches(made, task(code="discharge"))


def test_a_filter_never_matches_another_providers_task() -> None:
    assert not matches(Filter(ME), task(owner="gp-south"))
    assert matches(Filter(ME), {**task(), "owner": {"identifier": {"value": ME}}})


def test_every_problem_is_listed_at_once() -> None:
    bad = body(criteria="https://elsewhere/topic", end="2020-01-01T00:00:00Z")
    bad["channel"] |= {"type": "email", "endpoint": "http://ehr.example.org/hook"}
    bad["channel"]["header"] = ["Host: evil", "X-Ok: fine\nInjected: yes", "no colon"]
    bad["channel"]["extension"] = [{"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 0}]
    _, problems = parse_subscription(bad, ME, BASE, NOW)
    text = " | ".join(problems)
    for expected in ("criteria must be the topic URL", "rest-hook", "https", "Host is set by the server",
                     "one line", "'Name: value'", "heartbeat period", "end must be in the future"):
        assert expected in text, text


def test_headers_are_bounded() -> None:
    _, problems = parse_headers([f"X-{i}: v" for i in range(11)])
    assert problems
    _, problems = parse_headers(["X-Big: " + "v" * 2000])
    assert problems


def test_not_a_subscription_is_refused() -> None:
    with pytest.raises(SubscriptionInvalid):
        parse_subscription({"resourceType": "Task"}, ME, BASE, NOW)


def test_the_topic_is_an_r4_basic_with_its_canonical_url_and_filters() -> None:
    topic = topic_resource(BASE)
    Basic.model_validate(topic)
    urls = {e["url"]: e for e in topic["extension"]}
    assert urls["http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.url"][
        "valueUri"
    ] == f"{BASE}/fhir/SubscriptionTopic/handover-task"
    filters = [
        next(p["valueString"] for p in e["extension"] if p["url"] == "filterParameter")
        for e in topic["extension"]
        if e["url"].endswith("canFilterBy")
    ]
    assert filters == ["owner", "status", "code"]


def test_an_id_only_notification_is_a_history_bundle_opening_with_the_status() -> None:
    event = Event(7, "pw-1.discharge.1", 3, NOW)
    parameters = status_parameters("p1", "sub-1", BASE, Status.ACTIVE, "event-notification", 9, [event])
    bundle = notification_bundle("b1", parameters, "sub-1", BASE, NOW)
    Bundle.model_validate(bundle)
    assert bundle["type"] == "history" and bundle["meta"]["profile"] == [NOTIFICATION_PROFILE]
    assert len(bundle["entry"]) == 1
    status = bundle["entry"][0]["resource"]
    Parameters.model_validate(status)
    assert status["meta"]["profile"] == [STATUS_PROFILE]
    values = {p["name"]: p for p in status["parameter"]}
    assert values["events-since-subscription-start"]["valueString"] == "9"
    assert values["type"]["valueCode"] == "event-notification"
    parts = {p["name"]: p for p in values["notification-event"]["part"]}
    assert parts["event-number"]["valueString"] == "7"
    assert parts["focus"]["valueReference"]["reference"] == f"{BASE}/fhir/Task/pw-1.discharge.1"
    assert parts["timestamp"]["valueInstant"] == "2026-03-01T12:00:00Z"


def test_a_full_resource_notification_carries_the_task_as_it_was() -> None:
    event = Event(1, "pw-1.discharge.1", 1, NOW)
    parameters = status_parameters("p1", "sub-1", BASE, Status.ACTIVE, "event-notification", 1, [event])
    bundle = notification_bundle("b1", parameters, "sub-1", BASE, NOW, [(event, task())])
    Bundle.model_validate(bundle)
    entry = bundle["entry"][1]
    assert entry["resource"]["id"] == "pw-1.discharge.1"
    assert entry["request"] == {"method": "POST", "url": "Task"}  # version 1: created


def test_a_status_with_an_error_says_so() -> None:
    parameters = status_parameters("p", "sub-1", BASE, Status.ERROR, "query-status", 0, error="endpoint answered 503")
    Parameters.model_validate(parameters)
    assert parameters["parameter"][-1]["name"] == "error"


def test_spec_survives_the_store_round_trip() -> None:
    spec, _ = parse_subscription(body(end=(NOW + timedelta(days=1)).isoformat()), ME, BASE, NOW)
    assert Spec.from_json(spec.to_json()) == spec


def test_backoff_doubles_up_to_a_ceiling() -> None:
    assert [backoff_seconds(n, 1, 10) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]


def test_event_ranges_are_bounded_and_numeric() -> None:
    assert event_range(None, None, 250, 100) == (1, 100)
    assert event_range("240", None, 250, 100) == (240, 250)
    assert event_range("3", "5", 250, 100) == (3, 5)
    assert event_range("9", None, 5, 100) == (9, 5)  # nothing yet
    with pytest.raises(ValueError):
        event_range("-1", None, 5, 100)


def test_an_empty_payload_names_neither_the_topic_nor_the_focus() -> None:
    event = Event(2, "pw-1.discharge.1", 2, NOW)
    empty = status_parameters("p", "sub-1", BASE, Status.ACTIVE, "event-notification", 2, [event], Content.EMPTY)
    names = [p["name"] for p in empty["parameter"]]
    assert "topic" not in names
    parts = [p["name"] for p in empty["parameter"][-1]["part"]]
    assert parts == ["event-number", "timestamp"]


def test_a_task_that_leaves_the_subscriber_is_one_withdrawal_event_naming_no_one_else() -> None:
    def at(version: int, owner: str, status: str) -> tuple[int, dict[str, Any]]:
        stamp = (NOW + timedelta(minutes=version)).isoformat().replace("+00:00", "Z")
        return version, {**task(status, owner), "meta": {"lastUpdated": stamp}}

    versions = [at(1, ME, "requested"), at(2, ME, "accepted"), at(3, "gp-south", "requested"),
                at(4, "gp-south", "accepted"), at(5, ME, "requested")]
    found = task_events(Filter(ME), versions, 0, NOW)
    assert [(v, withdrawn) for v, _, withdrawn in found] == [(1, False), (2, False), (3, True), (5, False)]
    assert task_events(Filter(ME), versions, 2, NOW)[0][0] == 3  # after what was numbered
    assert task_events(Filter(ME), versions, 0, NOW + timedelta(minutes=4))[0][0] == 5  # since
    cancelled = task_events(Filter(ME, frozenset({"cancelled"})), versions, 0, NOW)
    assert [v for v, _, _ in cancelled] == [3]
    seen = as_seen(versions[2][1], ME, True)
    assert seen["status"] == "cancelled" and seen["owner"] == {"reference": f"Organization/{ME}"}
    assert "gp-south" not in str(seen)
