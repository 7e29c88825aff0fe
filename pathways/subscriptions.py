"""Topic-based FHIR Subscriptions (HL7 Subscriptions R5 Backport IG, R4 profiles): the pure part.

One topic, handover Tasks created or updated, filterable by `owner`, `status` and `code`. A
provider's Subscription is parsed and bounded here (the API refuses every problem at once), its
filters are matched against Task versions, and the notification Bundles and status Parameters
the IG defines are built here, so the delivery loop and the API render them the same way.
A provider's filter always carries `owner` = the provider itself: it can match nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

from pathways.fhir import STEP_SYSTEM, history_entry, instant, task_url, withdrawn_task
from pathways.webhook_url import webhook_url_problem

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
SUBSCRIPTION_PROFILE = f"{BACKPORT}/backport-subscription"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"
NOTIFICATION_PROFILE = f"{BACKPORT}/backport-subscription-notification-r4"
FILTER_CRITERIA = f"{BACKPORT}/backport-filter-criteria"
PAYLOAD_CONTENT = f"{BACKPORT}/backport-payload-content"
HEARTBEAT_PERIOD = f"{BACKPORT}/backport-heartbeat-period"
TIMEOUT = f"{BACKPORT}/backport-timeout"
TOPIC_CANONICAL = f"{BACKPORT}/capabilitystatement-subscriptiontopic-canonical"
R5_TOPIC = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
R4B_TOPIC = "http://hl7.org/fhir/4.3/StructureDefinition/extension-SubscriptionTopic"
SUBSCRIPTION_ERROR = "http://terminology.hl7.org/CodeSystem/subscription-error"

TOPIC_ID = "handover-task"
FILTERS = ("owner", "status", "code")
"""The topic's canFilterBy parameters; any other is refused."""
TASK_STATUSES = frozenset(
    {
        "draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
        "in-progress", "on-hold", "failed", "completed", "entered-in-error",
    }
)
PAYLOAD_TYPES = frozenset({"application/fhir+json", "application/json"})

MAX_FILTERS = 5
MAX_FILTER_CHARS = 256
MAX_VALUES = 20
MAX_HEADERS = 10
MAX_HEADER_CHARS = 1024
MAX_REASON_CHARS = 500
MAX_ENDPOINT_CHARS = 2048
MIN_HEARTBEAT_SECONDS = 2
MAX_HEARTBEAT_SECONDS = 86_400
MAX_TIMEOUT_SECONDS = 60
DEFAULT_TIMEOUT_SECONDS = 10
RESERVED_HEADERS = frozenset(
    {
        "host", "content-length", "content-type", "transfer-encoding", "connection",
        "webhook-id", "webhook-timestamp", "webhook-signature", "te", "upgrade", "expect",
        "keep-alive", "proxy-authorization", "trailer",
    }
)
"""Headers the server sets itself (or HTTP forbids a client to choose)."""
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")


class Content(StrEnum):
    """How much of the Task a notification carries (backport-payload-content)."""

    EMPTY = "empty"
    ID_ONLY = "id-only"
    FULL_RESOURCE = "full-resource"


class Status(StrEnum):
    """Subscription.status (R4): the life cycle the delivery loop drives."""

    REQUESTED = "requested"
    ACTIVE = "active"
    ERROR = "error"
    OFF = "off"


