"""Home readings and questionnaire answers: checked form input to FHIR resources (pure).

Observation shape: FHIR R4 vital signs (https://hl7.org/fhir/R4/observation-vitalsigns.html):
category vital-signs, the LOINC code of the profile, UCUM units; blood pressure is the panel
85354-9 with systolic 8480-6 and diastolic 8462-4 components. SNOMED CT codes beside them
(UK Core practice). Blood glucose is a point-of-care test (LOINC 15074-8, mmol/L), category
laboratory. The limits below are there to catch typing mistakes (a weight of 700 kg, a
reading of 12/80 typed the wrong way round), not clinical thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

LOINC, SNOMED, UCUM = "http://loinc.org", "http://snomed.info/sct", "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str
    unit: str  # UCUM
    shown_unit: str
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Kind:
    key: str
    title: str
    loinc: tuple[str, str]
    snomed: tuple[str, str]
    category: str
    fields: tuple[Field, ...]


KINDS = {k.key: k for k in (
    Kind("blood-pressure", "Blood pressure", ("85354-9", "Blood pressure panel"),
         ("75367002", "Blood pressure"), "vital-signs",
         (Field("systolic", "Systolic (top number)", "mm[Hg]", "mmHg", 50, 260),
          Field("diastolic", "Diastolic (bottom number)", "mm[Hg]", "mmHg", 30, 160))),
    Kind("weight", "Weight", ("29463-7", "Body weight"), ("27113001", "Body weight"),
         "vital-signs", (Field("weight", "Weight", "kg", "kg", 2, 400),)),
    Kind("glucose", "Blood glucose", ("15074-8", "Glucose [Moles/volume] in Blood"),
         ("33747003", "Glucose measurement, blood"), "laboratory",
         (Field("glucose", "Blood glucose", "mmol/L", "mmol/L", 1, 40),)),
)}
COMPONENTS = {"systolic": ("8480-6", "Systolic blood pressure"),
              "diastolic": ("8462-4", "Diastolic blood pressure")}


class Invalid(ValueError):
    """What is wrong with the form, per field, in words a person can act on."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def _number(form: dict[str, str], f: Field, errors: dict[str, str]) -> float | None:
    text = (form.get(f.name) or "").strip()
    if not text:
        errors[f.name] = f"Enter your {f.label.lower()} in {f.shown_unit}"
        return None
    try:
        value = float(text)
    except ValueError:
        errors[f.name] = f"{f.label} must be a number, like {f.low + (f.high - f.low) / 4:g}"
        return None
    if not f.low <= value <= f.high:
        errors[f.name] = f"{f.label} must be between {f.low:g} and {f.high:g} {f.shown_unit}"
        return None
    return value


def _when(form: dict[str, str], errors: dict[str, str], now: datetime) -> str:
    text = (form.get("when") or "").strip()
    if not text:
        return now.isoformat(timespec="seconds")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        errors["when"] = "Enter the date and time of the reading, like 2026-03-04T08:30"
        return ""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when > now:
        errors["when"] = "The date of the reading cannot be in the future"
    return when.isoformat(timespec="seconds")


def reading(form: dict[str, str], *, patient: str, performer: str,
            now: datetime | None = None) -> Body:
    """The Observation of a home reading from its form, or Invalid."""
    now = now or datetime.now(UTC)
    kind = KINDS.get(form.get("kind", ""))
    if kind is None:
        raise Invalid({"kind": "Choose what you measured"})
    errors: dict[str, str] = {}
    values = {f.name: _number(form, f, errors) for f in kind.fields}
    when = _when(form, errors, now)
    sys_, dia = values.get("systolic"), values.get("diastolic")
    if sys_ is not None and dia is not None and sys_ <= dia:
        errors["diastolic"] = "The bottom number must be lower than the top number"
    if errors:
        raise Invalid(errors)
    body: Body = {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": kind.category}]}],
        "code": {"coding": [{"system": LOINC, "code": kind.loinc[0], "display": kind.loinc[1]},
                            {"system": SNOMED, "code": kind.snomed[0],
                             "display": kind.snomed[1]}], "text": kind.title},
        "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when,
        "performer": [{"reference": performer}],
        "note": [{"text": "Home reading, entered by the patient or their carer"}],
    }
    if kind.key == "blood-pressure":
        body["component"] = [{
            "code": {"coding": [{"system": LOINC, "code": COMPONENTS[f.name][0],
                                 "display": COMPONENTS[f.name][1]}]},
            "valueQuantity": _quantity(values[f.name], f)} for f in kind.fields]
    else:
        f = kind.fields[0]
        body["valueQuantity"] = _quantity(values[f.name], f)
    return body


def _quantity(value: float | None, f: Field) -> Body:
    assert value is not None
    number: float | int = int(value) if value.is_integer() else value
    return {"value": number, "unit": f.shown_unit, "system": UCUM, "code": f.unit}


# ---- questionnaires ----------------------------------------------------------------------

ANSWERABLE = ("string", "text", "integer", "decimal", "boolean", "choice")


def questions(questionnaire: Body) -> list[Body]:
    """The items a person answers on the page (groups flattened, display items kept)."""
    out: list[Body] = []
    for item in questionnaire.get("item") or ():
        if item.get("type") == "group":
            out.extend(questions(item))
        elif item.get("type") in (*ANSWERABLE, "display"):
            out.append(item)
    return out


def response(questionnaire: Body, form: dict[str, str], *, patient: str, author: str,
             now: datetime | None = None) -> Body:
    """The QuestionnaireResponse of a filled-in form (https://hl7.org/fhir/R4/
    questionnaireresponse.html), or Invalid naming the questions to fix."""
    now = now or datetime.now(UTC)
    errors: dict[str, str] = {}
    items: list[Body] = []
    for q in questions(questionnaire):
        kind, link = q.get("type"), q.get("linkId")
        if kind == "display" or not link:
            continue
        text = (form.get(f"q-{link}") or "").strip()
        if not text:
            if q.get("required"):
                errors[f"q-{link}"] = f"Answer: {q.get('text', link)}"
            continue
        answer: Body
        try:
            if kind == "integer":
                answer = {"valueInteger": int(text)}
            elif kind == "decimal":
                answer = {"valueDecimal": float(text)}
            elif kind == "boolean":
                answer = {"valueBoolean": text == "yes"}
            elif kind == "choice":
                options = {_option_code(o): o.get("valueCoding") or {"code": _option_code(o)}
                           for o in q.get("answerOption") or ()}
                if text not in options:
                    raise ValueError
                answer = {"valueCoding": options[text]}
            else:
                answer = {"valueString": text[:2000]}
        except ValueError:
            errors[f"q-{link}"] = f"Check your answer to: {q.get('text', link)}"
            continue
        items.append({"linkId": link, "text": q.get("text"), "answer": [answer]})
    if errors:
        raise Invalid(errors)
    canonical = questionnaire.get("url") or f"Questionnaire/{questionnaire['id']}"
    return {"resourceType": "QuestionnaireResponse", "status": "completed",
            "questionnaire": canonical, "subject": {"reference": f"Patient/{patient}"},
            "authored": now.isoformat(timespec="seconds"), "author": {"reference": author},
            "source": {"reference": author}, "item": items}


def _option_code(option: Body) -> str:
    coding = option.get("valueCoding") or {}
    return str(coding.get("code") or option.get("valueString") or "")
