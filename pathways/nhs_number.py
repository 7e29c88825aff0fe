"""NHS number: normalisation and the modulus-11 check digit.

A wrong digit in an NHS number sends a handover about the wrong patient, so every number is
checked on entry. Error messages never contain the number itself.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_WEIGHTS = range(10, 1, -1)


def normalise(value: str) -> str:
    """Drop the spaces and hyphens people write NHS numbers with (943 476 5919, 943-476-5919)."""
    return value.replace(" ", "").replace("-", "")


def check_digit(first_nine: str) -> int | None:
    """The modulus-11 check digit of nine digits, or None when the result is 10 (never issued)."""
    remainder = sum(int(d) * w for d, w in zip(first_nine, _WEIGHTS, strict=True)) % 11
    check = 11 - remainder
    if check == 11:
        return 0
    return None if check == 10 else check


def problem(value: str) -> str | None:
    """Why a (normalised) value is not a valid NHS number, or None if it is one."""
    if len(value) != 10 or not value.isascii() or not value.isdigit():
        return "an NHS number is 10 digits"
    expected = check_digit(value[:9])
    if expected is None or expected != int(value[9]):
        return "the NHS number's check digit is wrong"
    return None


def is_valid(value: str) -> bool:
    return problem(normalise(value)) is None


def _validate(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("an NHS number must be given as a string")
    number = normalise(value)
    reason = problem(number)
    if reason is not None:
        raise ValueError(reason)
    return number


NhsNumber = Annotated[
    str,
    BeforeValidator(_validate),
    WithJsonSchema({"type": "string", "description": "10-digit NHS number (spaces allowed)"}),
]
"""A valid NHS number, stored normalised (10 digits)."""
