"""What the risk engine reads of a record: coded entries and a few facts, as plain values.

`Entry` is one dated, coded row of the record (a Condition, Observation, Procedure,
Encounter or MedicationRequest) as the search index holds it; `Facts` is one patient's
entries with the demographic facts the scores need. The engine (frailty.py, admission.py)
is pure over these; `careplans/risk/queries.py` fills them set-based from the index tables,
many patients per query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

# Statuses that make an entry count (https://hl7.org/fhir/R4/condition.html#statuses and the
# status value sets of each type). A Condition counts when it is active (or recurs) and is
# not in doubt: inactive, resolved, in remission, refuted, entered in error, unconfirmed,
# provisional or differential diagnoses do not. No clinicalStatus or verificationStatus
# (allowed by FHIR) counts as recorded.
CONDITION_ACTIVE = frozenset({"active", "recurrence", "relapse", None})
CONDITION_CONFIRMED = frozenset({"confirmed", None})
OBSERVATION_OK = frozenset({"final", "amended", "corrected"})
PROCEDURE_OK = frozenset({"completed"})
ENCOUNTER_OK = frozenset({"finished", "in-progress", "arrived", "triaged", "onleave"})
# A medicine counts as issued unless the request never became one.
MEDICATION_NOT_ISSUED = frozenset({"entered-in-error", "cancelled", "draft"})


@dataclass(frozen=True, slots=True)
class Entry:
    """One coded entry: `ref` is "Type/id"; `day` its clinical date (onset, effective,
    performed, period start, authoredOn; else recorded), None when it has none."""

    ref: str
    code: str
    system: str | None = None
    day: date | None = None
    status: str | None = None  # Condition: clinicalStatus; others: status
    verification: str | None = None  # Condition.verificationStatus
    value: float | None = None  # Observation: valueQuantity.value or valueInteger
    klass: str | None = None  # Encounter.class code

    @property
    def type(self) -> str:
        return self.ref.partition("/")[0]

    def stands(self) -> bool:
        """Whether the entry is a fact of the record by its statuses (not its date)."""
        kind = self.type
        if kind == "Condition":
            return self.status in CONDITION_ACTIVE and self.verification in CONDITION_CONFIRMED
        if kind == "Observation":
            return self.status in OBSERVATION_OK
        if kind == "Procedure":
            return self.status in PROCEDURE_OK
        if kind == "Encounter":
            return self.status in ENCOUNTER_OK
        if kind == "MedicationRequest":
            return self.status not in MEDICATION_NOT_ISSUED
        return False

    def within(self, as_of: date, days: int | None) -> bool:
        """Dated on or before `as_of` and, with a window of `days`, less than `days` before
        it. Undated entries count only where there is no window."""
        if self.day is None:
            return days is None
        if self.day > as_of:
            return False
        return days is None or self.day > as_of - timedelta(days=days)


@dataclass(slots=True)
class Facts:
    """One patient as the engine sees them."""

    patient_id: str
    birth_date: date | None = None
    gender: str | None = None
    entries: list[Entry] = field(default_factory=list)

    def age(self, as_of: date) -> int | None:
        if self.birth_date is None:
            return None
        born = self.birth_date
        return as_of.year - born.year - ((as_of.month, as_of.day) < (born.month, born.day))
