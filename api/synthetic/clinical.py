"""Coded history: Conditions, measurements and the frailty picture they add up to.

Every condition code comes from `careplans/data/codes/` (the eFI deficit lists, or
`snomed-common.csv`), so each deficit written here is one the risk engine will find.
Rates by age and sex are in `data/prevalence.csv` (sources in `data/SOURCES.md`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from api.synthetic.record import Record
from api.synthetic.tables import rate
from careplans.codes import SNOMED, common, term

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


@dataclass(frozen=True, slots=True)
class Spec:
    """How one condition is coded and drawn.

    `deficit`: the eFI list its codes come from (None: from snomed-common.csv);
    `full`: whether the full (True) or damped latent frailty factor scales its rate;
    `onset`: youngest age at onset; `recent`: an event or finding of the last few years.
    """

    deficit: str | None
    codes: tuple[str, ...]
    full: bool
    onset: int
    recent: bool = False


SPECS: dict[str, Spec] = {
    "hypertension": Spec("hypertension", ("38341003", "59621000"), False, 25),
    "diabetes": Spec("diabetes", ("44054006",), False, 25),
    "copd": Spec("respiratory-disease", ("13645005",), True, 40),
    "asthma": Spec("respiratory-disease", ("195967001",), False, 2),
    "heart-failure": Spec("heart-failure", ("84114007",), True, 40),
    "atrial-fibrillation": Spec("atrial-fibrillation", ("49436004",), True, 40),
    "ckd": Spec("chronic-kidney-disease", ("700378005", "700378005", "700379002", "431857002"),
                False, 18),
    "dementia": Spec("memory-cognitive-problems", ("52448006", "26929004", "56267009"), True, 60,
                     recent=True),
    "depression": Spec(None, ("35489007",), False, 16),
    "chd": Spec("ischaemic-heart-disease", ("53741008", "22298006"), True, 40),
    "stroke": Spec("cerebrovascular-disease", ("230690007", "266257000"), True, 40),
    "osteoarthritis": Spec("arthritis", ("396275006",), False, 45),
    "osteoporosis": Spec("osteoporosis", ("64859006",), False, 50),
    "parkinsons": Spec("parkinsonism-tremor", ("49049000",), True, 50),
    "falls": Spec("falls", ("161898004", "279992002"), True, 60, recent=True),
    "fracture": Spec("fragility-fracture", ("5913000", "123971006", "50448004"), True, 50,
                     recent=True),
    "incontinence": Spec("urinary-incontinence", ("165232002",), True, 40),
    "visual-impairment": Spec("visual-impairment", ("397540003", "193699007"), True, 60),
    "hearing-impairment": Spec("hearing-impairment", ("15188001",), True, 45),
    "social-isolation": Spec("social-vulnerability", ("105529008", "267076002"), False, 65,
                             recent=True),
    "housebound": Spec("housebound", ("160689007",), True, 70, recent=True),
    "requiring-care": Spec("requirement-for-care", ("184156005", "160774006", "248171000000108"),
                           True, 65, recent=True),
    # Minor eFI deficits (rates `assumed`, see data/SOURCES.md).
    "dizziness": Spec("dizziness", ("404640003",), True, 65, recent=True),
    "dyspnoea": Spec("dyspnoea", ("267036007", "60845006"), True, 65, recent=True),
    "foot-problems": Spec("foot-problems", ("201037000",), True, 65),
    "skin-ulcer": Spec("skin-ulcer", ("46742003", "399912005"), True, 75, recent=True),
    "sleep-disturbance": Spec("sleep-disturbance", ("193462001",), False, 50),
    "thyroid-disease": Spec("thyroid-disease", ("40930008",), False, 40),
    "urinary-system-disease": Spec("urinary-system-disease", ("61033006",), False, 60),
    "peptic-ulcer": Spec("peptic-ulcer", ("13200003",), False, 60),
    "anaemia": Spec("anaemia", ("271737000", "87522002"), True, 65, recent=True),
    "mobility-problems": Spec("mobility-transfer-problems", ("8510008", "160693001"), True, 75,
                              recent=True),
    "hypotension": Spec("hypotension-syncope", ("28651003",), True, 70),
    "pvd": Spec("peripheral-vascular-disease", ("400047006",), True, 60),
    "heart-valve-disease": Spec("heart-valve-disease", ("60573004", "48724000"), True, 70),
    "weight-loss": Spec("weight-loss-anorexia", ("89362005",), True, 75, recent=True),
}
# Conditions that make others likelier, as in clinical practice.
BOOSTS = {"falls": (("dementia", "parkinsons", "stroke"), 1.6),
          "fracture": (("osteoporosis", "falls"), 1.5),
          "ckd": (("diabetes", "hypertension", "heart-failure"), 1.15)}
FRAILTY_CODES = {"mild": "mild frailty", "moderate": "moderate frailty",
                 "severe": "severe frailty"}


CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "laboratory": "Laboratory",
                    "social-history": "Social History", "survey": "Survey"}
EGFR = "1011481000000105"  # eGFR (CKD-EPI), from efi-value-rules.csv
HAEMOGLOBIN = "1022431000000105"  # from efi-value-rules.csv


def coding(code: str, display: str | None = None, system: str = SNOMED) -> dict[str, Any]:
    """A CodeableConcept of one coding; the display from the code lists when not given."""
    shown = display or term(code)
    one = {"system": system, "code": code, "display": shown} if shown else \
        {"system": system, "code": code}
    return {"coding": [one]}


def _condition(rec: Record, key: str, code: str, onset: date) -> str:
    return rec.add({
        "resourceType": "Condition",
        "clinicalStatus": coding("active", "Active", CLINICAL_STATUS),
        "verificationStatus": coding("confirmed", "Confirmed", VERIFICATION),
        "category": [coding("problem-list-item", "Problem List Item", CONDITION_CATEGORY)],
        "code": coding(code),
        "subject": rec.subject,
        "onsetDateTime": onset.isoformat(),
        "recordedDate": onset.isoformat(),
        "recorder": {"reference": rec.gp.practitioner_role},
    })


def conditions(rec: Record) -> None:
    """Draw each condition from its age/sex rate, scaled by the person's latent frailty."""
    for key, spec in SPECS.items():  # dict order: causes (dementia...) before effects (falls)
        p = rate(key, rec.age, rec.sex)
        if p <= 0 or rec.age < spec.onset:
            continue
        p *= rec.frailty_full if spec.full else rec.frailty_half
        boost = BOOSTS.get(key)
        if boost and rec.has(*boost[0]):
            p *= boost[1]
        if not rec.chance(min(p, 0.97)):
            continue
        if spec.recent:
            onset = rec.days_ago(30, 365 * 4)
        else:
            onset = rec.at_age(rec.rng.uniform(max(spec.onset, rec.age - 30), rec.age + 0.99))
        onset = max(onset, rec.at_age(spec.onset))
        rec.conditions[key] = _condition(rec, key, rec.rng.choice(spec.codes), onset)
        rec.onsets[key] = onset
        if spec.deficit:
            rec.deficits.add(spec.deficit)


