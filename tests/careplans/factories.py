"""Builders of engine inputs (careplans.risk.evidence) for the pure tests."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from careplans.codes import SNOMED
from careplans.risk.evidence import Entry, Facts

AS_OF = date(2026, 9, 1)
_ids = itertools.count(1)


def ago(days: int) -> date:
    return AS_OF - timedelta(days=days)


def condition(code: str, *, days: int | None = 100, status: str | None = "active",
              verification: str | None = "confirmed") -> Entry:
    return Entry(f"Condition/c{next(_ids)}", code, SNOMED, ago(days) if days is not None
                 else None, status, verification)


def observation(code: str, value: float | None = None, *, days: int = 30,
                status: str = "final") -> Entry:
    return Entry(f"Observation/o{next(_ids)}", code, SNOMED, ago(days), status, value=value)


def medicine(code: str, *, days: int = 30, status: str = "active") -> Entry:
    return Entry(f"MedicationRequest/m{next(_ids)}", code, "https://dmd.nhs.uk", ago(days),
                 status)


def encounter(code: str | None, *, klass: str | None = None, days: int = 30,
              status: str = "finished") -> Entry:
    return Entry(f"Encounter/e{next(_ids)}", code or "", SNOMED if code else None, ago(days),
                 status, klass=klass)


def person(*entries: Entry, age: int = 80, gender: str = "female") -> Facts:
    born = date(AS_OF.year - age, 1, 1) if (AS_OF.month, AS_OF.day) >= (1, 1) else None
    return Facts("p1", born, gender, list(entries))
