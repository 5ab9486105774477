"""The shape of an anticipatory care plan in FHIR R4 (https://hl7.org/fhir/R4/careplan.html).

One `CarePlan` per plan, category SNOMED CT 713603004 (`data/plans/codes.csv`). Where each part
of the plan lives (README "Anticipatory care plans" has the table):

- what matters to the person: `CarePlan.goal` → a `Goal` with `expressedBy` = the Patient (or
  their carer, a RelatedPerson); the reference carries the `what-matters` extension (true) and
  the goal's words in `display`, so the plan reads alone; clinical goals: the other goals;
- the named care coordinator: `CarePlan.author` (R4: "the author is responsible for the care
  plan"), a Practitioner or PractitionerRole; the care team: `CarePlan.careTeam`;
- planned activities: `CarePlan.activity.detail`; the review date: the activity coded
  425268008 "Review of care plan", `detail.scheduledPeriod.start`;
- contingencies ("if X happens, do Y, call Z out of hours"): activities carrying the
  `contingency` extension (trigger = X, outOfHours = whom to call out of hours), with
  `detail.description` = Y and `detail.performer` = whom to call in hours;
- treatment preferences in the spirit of ReSPECT (https://www.resus.org.uk/respect): the
  `respect` extension on the CarePlan (balance of care, CPR recommendation, preferred place
  of care and of death, recommendations);
- comments: `CarePlan.note` (`authorReference` names who wrote each).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data" / "plans" / "codes.csv"
SNOMED = "http://snomed.info/sct"
SD = "https://carenet.invalid/fhir/StructureDefinition/"
WHAT_MATTERS = SD + "care-plan-what-matters"
CONTINGENCY = SD + "care-plan-contingency"
RESPECT = SD + "care-plan-respect"
BALANCE_SYSTEM = "https://carenet.invalid/fhir/CodeSystem/respect-balance"
# ReSPECT form section 3: a point between the two ends of one scale.
BALANCE = {"sustain-life": "Prioritise sustaining life, even at the expense of some comfort",
           "balanced": "A balance between sustaining life and comfort",
           "comfort": "Prioritise comfort, even at the expense of sustaining life"}
PERSON_TYPES = ("Patient", "RelatedPerson")  # what patients and carers are as FHIR references
STAFF_TYPES = ("Practitioner", "PractitionerRole")


@dataclass(frozen=True, slots=True)
class Code:
    system: str
    code: str
    display: str

    def coding(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


@cache
def codes() -> dict[str, Code]:
    """use → Code, from data/plans/codes.csv (rows without a code are text-only uses)."""
    with DATA.open(newline="", encoding="utf-8") as f:
        return {r["use"]: Code(r["system"], r["code"], r["display"]) for r in csv.DictReader(f)}


def category() -> dict[str, Any]:
    return {"coding": [codes()["category"].coding()], "text": "Anticipatory care plan"}


def is_anticipatory(plan: dict[str, Any] | None) -> bool:
    """Whether a CarePlan is an anticipatory care plan (its category holds our code)."""
    if not isinstance(plan, dict) or plan.get("resourceType") != "CarePlan":
        return False
    wanted = codes()["category"]
    return any(c.get("system") == wanted.system and c.get("code") == wanted.code
               for cat in plan.get("category") or () if isinstance(cat, dict)
               for c in cat.get("coding") or () if isinstance(c, dict))


def ext(element: dict[str, Any], url: str) -> dict[str, Any] | None:
    for e in element.get("extension") or ():
        if isinstance(e, dict) and e.get("url") == url:
            return e
    return None


def sub(extension: dict[str, Any] | None, name: str) -> Any:
    """The value of sub-extension `name` of a complex extension (None when absent)."""
    for e in (extension or {}).get("extension") or ():
        if isinstance(e, dict) and e.get("url") == name:
            for key, value in e.items():
                if key.startswith("value"):
                    return value
    return None


def ref_type(reference: Any) -> str | None:
    """The resource type of a relative reference ('Patient/1' → 'Patient')."""
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
        head, _, tail = reference["reference"].partition("/")
        return head if tail else None
    return None


def has_code(concept: Any, use: str) -> bool:
    wanted = codes()[use]
    return isinstance(concept, dict) and any(
        c.get("system") == wanted.system and c.get("code") == wanted.code
        for c in concept.get("coding") or () if isinstance(c, dict))


def is_contingency(activity: dict[str, Any]) -> bool:
    return ext(activity, CONTINGENCY) is not None


def review_date(plan: dict[str, Any]) -> str | None:
    """The planned review date: the 'Review of care plan' activity's scheduled start."""
    for activity in plan.get("activity") or ():
        detail = activity.get("detail") or {} if isinstance(activity, dict) else {}
        if has_code(detail.get("code"), "review") and detail.get("status") != "cancelled":
            start = (detail.get("scheduledPeriod") or {}).get("start")
            if isinstance(start, str) and start:
                return start
    return None