def observation(rec: Record, *, code: dict[str, Any], category: str, day: date,
                value: dict[str, Any] | None = None, performer: str | None = None,
                **extra: Any) -> str:
    hour, minute = rec.working_time()
    obs: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "category": [coding(category, CATEGORY_DISPLAY[category], OBS_CATEGORY)],
        "code": code, "subject": rec.subject,
        "effectiveDateTime": f"{day.isoformat()}T{hour:02d}:{minute:02d}:00Z",
        "performer": [{"reference": performer or rec.nurse().practitioner_role}],
    }
    if value:
        obs.update(value)
    obs.update(extra)
    return rec.add(obs)


def quantity(value: float, unit: str, code: str, places: int = 0) -> dict[str, Any]:
    number: float = round(value, places) if places else int(round(value))
    return {"valueQuantity": {"value": number, "unit": unit, "system": UCUM, "code": code}}


def blood_pressure(rec: Record, day: date, systolic: float, diastolic: float,
                   performer: str | None = None, **extra: Any) -> str:
    """The FHIR vital-signs blood pressure panel (https://hl7.org/fhir/R4/observation-vitalsigns.html)."""
    return observation(
        rec, code=coding("85354-9", "Blood pressure panel with all children optional", LOINC),
        category="vital-signs", day=day, performer=performer,
        component=[
            {"code": coding("8480-6", "Systolic blood pressure", LOINC),
             **quantity(systolic, "mmHg", "mm[Hg]")},
            {"code": coding("8462-4", "Diastolic blood pressure", LOINC),
             **quantity(diastolic, "mmHg", "mm[Hg]")},
        ], **extra)


