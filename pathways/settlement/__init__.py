"""Alliance contract settlement: pay subcontractors on delivery and outcome, from the event log.

Pure domain (no database, no Temporal): contract terms (terms.py), money and rounding
(money.py), periods (periods.py), ledger rules per pathway (rules.py), the ledger replayed from
the event log (ledger.py), the alliance risk/gain share (alliance.py) and statements
(statements.py). activities/ledger.py stores what `derive` produces.
"""

from pathways.settlement.ledger import derive
from pathways.settlement.model import InputKind, LedgerEntry, LedgerInput, Rule
from pathways.settlement.periods import Period
from pathways.settlement.terms import Contract, Contracts, Outcome, load_contracts

__all__ = ["Contract", "Contracts", "InputKind", "LedgerEntry", "LedgerInput", "Outcome",
           "Period", "Rule", "derive", "load_contracts"]