class SubscriptionInvalid(ValueError):
    """A Subscription we refuse, with every problem found (one line each)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Filter:
    """What a subscription matches: always one owner; statuses and codes if given (any of)."""

    owner: str
    statuses: frozenset[str] | None = None
    codes: frozenset[str] | None = None

    def criteria(self) -> list[str]:
        """The filters as backport-filter-criteria strings, as the server applies them."""
        parts = [f"Task?owner=Organization/{self.owner}"]
        if self.statuses is not None:
            parts.append("Task?status=" + ",".join(sorted(self.statuses)))
        if self.codes is not None:
            parts.append("Task?code=" + ",".join(sorted(self.codes)))
        return parts


@dataclass(frozen=True)
class Spec:
    """A provider's Subscription as the server keeps it (validated and bounded)."""

    provider_id: str
    endpoint: str
    filter: Filter
    content: Content = Content.ID_ONLY
    headers: tuple[str, ...] = ()
    heartbeat_seconds: int | None = None
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    end: datetime | None = None
    reason: str = ""
    off: bool = False
    payload_type: str = "application/fhir+json"

    def to_json(self) -> dict[str, Any]:
        """What the store keeps (plain JSON)."""
        return {
            "provider_id": self.provider_id,
            "endpoint": self.endpoint,
            "owner": self.filter.owner,
            "statuses": None if self.filter.statuses is None else sorted(self.filter.statuses),
            "codes": None if self.filter.codes is None else sorted(self.filter.codes),
            "content": self.content.value,
            "headers": list(self.headers),
            "heartbeat_seconds": self.heartbeat_seconds,
            "timeout_seconds": self.timeout_seconds,
            "end": None if self.end is None else self.end.isoformat(),
            "reason": self.reason,
            "off": self.off,
            "payload_type": self.payload_type,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        statuses, codes = data.get("statuses"), data.get("codes")
        end = data.get("end")
        return cls(
            provider_id=data["provider_id"],
            endpoint=data["endpoint"],
            filter=Filter(
                data["owner"],
                None if statuses is None else frozenset(statuses),
                None if codes is None else frozenset(codes),
            ),
            content=Content(data["content"]),
            headers=tuple(data.get("headers") or ()),
            heartbeat_seconds=data.get("heartbeat_seconds"),
            timeout_seconds=data.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS,
            end=None if end is None else datetime.fromisoformat(end),
            reason=data.get("reason") or "",
            off=bool(data.get("off")),
            payload_type=data.get("payload_type") or "application/fhir+json",
        )

    def same_channel(self, other: Spec) -> bool:
        """Whether deliveries go to the same place, with the same filter (else a new handshake)."""
        return (self.endpoint, self.headers, self.filter) == (
            other.endpoint, other.headers, other.filter
        )


def topic_url(base_url: str) -> str:
    """The topic's canonical URL: resolvable on this server."""
    return f"{base_url.rstrip('/')}/fhir/SubscriptionTopic/{TOPIC_ID}"


def subscription_url(base_url: str, subscription_id: str) -> str:
    return f"{base_url.rstrip('/')}/fhir/Subscription/{subscription_id}"


# --- the topic --------------------------------------------------------------------------------


def _part(url: str, kind: str, value: Any) -> dict[str, Any]:
    return {"url": url, f"value{kind}": value}


def _filter_by(name: str, description: str) -> dict[str, Any]:
    return {
        "url": f"{R4B_TOPIC}.canFilterBy",
        "extension": [
            _part("description", "Markdown", description),
            _part("resource", "Uri", "Task"),
            _part("filterParameter", "String", name),
        ],
    }


def topic_resource(base_url: str) -> dict[str, Any]:
    """The handover-Task topic as the IG represents a SubscriptionTopic in R4: a Basic with
    cross-version extensions (code SubscriptionTopic)."""
    trigger = {
        "url": f"{R4B_TOPIC}.resourceTrigger",
        "extension": [
            _part("description", "Markdown", "A handover Task is created or changes (any "
                  "status, owner, output or business status change)."),
            _part("resource", "Uri", "http://hl7.org/fhir/StructureDefinition/Task"),
            _part("supportedInteraction", "Code", "create"),
            _part("supportedInteraction", "Code", "update"),
        ],
    }
    shape = {
        "url": f"{R4B_TOPIC}.notificationShape",
        "extension": [_part("resource", "Uri", "Task")],
    }
    return {
        "resourceType": "Basic",
        "id": TOPIC_ID,
        "extension": [
            _part(f"{R5_TOPIC}.url", "Uri", topic_url(base_url)),
            _part(f"{R5_TOPIC}.version", "String", "1"),
            _part(f"{R5_TOPIC}.name", "String", "HandoverTask"),
            _part(f"{R5_TOPIC}.title", "String", "Handover Task created or updated"),
            _part(f"{R5_TOPIC}.date", "DateTime", "2026-01-01"),
            _part(f"{R5_TOPIC}.description", "Markdown",
                  "Notifies a provider system when one of its handover Tasks is created or "
                  "updated. A provider's subscription only ever matches its own Tasks."),
            trigger,
            _filter_by("owner", "The Task's owner, Organization/{provider id}: always the "
                       "subscribing provider (set by the server)."),
            _filter_by("status", "Task.status; comma-separated values match any of them."),
            _filter_by("code", f"Task.code: the step id (system {STEP_SYSTEM}), "
                       "optionally as system|code; comma-separated."),
            shape,
        ],
        "modifierExtension": [_part(f"{R5_TOPIC}.status", "Code", "active")],
        "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types",
                             "code": "SubscriptionTopic"}]},
    }


