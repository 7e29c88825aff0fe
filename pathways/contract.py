"""The zero-error handover contract: a delivery that does not match its step is refused at the door.

`check_delivery` lists every problem at once so a provider fixes its data in one round trip.
A problem names the field and the rule it breaks, never the value sent: a provider that types an
NHS number in the wrong field must not put it in an error, a log or the event log. Every value
is bounded so that an accepted delivery can be stored, fingerprinted and rendered without fail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pathways.dates import calendar_date
from pathways.model import FieldType, HandoverField, Step

_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
_DOCUMENT_KEYS = ("url", "reference", "title", "content_type")
TEXT_LIMIT = 32_000
"""Characters in one text value (the whole delivery is also bounded, see commands)."""
DOCUMENT_LIMITS = {"url": 2048, "reference": 512, "title": 500, "content_type": 100}
INTEGER_LIMIT = 2**31 - 1
"""FHIR integer: 32-bit signed."""
NUMBER_LIMIT = 1e15
YEARS = (1900, 2200)
"""Dates and date-times a care record can plausibly hold; outside, a typo (or a wrong field)."""

Checked = tuple[Any, str | None]
"""A normalised value and the problem with it (None when it conforms)."""


def _text(field: HandoverField, value: Any) -> Checked:
    if not isinstance(value, str) or not value.strip():
        return None, f"field {field.name!r} must be non-empty text"
    if len(value) > TEXT_LIMIT:
        return None, f"field {field.name!r} must be at most {TEXT_LIMIT} characters"
    return value, None


def _number(field: HandoverField, value: Any) -> Checked:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None, f"field {field.name!r} must be a number"
    if abs(value) > NUMBER_LIMIT:
        return None, f"field {field.name!r} must be a number between -1e15 and 1e15"
    return value, None


def _integer(field: HandoverField, value: Any) -> Checked:
    if not isinstance(value, int) or isinstance(value, bool):
        return None, f"field {field.name!r} must be a whole number"
    if abs(value) > INTEGER_LIMIT:
        return None, f"field {field.name!r} must be a whole number within 32 bits"
    return value, None


def _boolean(field: HandoverField, value: Any) -> Checked:
    if isinstance(value, bool):
        return value, None
    return None, f"field {field.name!r} must be true or false"


def _date(field: HandoverField, value: Any) -> Checked:
    clean = calendar_date(value)
    if clean is None:
        return None, f"field {field.name!r} must be a calendar date YYYY-MM-DD"
    if not YEARS[0] <= int(clean[:4]) <= YEARS[1]:
        return None, f"field {field.name!r} must be between {YEARS[0]} and {YEARS[1]}"
    return clean, None


def _date_time(field: HandoverField, value: Any) -> Checked:
    if isinstance(value, str) and "T" in value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            if not YEARS[0] <= moment.year <= YEARS[1]:
                return None, f"field {field.name!r} must be between {YEARS[0]} and {YEARS[1]}"
            return moment.isoformat(), None
    return None, f"field {field.name!r} must be an ISO 8601 date-time with a time zone"


def _coded(field: HandoverField, value: Any) -> Checked:
    if isinstance(value, str) and value in field.codes:
        return value, None
    return None, f"field {field.name!r} must be one of {', '.join(field.codes)}"


def _document(field: HandoverField, value: Any) -> Checked:
    if not isinstance(value, Mapping):
        return None, f"field {field.name!r} must be a document with a url or reference"
    if any(k not in _DOCUMENT_KEYS for k in value):
        return None, f"field {field.name!r} document may only have {', '.join(_DOCUMENT_KEYS)}"
    present = {k: value[k] for k in _DOCUMENT_KEYS if value.get(k) is not None}
    if not all(isinstance(v, str) and v.strip() for v in present.values()):
        return None, f"field {field.name!r} document keys must be non-empty text"
    if any(len(v) > DOCUMENT_LIMITS[k] for k, v in present.items()):
        limits = ", ".join(f"{k} {n}" for k, n in DOCUMENT_LIMITS.items())
        return None, f"field {field.name!r} document keys may be at most ({limits}) characters"
    if "url" not in present and "reference" not in present:
        return None, f"field {field.name!r} must be a document with a url or reference"
    return present, None


_CHECKS: Mapping[FieldType, Callable[[HandoverField, Any], Checked]] = {
    FieldType.TEXT: _text,
    FieldType.NUMBER: _number,
    FieldType.INTEGER: _integer,
    FieldType.BOOLEAN: _boolean,
    FieldType.DATE: _date,
    FieldType.DATE_TIME: _date_time,
    FieldType.CODED: _coded,
    FieldType.DOCUMENT: _document,
}


def check_fields(
    step: Step, output: Mapping[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Normalise a delivery; return it with every (field name, problem) pair found.

    An optional field given as null counts as absent; the normalised output holds only the
    step's fields, in contract order.
    """
    normalised: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for field in step.handover:
        value = output.get(field.name)
        if value is None:
            if field.required:
                problems.append((field.name, f"missing required field {field.name!r}"))
            continue
        clean, problem = _CHECKS[field.type](field, value)
        if problem is None:
            normalised[field.name] = clean
        else:
            problems.append((field.name, problem))
    known = {f.name for f in step.handover}
    unknown = [str(key) for key in output if key not in known]
    for name in sorted(n for n in unknown if _FIELD_NAME.match(n)):
        problems.append((name, f"unknown field {name!r}"))
    if any(not _FIELD_NAME.match(n) for n in unknown):
        problems.append((UNNAMED, "unknown fields whose names are not field names (not shown)"))
    return normalised, problems


UNNAMED = "(unnamed)"
"""Stands for keys that are not field names: a key may itself be patient data."""


def check_delivery(step: Step, output: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Normalise a delivery against the step's contract; return it with every problem found."""
    normalised, problems = check_fields(step, output)
    return normalised, [problem for _, problem in problems]
