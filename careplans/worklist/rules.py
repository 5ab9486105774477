"""The worklist rules, read from careplans/data/worklist/rules.csv (one row per rule).

The table says, for each rule, what triggers it, who owns the item, when it is due, what
period makes it unique and what closes it (README.md in this folder shows it). The code that
evaluates a rule is in triggers.py, keyed by the rule's name; a row without code, or code
without a row, fails when triggers.py is imported.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "worklist"
RULE_SYSTEM = "https://carenet.invalid/fhir/CodeSystem/worklist-rule"
SDS_JOB_ROLE = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"
# https://hl7.org/fhir/R4/valueset-request-priority.html, most pressing first.
PRIORITIES = ("stat", "asap", "urgent", "routine")


@dataclass(frozen=True, slots=True)
class Rule:
    rule: str
    title: str
    trigger: str
    owner: str  # "coordinator" (the plan's coordinator, else the team) or a role name
    performer_role: str  # SDS job role code of who does it (Task.performerType)
    due_working_days: int
    priority: str
    period: str
    closes_when: str
    source: str


@cache
def rules() -> dict[str, Rule]:
    with (DATA / "rules.csv").open(newline="", encoding="utf-8") as f:
        found = {}
        for row in csv.DictReader(f):
            rule = Rule(**{**row, "due_working_days": int(row["due_working_days"])})
            if rule.priority not in PRIORITIES:
                raise ValueError(f"rules.csv: {rule.rule} has priority {rule.priority!r}")
            found[rule.rule] = rule
    return found


def rank(priority: str | None) -> int:
    """0 for the most pressing priority (stat) ... 3 for routine (and anything unknown)."""
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES) - 1