# --- parsing a Subscription -------------------------------------------------------------------


def parse_filters(criteria: list[str], provider_id: str) -> tuple[Filter, list[str]]:
    """The filter-criteria strings as one Filter for `provider_id`, and every problem.

    Grammar: `[Task?]name=value[,value...][&name=value...]`, names from FILTERS, values ANDed
    across criteria and ORed within one. `owner` may only name the provider itself.
    """
    problems: list[str] = []
    if len(criteria) > MAX_FILTERS:
        return Filter(provider_id), [f"at most {MAX_FILTERS} filter criteria"]
    statuses: set[str] | None = None
    codes: set[str] | None = None
    for index, text in enumerate(criteria):
        where = f"filter criteria [{index}]"
        if not isinstance(text, str) or not text or len(text) > MAX_FILTER_CHARS:
            problems.append(f"{where} must be a string of 1 to {MAX_FILTER_CHARS} characters")
            continue
        resource, sep, query = text.partition("?")
        if not sep:
            resource, query = "Task", text
        if resource != "Task":
            problems.append(f"{where}: the topic's resource is Task, not {resource!r}")
            continue
        for name, value in parse_qsl(query, keep_blank_values=True):
            values = [v.strip() for v in value.split(",") if v.strip()]
            problem = _filter_problem(name, values, provider_id)
            if problem:
                problems.append(f"{where}: {problem}")
            elif name == "status":
                statuses = set(values) if statuses is None else statuses & set(values)
            elif name == "code":
                wanted = {v.rpartition("|")[2] for v in values}
                codes = wanted if codes is None else codes & wanted
        if not query or not parse_qsl(query, keep_blank_values=True):
            problems.append(f"{where}: expected name=value, e.g. Task?status=requested")
    made = Filter(
        provider_id,
        None if statuses is None else frozenset(statuses),
        None if codes is None else frozenset(codes),
    )
    return made, problems


def _filter_problem(name: str, values: list[str], provider_id: str) -> str | None:
    if name not in FILTERS:
        return f"unknown filter {name!r}: the topic filters by {', '.join(FILTERS)}"
    if not values or len(values) > MAX_VALUES:
        return f"{name} needs 1 to {MAX_VALUES} comma-separated values"
    if name == "owner":
        own = {provider_id, f"Organization/{provider_id}"}
        if any(v not in own for v in values):
            return "owner can only be your own organisation: a subscription sees your Tasks only"
    if name == "status":
        unknown = sorted(set(values) - TASK_STATUSES)
        if unknown:
            return f"unknown Task status {', '.join(unknown)}"
    if name == "code":
        for value in values:
            system, bar, _ = value.rpartition("|")
            if bar and system not in ("", STEP_SYSTEM):
                return f"code system must be {STEP_SYSTEM}"
    return None