def measurements(rec: Record) -> None:
    """Blood pressure, weight and BMI, smoking, HbA1c, eGFR and haemoglobin, as monitored."""
    rng, age = rec.rng, rec.age
    if age >= 18 and rec.chance(0.8):
        status = _smoking(rec)
        observation(rec, code=coding("72166-2", "Tobacco smoking status", LOINC),
                    category="social-history", day=rec.days_ago(20, 365 * 3),
                    valueCodeableConcept=coding(*status))
    monitored = rec.has("hypertension", "diabetes", "ckd", "chd", "stroke", "heart-failure")
    bp_count = 2 if monitored else (1 if age >= 40 and rec.chance(0.6) else 0)
    for _ in range(bp_count):
        base = 118 + max(0, age - 30) * 0.45 + (12 if rec.has("hypertension") else 0)
        systolic = min(200.0, max(95.0, rng.gauss(base, 13)))
        blood_pressure(rec, rec.days_ago(7, 540), systolic,
                       min(115.0, max(55.0, rng.gauss(76 + (5 if monitored else 0), 8))))
    if age >= 18 and (age >= 65 or rec.has("diabetes") or rec.chance(0.4)):
        day = rec.days_ago(14, 700)
        height = rng.gauss(162 if rec.sex == "female" else 176, 7) / 100
        bmi = min(48.0, max(16.5, rng.gauss(27.5 + (2.5 if rec.has("diabetes") else 0)
                                           - (2.0 if "weight-loss-anorexia" in rec.deficits
                                              else 0), 4.5)))
        observation(rec, code=coding("8302-2", "Body height", LOINC), category="vital-signs",
                    day=day, **quantity(height * 100, "cm", "cm", 1))
        observation(rec, code=coding("29463-7", "Body weight", LOINC), category="vital-signs",
                    day=day, **quantity(bmi * height * height, "kg", "kg", 1))
        observation(rec, code=coding("39156-5", "Body mass index (BMI) [Ratio]", LOINC),
                    category="vital-signs", day=day, **quantity(bmi, "kg/m2", "kg/m2", 1))
    hba1c = coding("59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol",
                   LOINC)
    for _ in range(2 if rec.has("diabetes") else (1 if age >= 40 and rec.chance(0.2) else 0)):
        value = rng.gauss(58, 11) if rec.has("diabetes") else rng.gauss(37, 3)
        observation(rec, code=hba1c, category="laboratory", day=rec.days_ago(10, 365),
                    **quantity(max(25.0, value), "mmol/mol", "mmol/mol"))
    if rec.has("ckd") or monitored or age >= 65:
        for _ in range(2 if rec.has("ckd") else 1):
            observation(rec, code=coding(EGFR), category="laboratory",
                        day=rec.days_ago(10, 400), **quantity(_egfr(rec), "mL/min/1.73m2",
                                                              "mL/min/{1.73_m2}"))
    if rec.has("anaemia"):
        low = 105 if rec.sex == "female" else 118
        observation(rec, code=coding(HAEMOGLOBIN), category="laboratory",
                    day=rec.days_ago(10, 300), **quantity(rng.uniform(low - 15, low + 8),
                                                          "g/L", "g/L"))


def _egfr(rec: Record) -> float:
    """eGFR consistent with the record: < 60 exactly when CKD stage 3-4 is coded."""
    if rec.has("ckd"):
        return rec.rng.uniform(22, 58)
    return min(120.0, max(61.0, rec.rng.gauss(100 - 0.7 * max(0, rec.age - 35), 10)))


def _smoking(rec: Record) -> tuple[str, str, str]:
    """A smoking status (ONS Annual Population Survey: about 13% of adults smoke)."""
    current = 0.16 if rec.age < 60 else 0.09
    ex = 0.12 + 0.005 * max(0, rec.age - 30)
    if rec.has("copd"):
        current, ex = 0.4, 0.55
    x = rec.rng.random()
    if x < current:
        return "77176002", "Smoker", SNOMED
    if x < current + ex:
        return "8517006", "Ex-smoker", SNOMED
    return "266919005", "Never smoked tobacco", SNOMED


def frailty(rec: Record) -> None:
    """Barthel and MUST where care needs show, then the eFI and its frailty diagnosis (65+).

    eFI = deficits present / 36, bands fit <= 0.12 < mild <= 0.24 < moderate <= 0.36 < severe
    (Clegg et al., Age Ageing 2016; DESIGN.md). Polypharmacy is >= 5 distinct medicines.
    """
    if rec.has("requiring-care", "housebound") and rec.age >= 65:
        score = rec.rng.randint(6, 20)  # Barthel ADL index, 0-20 scale
        observation(rec, code=coding("725594005"), category="survey",
                    day=rec.days_ago(20, 300), valueInteger=score)
        if score <= 18:
            rec.deficits.add("activity-limitation")
    if "weight-loss-anorexia" in rec.deficits:
        observation(rec, code=coding("444297006"), category="survey",
                    day=rec.days_ago(20, 300), valueInteger=rec.rng.randint(1, 3))
    if len({m.code for m in rec.medicines}) >= 5:
        rec.deficits.add("polypharmacy")
    rec.efi = len(rec.deficits) / 36
    if rec.age < 65:
        return
    day = rec.days_ago(15, 330)
    code, _ = common("frailty index score (Observation.code for a computed index)")
    observation(rec, code=coding(code), category="survey", day=day,
                performer=rec.gp.practitioner_role,
                **{"valueQuantity": {"value": round(rec.efi, 3), "unit": "score",
                                     "system": UCUM, "code": "1"}})
    band = efi_band(rec.efi)
    if band != "fit":
        rec.conditions["frailty"] = _condition(rec, "frailty", common(FRAILTY_CODES[band])[0],
                                               day)
        rec.onsets["frailty"] = day


def efi_band(efi: float) -> str:
    if efi <= 0.12:
        return "fit"
    if efi <= 0.24:
        return "mild"
    return "moderate" if efi <= 0.36 else "severe"
