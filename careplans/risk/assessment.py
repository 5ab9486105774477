"""From a computed score to its FHIR RiskAssessment, its narrative and its fingerprint.

The shape (https://hl7.org/fhir/R4/riskassessment.html), one current resource per patient
and method, at a fixed id (`assessment_id`), so a new result is a new version of it:
- `status` final; `subject` the Patient; `occurrenceDateTime` the as-of date of the run that
  produced this version; `performer` (display only) the carenet stratifier;
- `method` a coding of METHOD_SYSTEM: FRAILTY (eFI-style frailty index) or ADMISSION
  (admission-risk priority score); `code` the SNOMED CT observable of the score;
- `prediction[0]`: `outcome` (frailty, or emergency hospital admission), `qualitativeRisk`
  (the band: fit/mild/moderate/severe of BAND_SYSTEM, with the SNOMED CT frailty finding; or
  low/moderate/high of the HL7 risk-probability code system), `probabilityDecimal` the
  frailty index (deficits/36; not a probability, the field the eFI score travels in), or for
  the admission score its points in the extension SCORE_EXTENSION; `rationale` the
  one-line narrative;
- `basis`: references to exactly the entries that counted (Conditions, Observations,
  Procedures, Encounters, MedicationRequests);
- `note[0]`: what changed since the previous version (absent on the first);
- `text`: the narrative a clinician reads in ten seconds, then the change.
"""

from __future__ import annotations

import hashlib
import html
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson

from careplans.codes import SNOMED, common
from careplans.risk import admission as adm
from careplans.risk import frailty as fr
from careplans.risk.evidence import Entry, Facts

METHOD_SYSTEM = "https://carenet.invalid/fhir/CodeSystem/risk-method"
BAND_SYSTEM = "https://carenet.invalid/fhir/CodeSystem/efi-band"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
IDENTIFIER_SYSTEM = "https://carenet.invalid/fhir/Id/risk-assessment"
SCORE_EXTENSION = "https://carenet.invalid/fhir/StructureDefinition/priority-score"
FRAILTY = "efi-style-frailty-index"
ADMISSION = "admission-risk-priority-score"
METHODS = {
    FRAILTY: "eFI-style frailty index (36 deficits of Clegg et al., Age Ageing 2016;45:353; "
             "not the licensed eFI)",
    ADMISSION: "Admission-risk priority score (carenet points table, careplans/risk/README.md)",
}
FRAILTY_MIN_AGE = 65  # the eFI was developed and validated in people aged 65+ (Clegg 2016)
ADMISSION_MIN_AGE = 18
PERFORMER = "carenet risk stratifier"
_ID_NAMESPACE = uuid.UUID("0c6a3f4e-5e21-4c55-9a57-3d2f0b6b1e10")
_BAND_FINDING = {"mild": "mild frailty", "moderate": "moderate frailty",
                 "severe": "severe frailty"}


@dataclass(slots=True)
class Outcome:
    """One computed assessment, before it is FHIR: what it found and how to say it."""

    method: str
    patient_id: str
    band: str
    score: float  # frailty: deficits/36; admission: points
    items: list[tuple[str, str]]  # (key, what the narrative says of it)
    basis: list[str]
    narrative: str
    recheck: date | None = None  # when time alone may change it (a window ends, a birthday)
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = hashlib.sha256(orjson.dumps(self.summary())).hexdigest()[:32]

    def summary(self) -> dict[str, Any]:
        """What is kept of it between runs to say what changed (and to tell a change)."""
        return {"band": self.band, "score": round(self.score, 4), "items": self.items,
                "basis": self.basis, "narrative": self.narrative}