def parse_subscription(
    body: Any, provider_id: str, base_url: str, now: datetime
) -> tuple[Spec, list[str]]:
    """A posted Subscription as the server will keep it, and every problem in it."""
    if not isinstance(body, dict) or body.get("resourceType") != "Subscription":
        raise SubscriptionInvalid(["the body must be a FHIR Subscription resource"])
    problems: list[str] = []
    criteria = body.get("criteria")
    if criteria != topic_url(base_url):
        problems.append(f"criteria must be the topic URL {topic_url(base_url)}")
    filters = [
        value if isinstance(value := e.get("valueString"), str) else ""
        for e in _extensions(body.get("_criteria"), FILTER_CRITERIA)
    ]
    the_filter, filter_problems = parse_filters(filters, provider_id)
    problems += filter_problems
    channel = body.get("channel")
    if not isinstance(channel, dict):
        raise SubscriptionInvalid([*problems, "channel is required"])
    endpoint, channel_problems = _endpoint(channel)
    problems += channel_problems
    headers, header_problems = parse_headers(channel.get("header"))
    problems += header_problems
    content, payload_type, payload_problems = _payload(channel)
    problems += payload_problems
    heartbeat = _seconds(channel, HEARTBEAT_PERIOD, MIN_HEARTBEAT_SECONDS, MAX_HEARTBEAT_SECONDS,
                         "heartbeat period", problems)
    timeout = _seconds(channel, TIMEOUT, 1, MAX_TIMEOUT_SECONDS, "timeout", problems)
    end = _end(body.get("end"), now, problems)
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        problems.append(f"reason must be text of at most {MAX_REASON_CHARS} characters")
        reason = ""
    status = body.get("status", "requested")
    if status not in {s.value for s in Status}:
        problems.append("status must be requested, active, error or off")
    spec = Spec(
        provider_id=provider_id,
        endpoint=endpoint,
        filter=the_filter,
        content=content,
        headers=headers,
        heartbeat_seconds=heartbeat,
        timeout_seconds=timeout or DEFAULT_TIMEOUT_SECONDS,
        end=end,
        reason=reason,
        off=status == Status.OFF,
        payload_type=payload_type,
    )
    return spec, problems


def _extensions(element: Any, url: str) -> list[dict[str, Any]]:
    found = (element or {}).get("extension") if isinstance(element, dict) else None
    return [e for e in found or [] if isinstance(e, dict) and e.get("url") == url]


def _endpoint(channel: dict[str, Any]) -> tuple[str, list[str]]:
    problems = []
    if channel.get("type") != "rest-hook":
        problems.append("channel.type must be rest-hook (the only channel offered)")
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint or len(endpoint) > MAX_ENDPOINT_CHARS:
        return "", [*problems, f"channel.endpoint must be a URL of at most {MAX_ENDPOINT_CHARS} "
                    "characters"]
    if problem := webhook_url_problem(endpoint):
        problems.append(f"channel.endpoint: {problem}")
    return endpoint, problems


def parse_headers(raw: Any) -> tuple[tuple[str, ...], list[str]]:
    """channel.header as `Name: value` strings, bounded; reserved names and line breaks refused."""
    if raw is None:
        return (), []
    if not isinstance(raw, list) or len(raw) > MAX_HEADERS:
        return (), [f"channel.header must be a list of at most {MAX_HEADERS} strings"]
    problems = []
    kept = []
    for index, header in enumerate(raw):
        where = f"channel.header[{index}]"
        if not isinstance(header, str) or len(header) > MAX_HEADER_CHARS:
            problems.append(f"{where} must be a string of at most {MAX_HEADER_CHARS} characters")
            continue
        name, colon, value = header.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not _TOKEN.match(name) or not value:
            problems.append(f"{where} must be 'Name: value' with a valid header name")
        elif any(c in value for c in "\r\n\0") or not value.isprintable():
            problems.append(f"{where}: the value must be printable text on one line")
        elif name.lower() in RESERVED_HEADERS:
            problems.append(f"{where}: {name} is set by the server")
        else:
            kept.append(f"{name}: {value}")
    return tuple(kept), problems


