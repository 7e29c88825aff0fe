"""Finding a patient's pathways by name or NHS number without storing either in the read model.

A keyed blind index: each normalised name token and the NHS number is stored as
HMAC-SHA256(search key, kind + value), truncated to 128 bits. A coordinator's search text is
turned into the same hashes and matched for equality, so "smith" finds "Jane Smith" and
"943 476 5919" finds that patient, while the database holds no name or number a reader could
use: without the key nothing can be tested against it (no dictionary attack on a leaked copy).
What it gives away, as any equality index does: which pathways share a token (two Smiths), and
how common each token is. Whole tokens only: a prefix index would multiply what is given away
and make short, guessable prefixes countable.

The search key is derived from the installation's secret key with its own label, so it is never
the key that signs webhooks or derives patient keys, and it is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from pathways.nhs_number import normalise, problem

SEARCH_LABEL = b"patient-search-index:v1"
TOKEN_LENGTH = 32
"""Hex characters kept of each HMAC (128 bits)."""
MIN_TOKEN = 2
_SPLIT = re.compile(r"[^\w]+|_")


def search_key(secret: bytes) -> bytes:
    """The blind index's own key, derived from the installation secret."""
    return hmac.new(secret, SEARCH_LABEL, hashlib.sha256).digest()


def name_tokens(text: str) -> list[str]:
    """Normalised words of a name: accents dropped, case folded, split on anything that is not
    a letter or digit ("O'Brien-Smith" gives "o", "brien", "smith"; one-letter words dropped)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return sorted({t for t in _SPLIT.split(plain) if len(t) >= MIN_TOKEN})


def nhs_number_of(text: str) -> str | None:
    """The NHS number a search text is, if it is one (spaces and hyphens allowed)."""
    number = normalise(text.strip())
    return number if problem(number) is None else None


@dataclass(frozen=True)
class PatientIndex:
    """Blind-index hashes for writing (a patient's terms) and for searching (a query's)."""

    key: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, secret: bytes) -> PatientIndex:
        return cls(search_key(secret))

    def _blind(self, kind: str, value: str) -> str:
        digest = hmac.new(self.key, f"{kind}:{value}".encode(), hashlib.sha256)
        return digest.hexdigest()[:TOKEN_LENGTH]

    def terms(self, name: str | None, nhs_number: str | None) -> set[str]:
        """What the read model stores for one patient."""
        found = {self._blind("name", t) for t in name_tokens(name or "")}
        number = nhs_number_of(nhs_number or "")
        if number is not None:
            found.add(self._blind("nhs", number))
        return found

    def query(self, text: str) -> list[str]:
        """What a search text must match, every term (empty: nothing to look up). An NHS number
        is matched whole; other text by each of its name tokens."""
        number = nhs_number_of(text)
        if number is not None:
            return [self._blind("nhs", number)]
        return [self._blind("name", t) for t in name_tokens(text)]


def task_patient(tasks: Iterable[dict[str, object]]) -> tuple[str | None, str | None]:
    """(display name, NHS number) of the patient a rendered FHIR Task is for, from the first
    Task that names one."""
    for task in tasks:
        subject = task.get("for")
        if isinstance(subject, dict):
            identifier = subject.get("identifier")
            number = identifier.get("value") if isinstance(identifier, dict) else None
            name = subject.get("display")
            return (name if isinstance(name, str) else None,
                    number if isinstance(number, str) else None)
    return None, None