def assessment_id(method: str, patient_id: str) -> str:
    """The one id of a patient's current assessment by `method`."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{method}|{patient_id}"))


def _month(day: date | None) -> str:
    return day.strftime("%Y-%m") if day else "undated"


def _deficit_detail(deficit: str, entries: list[Entry]) -> str:
    label = fr.LABELS[deficit]
    if deficit == "polypharmacy":
        return f"polypharmacy ({len(entries)} medicines in 12 months)"
    if deficit in fr.WINDOW_DAYS:
        months = ", ".join(_month(e.day) for e in entries)
        return f"{label} ×{len(entries)} ({months})" if len(entries) > 1 else \
            f"{label} ({months})"
    measured = [e for e in entries if e.code in fr.PREDICATES and e.value is not None]
    if measured and len(measured) == len(entries):
        e = measured[-1]
        return f"{label} ({fr.PREDICATES[e.code][0]} {e.value:g}, {_month(e.day)})"
    return label


def _recheck(entries: list[Entry], windows: list[int], birth: date | None,
             ages: tuple[int, ...], as_of: date) -> date | None:
    """The first day after `as_of` when time alone could change the result: an entry
    leaves a window or a future-dated one arrives; a birthday crosses an age threshold."""
    days: list[date] = []
    for e in entries:
        if e.day is None:
            continue
        if e.day > as_of:
            days.append(e.day)
        days += [e.day + timedelta(days=w) for w in windows]
    if birth is not None:
        for age in ages:
            try:
                days.append(birth.replace(year=birth.year + age))
            except ValueError:  # 29 February
                days.append(date(birth.year + age, 3, 1))
    later = [d for d in days if d > as_of]
    return min(later) if later else None


def frailty_outcome(facts: Facts, as_of: date) -> Outcome | None:
    """The frailty assessment (65 and over; None otherwise or without a birth date)."""
    age = facts.age(as_of)
    if age is None or age < FRAILTY_MIN_AGE:
        return None
    result = fr.frailty(facts, as_of)
    items = [(d, _deficit_detail(d, es)) for d, es in result.deficits.items()]
    head = f"{result.band} frailty ({result.score:.2f}, {result.count} of 36 deficits)"
    narrative = head + (": " + ", ".join(text for _, text in items) if items else "")
    recheck = _recheck(facts.entries, [fr.WINDOW_DAYS["falls"], fr.VALUE_WINDOW_DAYS,
                                       fr.POLYPHARMACY_DAYS], None, (), as_of)
    return Outcome(FRAILTY, facts.patient_id, result.band, result.score, items,
                   [e.ref for e in result.evidence()], narrative, recheck)


def _age_band(age: int) -> str:
    return "85 or over" if age >= 85 else "75-84"


def admission_outcome(facts: Facts, as_of: date) -> Outcome | None:
    """The admission-risk flags and score (18 and over; None otherwise)."""
    age = facts.age(as_of)
    if age is None or age < ADMISSION_MIN_AGE:
        return None
    result = adm.admission_risk(facts, as_of)
    items = [(f.name, f"{f.name} {_age_band(age) if f.name == 'age' else f.detail} "
                      f"+{f.points}") for f in result.factors]
    head = f"{result.tier} admission risk ({result.points} points)"
    narrative = head + (": " + ", ".join(text for _, text in items) if items else
                        ": no flags")
    recheck = _recheck(facts.entries, [adm.WINDOW_DAYS], facts.birth_date,
                       (FRAILTY_MIN_AGE, 75, 85), as_of)
    return Outcome(ADMISSION, facts.patient_id, result.tier, float(result.points), items,
                   [e.ref for e in result.evidence()], narrative, recheck)


def outcomes(facts: Facts, as_of: date) -> list[Outcome]:
    """Every assessment that applies to the patient."""
    return [o for o in (frailty_outcome(facts, as_of), admission_outcome(facts, as_of))
            if o is not None]


def changes(previous: dict[str, Any] | None, since: str | None, now: Outcome) -> str | None:
    """Why the result differs from the previous version ("why did the band rise?")."""
    if previous is None:
        return None
    keys_then = {k for k, _ in previous.get("items", ())}
    keys_now = {k for k, _ in now.items}
    old_score, new_score = previous.get("score", 0), round(now.score, 4)
    what = "frailty" if now.method == FRAILTY else "admission risk"
    shown = (f"{old_score:.2f} → {new_score:.2f}" if now.method == FRAILTY
             else f"{old_score:g} → {new_score:g} points")
    parts = [f"{previous.get('band')} → {now.band} {what} ({shown})"
             if previous.get("band") != now.band else f"{now.band} {what} ({shown})"]
    texts = dict(now.items)
    if added := [texts[k] for k, _ in now.items if k not in keys_then]:
        parts.append("new: " + ", ".join(added))
    if gone := [text for k, text in previous.get("items", ()) if k not in keys_now]:
        parts.append("no longer: " + ", ".join(gone))
    if changed := [texts[k] for k, text in previous.get("items", ())
                   if k in keys_now and texts[k] != text]:
        parts.append("changed: " + ", ".join(changed))
    return f"Since {since or 'the previous version'}: " + "; ".join(parts) + "."


def resource(outcome: Outcome, as_of: date, change: str | None = None) -> dict[str, Any]:
    """The RiskAssessment of `outcome` (its id set)."""
    method = outcome.method
    if method == FRAILTY:
        code, term = common("frailty index score (Observation.code for a computed index)")
        outcome_code = common("frailty")
        risk: dict[str, Any] = {"coding": [{"system": BAND_SYSTEM, "code": outcome.band,
                                            "display": f"{outcome.band} frailty"}],
                                "text": f"{outcome.band} frailty"}
        if outcome.band in _BAND_FINDING:
            finding = common(_BAND_FINDING[outcome.band])
            risk["coding"].append({"system": SNOMED, "code": finding[0], "display": finding[1]})
        prediction: dict[str, Any] = {"probabilityDecimal": round(outcome.score, 4)}
    else:
        outcome_code = common("emergency hospital admission")
        risk = {"coding": [{"system": RISK_PROBABILITY, "code": outcome.band,
                            "display": f"{outcome.band.capitalize()} likelihood"}],
                "text": f"{outcome.band} admission risk"}
        prediction = {"extension": [{"url": SCORE_EXTENSION,
                                     "valueInteger": int(outcome.score)}]}
    prediction.update({
        "outcome": {"coding": [{"system": SNOMED, "code": outcome_code[0],
                                "display": outcome_code[1]}]},
        "qualitativeRisk": risk,
        "rationale": outcome.narrative,
    })
    body: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": assessment_id(method, outcome.patient_id),
        "text": {"status": "generated", "div": _div(outcome.narrative, change)},
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": f"{method}/{outcome.patient_id}"}],
        "status": "final",
        "method": {"coding": [{"system": METHOD_SYSTEM, "code": method,
                               "display": METHODS[method]}], "text": METHODS[method]},
        "subject": {"reference": f"Patient/{outcome.patient_id}"},
        "occurrenceDateTime": as_of.isoformat(),
        "performer": {"display": PERFORMER},
        "prediction": [prediction],
    }
    if method == FRAILTY:
        body["code"] = {"coding": [{"system": SNOMED, "code": code, "display": term}]}
    if outcome.basis:
        body["basis"] = [{"reference": ref} for ref in outcome.basis]
    if change:
        body["note"] = [{"text": change}]
    return body


def _div(narrative: str, change: str | None) -> str:
    parts = [f"<p>{html.escape(narrative)}</p>"]
    if change:
        parts.append(f"<p>{html.escape(change)}</p>")
    return f'<div xmlns="http://www.w3.org/1999/xhtml">{"".join(parts)}</div>'