def header_pairs(headers: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """Stored headers as (name, value) pairs to send."""
    pairs = []
    for header in headers:
        name, _, value = header.partition(":")
        pairs.append((name.strip(), value.strip()))
    return pairs


def _payload(channel: dict[str, Any]) -> tuple[Content, str, list[str]]:
    payload = channel.get("payload", "application/fhir+json")
    extensions = _extensions(channel.get("_payload"), PAYLOAD_CONTENT)
    code = extensions[0].get("valueCode") if extensions else Content.ID_ONLY.value
    problems = []
    if payload not in PAYLOAD_TYPES:
        problems.append("channel.payload must be application/fhir+json")
        payload = "application/fhir+json"
    if code not in {c.value for c in Content}:
        problems.append("payload content must be empty, id-only or full-resource")
        code = Content.ID_ONLY.value
    return Content(code), payload, problems


def _seconds(
    channel: dict[str, Any], url: str, low: int, high: int, name: str, problems: list[str]
) -> int | None:
    found = _extensions(channel, url)
    if not found:
        return None
    value = found[0].get("valueUnsignedInt")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(f"{name} must be whole seconds from {low} to {high}")
        return None
    return value


def _end(value: Any, now: datetime, problems: list[str]) -> datetime | None:
    if value is None:
        return None
    try:
        end = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        problems.append("end must be an instant, e.g. 2026-12-31T00:00:00Z")
        return None
    if end.tzinfo is None:
        problems.append("end needs a time zone, e.g. Z")
        return None
    if end <= now:
        problems.append("end must be in the future")
    return end.astimezone(UTC)


# --- matching ----------------------------------------------------------------------------------


def task_owner(task: dict[str, Any]) -> str | None:
    """The provider id a Task is addressed to, by reference (Organization/{id}) or identifier."""
    owner = task.get("owner") or {}
    reference = owner.get("reference")
    if isinstance(reference, str) and reference.startswith("Organization/"):
        return reference.removeprefix("Organization/")
    identifier = owner.get("identifier") or {}
    value = identifier.get("value")
    return value if isinstance(value, str) else None


def task_codes(task: dict[str, Any]) -> set[str]:
    codings = (task.get("code") or {}).get("coding") or []
    return {c["code"] for c in codings if isinstance(c, dict) and isinstance(c.get("code"), str)}


def matches(the_filter: Filter, task: dict[str, Any]) -> bool:
    """Whether one Task version is an event for this subscription (all filters must hold)."""
    if task.get("resourceType") != "Task" or task_owner(task) != the_filter.owner:
        return False
    if the_filter.statuses is not None and task.get("status") not in the_filter.statuses:
        return False
    return the_filter.codes is None or bool(task_codes(task) & the_filter.codes)


# --- rendering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One numbered event of a subscription: a Task version that matched (`withdrawn`: the
    version at which the Task left the subscriber, seen by it as cancelled)."""

    number: int
    task_id: str
    version: int
    at: datetime
    withdrawn: bool = False


def last_updated(task: dict[str, Any]) -> datetime | None:
    """A rendered Task's meta.lastUpdated as a UTC instant (None if missing or malformed)."""
    value = (task.get("meta") or {}).get("lastUpdated")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def task_events(
    the_filter: Filter, versions: Sequence[tuple[int, dict[str, Any]]], after: int, since: datetime
) -> list[tuple[int, datetime, bool]]:
    """Of one Task's recorded versions (ascending), those that are events for a subscription:
    (version, time, withdrawn), newer than version `after` and not before `since`.

    A version is an event when the subscriber sees it and the filter matches: its own Task, or
    the version at which the Task moved from it to another provider (reassigned, or handed on
    after a rejection), seen as `withdrawn_task`, cancelled and still addressed to it, so it
    learns the Task is gone without learning who has it now.
    """
    found = []
    previous_owner: str | None = None
    for version, task in versions:
        owner = task_owner(task)
        withdrawn = previous_owner == the_filter.owner and owner != the_filter.owner
        previous_owner = owner
        at = last_updated(task)
        if version <= after or at is None or at < since:
            continue
        if matches(the_filter, as_seen(task, the_filter.owner, withdrawn)):
            found.append((version, at, withdrawn))
    return found


def as_seen(task: dict[str, Any], provider_id: str, withdrawn: bool) -> dict[str, Any]:
    """The Task as the subscribing provider may see it at an event."""
    return withdrawn_task(task, provider_id) if withdrawn else task


def subscription_resource(
    subscription_id: str, spec: Spec, status: Status, error: str | None, base_url: str
) -> dict[str, Any]:
    """The Subscription as the server keeps it (backport profile), filters as applied."""
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": spec.endpoint,
        "payload": spec.payload_type,
        "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": spec.content.value}]},
        "extension": [{"url": TIMEOUT, "valueUnsignedInt": spec.timeout_seconds}],
    }
    if spec.heartbeat_seconds is not None:
        channel["extension"].insert(
            0, {"url": HEARTBEAT_PERIOD, "valueUnsignedInt": spec.heartbeat_seconds}
        )
    if spec.headers:
        channel["header"] = list(spec.headers)
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": subscription_id,
        "meta": {"profile": [SUBSCRIPTION_PROFILE]},
        "status": status.value,
        "reason": spec.reason or "Handover Task notifications",
        "criteria": topic_url(base_url),
        "_criteria": {
            "extension": [{"url": FILTER_CRITERIA, "valueString": c} for c in spec.filter.criteria()]
        },
        "channel": channel,
    }
    if spec.end is not None:
        resource["end"] = instant(spec.end)
    if error:
        resource["error"] = error
    return resource


