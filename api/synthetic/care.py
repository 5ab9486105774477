"""Treatment: repeat medicines (dm+d), immunisations and allergies."""

from __future__ import annotations

from datetime import date, timedelta

from api.synthetic.clinical import UCUM, coding
from api.synthetic.record import Record, instant
from api.synthetic.tables import Medicine, medicines

DMD = "https://dmd.nhs.uk"
CVX = "http://hl7.org/fhir/sid/cvx"
COURSE = "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"

# condition(s) → (medicine, probability of being on it), a simple picture of NICE-guided
# treatment; the medicines are the only ones sourced so far (data/medications.csv).
TREATMENT: tuple[tuple[tuple[str, ...], str, float], ...] = (
    (("hypertension",), "ramipril", 0.7),
    (("hypertension",), "amlodipine", 0.5),
    (("heart-failure",), "ramipril", 0.8),
    (("heart-failure",), "furosemide", 0.85),
    (("diabetes",), "metformin", 0.85),
    (("diabetes", "chd", "stroke"), "atorvastatin", 0.8),
    (("hypertension", "ckd"), "atorvastatin", 0.35),
    (("atrial-fibrillation",), "apixaban", 0.8),
    (("asthma", "copd"), "salbutamol", 0.9),
    (("osteoarthritis", "fracture", "falls"), "paracetamol", 0.55),
    (("dementia",), "donepezil", 0.5),
    (("depression",), "sertraline", 0.35),
    (("thyroid-disease",), "levothyroxine", 0.85),
)


def medicines_for(rec: Record) -> None:
    """Repeat prescriptions for the record's conditions, each re-issued in the last 3 months."""
    table, chosen = medicines(), {}
    for conditions, key, p in TREATMENT:
        if key not in chosen and rec.has(*conditions) and rec.chance(p):
            chosen[key] = table[key]
    if rec.age >= 75 and "paracetamol" not in chosen and rec.chance(0.15):
        chosen["paracetamol"] = table["paracetamol"]
    for medicine in chosen.values():
        rec.medicines.append(medicine)
        _request(rec, medicine)


def _request(rec: Record, medicine: Medicine) -> str:
    return rec.add({
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "courseOfTherapyType": coding("continuous", "Continuous long term therapy", COURSE),
        "medicationCodeableConcept": coding(medicine.code, medicine.term, DMD),
        "subject": rec.subject,
        "authoredOn": rec.days_ago(1, 90).isoformat(),
        "requester": {"reference": rec.gp.practitioner_role},
        "dosageInstruction": [{"text": medicine.dose}],
        "dispenseRequest": {
            "numberOfRepeatsAllowed": 5,
            "expectedSupplyDuration": {"value": 28, "unit": "days", "system": UCUM,
                                       "code": "d"},
            "performer": {"reference": rec.rng.choice(rec.network.pharmacies)},
        },
    })


def _last_autumn(as_of: date) -> date:
    """The 1 October that opened the latest flu season (UKHSA programme starts in autumn)."""
    year = as_of.year if as_of.month >= 10 else as_of.year - 1
    return date(year, 10, 1)


def immunisations(rec: Record) -> None:
    """Seasonal flu (65+ and at-risk), pneumococcal PPV23 at 65, shingles in the 70s."""
    at_risk = rec.has("diabetes", "copd", "asthma", "heart-failure", "ckd", "chd", "stroke")
    flu_p = 0.8 if rec.age >= 65 else (0.5 if at_risk and rec.age >= 18 else 0.0)
    if rec.chance(flu_p):
        start = _last_autumn(rec.as_of)
        day = min(start + timedelta(days=rec.rng.randint(0, 75)), rec.as_of)
        _immunisation(rec, "141", "Influenza, seasonal, injectable", day)
    if rec.age >= 66 and rec.chance(0.7):
        _immunisation(rec, "33", "pneumococcal polysaccharide vaccine, 23 valent",
                      rec.at_age(65 + rec.rng.random()))
    if 70 <= rec.age <= 80 and rec.chance(0.45):
        _immunisation(rec, "187", "zoster vaccine recombinant",
                      rec.at_age(rec.rng.uniform(70, rec.age + 0.9)))


def _immunisation(rec: Record, code: str, display: str, day: date) -> str:
    hour, minute = rec.working_time()
    return rec.add({
        "resourceType": "Immunization", "status": "completed",
        "vaccineCode": coding(code, display, CVX),
        "patient": rec.subject,
        "occurrenceDateTime": instant(day, hour, minute),
        "primarySource": True,
        "performer": [{"actor": {"reference": rec.nurse().practitioner_role}}],
    })


def allergies(rec: Record) -> None:
    """Penicillin allergy (about 6% of people in England carry the label) or no known allergy."""
    if rec.chance(0.06 + 0.0006 * rec.age):
        rec.add({
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": coding("active", "Active", ALLERGY_CLINICAL),
            "verificationStatus": coding("confirmed", "Confirmed", ALLERGY_VERIFICATION),
            "type": "allergy", "category": ["medication"], "criticality": "low",
            "code": coding("91936005", "Allergy to penicillin"),
            "patient": rec.subject,
            "recordedDate": rec.days_ago(30, 365 * min(40, rec.age + 1)).isoformat(),
            "recorder": {"reference": rec.gp.practitioner_role},
            "reaction": [{"manifestation": [{"text": rec.rng.choice(("Rash", "Urticaria",
                                                                     "Swelling of lips"))}]}],
        })
    elif rec.age >= 16 and rec.chance(0.35):
        rec.add({
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": coding("active", "Active", ALLERGY_CLINICAL),
            "verificationStatus": coding("confirmed", "Confirmed", ALLERGY_VERIFICATION),
            "code": coding("716186003", "No known allergy"),
            "patient": rec.subject,
            "recordedDate": rec.days_ago(30, 365 * 10).isoformat(),
            "recorder": {"reference": rec.gp.practitioner_role},
        })