def review_activity(on: date | str, performer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The activity that carries the review date."""
    detail: dict[str, Any] = {
        "code": {"coding": [codes()["review"].coding()]}, "status": "scheduled",
        "description": "Review this anticipatory care plan with the person",
        "scheduledPeriod": {"start": on if isinstance(on, str) else on.isoformat()}}
    if performer:
        detail["performer"] = [performer]
    return {"detail": detail}


def what_matters_goals(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's goal references marked as what matters to the person."""
    return [g for g in plan.get("goal") or ()
            if isinstance(g, dict) and (ext(g, WHAT_MATTERS) or {}).get("valueBoolean")]


def clinical_goals(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in plan.get("goal") or ()
            if isinstance(g, dict) and not (ext(g, WHAT_MATTERS) or {}).get("valueBoolean")]


def goal_ref(goal_id: str, text: str, *, what_matters: bool) -> dict[str, Any]:
    ref: dict[str, Any] = {"reference": f"Goal/{goal_id}", "display": text}
    if what_matters:
        ref["extension"] = [{"url": WHAT_MATTERS, "valueBoolean": True}]
    return ref


def respect(plan: dict[str, Any]) -> dict[str, Any]:
    """The ReSPECT preferences as a plain dict (keys absent when not recorded)."""
    found = ext(plan, RESPECT)
    out: dict[str, Any] = {}
    for name in ("balance", "cpr", "preferredPlaceOfCare", "preferredPlaceOfDeath",
                 "recommendations", "agreedWith"):
        value = sub(found, name)
        if value is not None:
            out[name] = value
    return out


def respect_extension(*, balance: str | None = None, cpr: str | None = None,
                      place_of_care: str | None = None, place_of_death: str | None = None,
                      recommendations: str | None = None,
                      agreed_with: str | None = None) -> dict[str, Any]:
    """The ReSPECT extension; `balance` a key of BALANCE, `cpr` 'cpr-recommended' or
    'cpr-not-recommended'."""
    parts: list[dict[str, Any]] = []
    if balance:
        parts.append({"url": "balance", "valueCodeableConcept": {"coding": [
            {"system": BALANCE_SYSTEM, "code": balance, "display": BALANCE[balance]}]}})
    if cpr:
        parts.append({"url": "cpr", "valueCodeableConcept": {"coding": [codes()[cpr].coding()]}})
    for name, value in (("preferredPlaceOfCare", place_of_care),
                        ("preferredPlaceOfDeath", place_of_death),
                        ("recommendations", recommendations), ("agreedWith", agreed_with)):
        if value:
            parts.append({"url": name, "valueString": value})
    return {"url": RESPECT, "extension": parts}


def contingency(trigger: str, action: str, *, out_of_hours: str | None = None,
                performer: dict[str, Any] | None = None) -> dict[str, Any]:
    """A contingency activity: if `trigger`, do `action` (call `performer` in hours,
    `out_of_hours` otherwise)."""
    parts = [{"url": "trigger", "valueString": trigger}]
    if out_of_hours:
        parts.append({"url": "outOfHours", "valueString": out_of_hours})
    detail: dict[str, Any] = {"status": "not-started", "description": action}
    if performer:
        detail["performer"] = [performer]
    return {"extension": [{"url": CONTINGENCY, "extension": parts}], "detail": detail}


def text_of(concept: Any) -> str | None:
    """A CodeableConcept's words: its text, else its first display, else its first code."""
    if not isinstance(concept, dict):
        return None
    if concept.get("text"):
        return str(concept["text"])
    for c in concept.get("coding") or ():
        if isinstance(c, dict) and (c.get("display") or c.get("code")):
            return str(c.get("display") or c.get("code"))
    return None