def status_parameters(
    parameters_id: str,
    subscription_id: str,
    base_url: str,
    status: Status,
    kind: str,
    events_since_start: int,
    events: Sequence[Event] = (),
    content: Content = Content.ID_ONLY,
    error: str | None = None,
) -> dict[str, Any]:
    """backport-subscription-status-r4: the Parameters that open every notification and answer
    $status (kind query-status) and $events (kind query-event)."""
    parameter: list[dict[str, Any]] = [
        {"name": "subscription",
         "valueReference": {"reference": subscription_url(base_url, subscription_id)}},
        {"name": "status", "valueCode": status.value},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    if content is not Content.EMPTY:  # the IG: no topic with empty payloads
        parameter.insert(1, {"name": "topic", "valueCanonical": topic_url(base_url)})
    for event in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": instant(event.at)},
        ]
        if content is not Content.EMPTY:
            parts.append({"name": "focus", "valueReference": {"reference": task_url(
                base_url, event.task_id)}})
        parameter.append({"name": "notification-event", "part": parts})
    if error:
        parameter.append({
            "name": "error",
            "valueCodeableConcept": {
                "coding": [{"system": SUBSCRIPTION_ERROR, "code": "no-response"}], "text": error,
            },
        })
    return {
        "resourceType": "Parameters",
        "id": parameters_id,
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameter,
    }


def notification_bundle(
    bundle_id: str,
    parameters: dict[str, Any],
    subscription_id: str,
    base_url: str,
    now: datetime,
    tasks: Sequence[tuple[Event, dict[str, Any]]] = (),
) -> dict[str, Any]:
    """A notification Bundle (type history): the status Parameters first, then (full-resource)
    each Task as it was at its event."""
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{parameters['id']}",
            "resource": parameters,
            "request": {"method": "GET",
                        "url": f"{subscription_url(base_url, subscription_id)}/$status"},
            "response": {"status": "200"},
        }
    ]
    entries += [
        history_entry(base_url, event.task_id, event.version, task, event.version == 1)
        for event, task in tasks
    ]
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": instant(now),
        "entry": entries,
    }


def backoff_seconds(attempts: int, first: float, most: float) -> float:
    """Seconds before the next delivery attempt after `attempts` failures in a row."""
    return float(min(most, first * 2 ** max(0, attempts - 1)))


def event_range(since: str | None, until: str | None, count: int, limit: int) -> tuple[int, int]:
    """$events bounds (eventsSinceNumber, eventsUntilNumber, inclusive) within 1..count, at most
    `limit` events; ValueError for a bound that is not a whole number."""
    low = _number(since, "eventsSinceNumber") if since is not None else 1
    high = _number(until, "eventsUntilNumber") if until is not None else count
    low, high = max(1, low), min(count, high)
    return low, min(high, low + limit - 1)


def _number(value: str, name: str) -> int:
    if not value.isdigit() or len(value) > 12:
        raise ValueError(f"{name} must be a whole number")
    return int(value)


def subscription_capabilities(base_url: str) -> list[dict[str, Any]]:
    """CapabilityStatement.rest.resource entries for Subscription (with the topic advertised
    as the IG asks) and the topic's Basic."""
    operations = [
        ("status", f"{BACKPORT.replace('StructureDefinition', 'OperationDefinition')}"
                   "/backport-subscription-status"),
        ("events", f"{BACKPORT.replace('StructureDefinition', 'OperationDefinition')}"
                   "/backport-subscription-events"),
    ]
    return [
        {
            "type": "Subscription",
            "extension": [{"url": TOPIC_CANONICAL, "valueCanonical": topic_url(base_url)}],
            "supportedProfile": [SUBSCRIPTION_PROFILE],
            "interaction": [
                {"code": c} for c in ("create", "read", "update", "delete", "search-type")
            ],
            "operation": [{"name": name, "definition": url} for name, url in operations],
        },
        {"type": "Basic", "interaction": [{"code": "read"}],
         "documentation": f"The SubscriptionTopic {topic_url(base_url)} (R4: a Basic)"},
    ]
