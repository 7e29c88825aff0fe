"""What the ledger reads besides the pathway event log, and what it writes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from pathways.settlement.terms import Outcome
from pathways.state import Model


class InputKind(StrEnum):
    OUTCOME = "outcome"
    CLOSE = "close"


class LedgerInput(Model):
    """A fact recorded for settlement (not by the engine): an outcome score or a period close.

    `at` is when it was recorded; that, not when the patient answered, decides its period, so a
    late answer trues up the next open statement instead of editing a closed one.
    """

    input_id: str
    kind: InputKind
    at: datetime
    pathway_id: str | None = None
    period: str | None = None
    outcome: Outcome | None = None
    actor: str | None = None
    answers: dict[str, str] = Field(
        default_factory=dict, description="the questionnaire's other items: item id -> answer")


class Rule(StrEnum):
    BASE = "base"
    TOP_UP = "top-up"
    WITHHOLD = "withhold"
    RELEASE = "withhold-release"
    ALLIANCE = "alliance-share"


class LedgerEntry(Model):
    """One append-only line: who is paid (or pays back) how much, under which rule, and why."""

    entry_id: str
    seq: int = Field(description="position in the ledger, from 1")
    period: str
    at: datetime = Field(description="when it was booked: the time of the fact that caused it")
    pathway_id: str | None
    handover_id: str | None
    provider_id: str
    contract: str = Field(description="contract id@version")
    rule: Rule
    amount: int = Field(description="pence; negative is money held back or paid back")
    currency: str
    caused_by: list[str] = Field(description="event ids (pathway:seq) and input ids behind it")
    adjusts: str | None = Field(
        default=None, description="the earlier period whose amount this entry trues up")
    note: str = ""
