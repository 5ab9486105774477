"""Quality indicators of proactive care, for the network or one practice, as of a day, computed
from the record at the moment of asking (set-based, as the build: facts.py), returned as FHIR
MeasureReports (https://hl7.org/fhir/R4/measurereport.html, type subject-list) whose initial
population and numerator name their patients in contained Lists (`subjectResults`), so a
person can drill into them.

- high-risk-with-plan: of the high-risk patients (as rule no-plan), those with an active
  anticipatory care plan (a share);
- plan-review-overdue: of the active anticipatory plans, those whose review date has passed;
- follow-up-in-2-days: of the follow-up items (rule ae-follow-up) whose due date has come,
  those completed on or before it (subjects: the Tasks);
- ae-per-1000-over-75: A&E attendances (Encounter class EMER or type 4525004) in the 12
  months to the day of the registered patients aged 75+, per 1,000 of them (the numerator
  List names the patients who attended; its count is the attendances).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from careplans.risk.admission import AE_CODES
from careplans.worklist import facts as record
from careplans.worklist.models import WorklistItem
from careplans.worklist.triggers import high_risk
from fhir.schema import resource, sp_date, sp_reference

MEASURE = "https://carenet.invalid/fhir/Measure/"
POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
items = WorklistItem.__table__


@dataclass(slots=True)
class Indicator:
    code: str
    title: str
    population: list[str] = field(default_factory=list)  # patient ids (or Task ids)
    numerator: list[str] = field(default_factory=list)
    count: int | None = None  # the numerator's count when it counts events, not subjects
    per: int = 1  # 1000 for a rate per 1,000

    @property
    def score(self) -> float | None:
        if not self.population:
            return None
        top = self.count if self.count is not None else len(self.numerator)
        return round(top * self.per / len(self.population), 4)


async def registered(conn: AsyncConnection, practice: str | None) -> dict[str, float | None]:
    """Live patients (of the practice, when given) and their birth dates (epoch seconds)."""
    query = (sa.select(resource.c.id, record._date("birthdate"))
             .where(resource.c.type == "Patient", resource.c.deleted.is_(False)))
    if practice is not None:
        query = query.join(sp_reference, sp_reference.c.rid == resource.c.rid).where(
            sp_reference.c.param == "general-practitioner",
            sp_reference.c.target_type == "Organization", sp_reference.c.target_id == practice)
    return dict((await conn.execute(query)).all())


def _age(born: float | None, on: date) -> int | None:
    day = record.day_of(born)
    if day is None:
        return None
    return on.year - day.year - ((on.month, on.day) < (day.month, day.day))


async def compute(conn: AsyncConnection, practice: str | None, on: date) -> list[Indicator]:
    patients = await registered(conn, practice)
    scope: Sequence[str] | None = sorted(patients) if practice is not None else None
    found: dict[str, record.Facts] = defaultdict(record.Facts)
    await record._risks(conn, scope, found)
    await record._plans(conn, scope, found)
    risky = sorted(p for p, f in found.items() if p in patients and high_risk(f))
    with_plan = [p for p in risky if found[p].plans]
    plans = sorted((pid, plan_id, review) for pid, f in found.items() if pid in patients
                   for plan_id, _, review in f.plans)
    overdue = [pid for pid, _, review in plans if review and review[:10] < on.isoformat()]
    # follow-ups whose due date has come: done in time, or not
    query = sa.select(items.c.patient_id, items.c.task_id, items.c.due, items.c.status,
                      items.c.done_on).where(items.c.rule == "ae-follow-up",
                                             items.c.due <= on.isoformat())
    if practice is not None:
        query = query.where(items.c.team == practice)
    follow = (await conn.execute(query)).all()
    in_time = [r.task_id for r in follow if r.status == "completed" and r.done_on
               and r.done_on <= r.due]
    # A&E attendances of the over-75s in the 12 months to `on`
    old = sorted(p for p, born in patients.items() if (_age(born, on) or 0) >= 75)
    attendances = await _attendances(conn, old, on)
    return [
        Indicator("high-risk-with-plan", "High-risk patients with an active anticipatory "
                  "care plan", risky, with_plan),
        Indicator("plan-review-overdue", "Anticipatory care plans overdue for review",
                  [p for p, _, _ in plans], overdue),
        Indicator("follow-up-in-2-days", "Follow-ups after A&E or emergency discharge done "
                  "within 2 working days", [r.task_id for r in follow], in_time),
        Indicator("ae-per-1000-over-75", "A&E attendances per 1,000 patients aged 75 and "
                  "over, 12 months", old, sorted({p for p, _ in attendances}),
                  count=len(attendances), per=1000),
    ]


async def _attendances(conn: AsyncConnection, patients: list[str], on: date
                       ) -> list[tuple[str, str]]:
    if not patients:
        return []
    since = record.epoch(on - timedelta(days=365))
    end = record.epoch(on + timedelta(days=1))
    d = sp_date.alias()
    found: list[tuple[str, str]] = []
    for start in range(0, len(patients), 5000):
        part = patients[start:start + 5000]
        rows = await conn.execute(
            sa.select(resource.c.patient_id, resource.c.id)
            .join_from(resource, d, sa.and_(d.c.rid == resource.c.rid, d.c.param == "date"))
            .where(resource.c.type == "Encounter", resource.c.deleted.is_(False),
                   resource.c.patient_id.in_(part), d.c.lo >= since, d.c.lo < end,
                   sa.or_(record._has_token("class", ("EMER",)),
                          record._has_token("type", tuple(AE_CODES))),
                   ~record._has_token("status", record.ENCOUNTER_VOID)).distinct())
        found += [(p, i) for p, i in rows]
    return found


def report(ind: Indicator, practice: str | None, on: date,
           visible: set[str] | None) -> dict[str, Any]:
    """The MeasureReport of `ind`; drill-down lists name only the patients in `visible`
    (None: all) and say how many others the reader may not see."""
    def listed(name: str, subjects: list[str]) -> dict[str, Any]:
        kind = "Task" if ind.code == "follow-up-in-2-days" else "Patient"
        shown = [s for s in subjects if visible is None or kind == "Task" or s in visible]
        body: dict[str, Any] = {"resourceType": "List", "id": name, "status": "current",
                                "mode": "snapshot",
                                "entry": [{"item": {"reference": f"{kind}/{s}"}}
                                          for s in shown]}
        if len(shown) < len(subjects):
            body["note"] = [{"text": f"{len(subjects) - len(shown)} more you may not see."}]
        if not shown:
            del body["entry"]
            body["emptyReason"] = {"text": "none" if not subjects else "withheld"}
        return body

    group: dict[str, Any] = {"population": [
        {"code": {"coding": [{"system": POPULATION, "code": "initial-population"}]},
         "count": len(ind.population), "subjectResults": {"reference": "#population"}},
        {"code": {"coding": [{"system": POPULATION, "code": "numerator"}]},
         "count": ind.count if ind.count is not None else len(ind.numerator),
         "subjectResults": {"reference": "#numerator"}}]}
    if ind.score is not None:
        group["measureScore"] = {"value": ind.score,
                                 "unit": "per 1000" if ind.per == 1000 else "proportion"}
    body: dict[str, Any] = {
        "resourceType": "MeasureReport", "status": "complete", "type": "subject-list",
        "contained": [listed("population", ind.population), listed("numerator",
                                                                   ind.numerator)],
        "measure": MEASURE + ind.code, "date": on.isoformat(),
        "period": {"start": (on - timedelta(days=365)).isoformat(), "end": on.isoformat()},
        "group": [group], "extension": [{
            "url": "https://carenet.invalid/fhir/StructureDefinition/indicator-title",
            "valueString": ind.title}]}
    if practice is not None:
        body["reporter"] = {"reference": f"Organization/{practice}"}
    return body
