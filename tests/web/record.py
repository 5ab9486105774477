"""A small record for the pages' tests, built through the FHIR API as the network's loader.

A practice with a GP; Ann (its patient) with problems, medicines, an allergy, a vaccination,
blood pressure, weight and HbA1c over a year, a letter, an anticipatory care plan and a reply
waiting to one of her messages; her daughter Beth (a carer, RelatedPerson) holding a proxy
grant for Conditions and Observations only; and Carl, another patient of the practice.
"""

from __future__ import annotations

import base64
import uuid
from types import SimpleNamespace
from typing import Any

import httpx

from careplans.plans import model

SDS = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"
LOINC, SCT = "http://loinc.org", "http://snomed.info/sct"
CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
Body = dict[str, Any]


def ref(kind: str, id_: str, display: str | None = None) -> Body:
    return {"reference": f"{kind}/{id_}", **({"display": display} if display else {})}


async def make(client: httpx.AsyncClient, body: Body) -> str:
    r = await client.post(f"/{body['resourceType']}", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _obs(patient: str, code: str, text: str, when: str, gp: str, **value: Any) -> Body:
    category = "laboratory" if code == "59261-8" else "vital-signs"
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": CAT, "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": code}], "text": text},
            "subject": ref("Patient", patient), "effectiveDateTime": when,
            "performer": [ref("Practitioner", gp)], **value}


def _bp(patient: str, when: str, gp: str, sys_: int, dia: int) -> Body:
    def part(code: str, v: int) -> Body:
        return {"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": v, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                  "code": "mm[Hg]"}}
    return _obs(patient, "85354-9", "Blood pressure", when, gp,
                component=[part("8480-6", sys_), part("8462-4", dia)])


async def build(client: httpx.AsyncClient) -> SimpleNamespace:
    tag = uuid.uuid4().hex[:6]
    n = SimpleNamespace(tag=tag)
    n.org = await make(client, {"resourceType": "Organization", "name": f"Oak Surgery {tag}"})
    n.gp = await make(client, {"resourceType": "Practitioner",
                               "name": [{"prefix": ["Dr"], "family": "Gee"}]})
    n.elm = await make(client, {"resourceType": "Organization", "name": f"Elm Practice {tag}"})
    n.other_gp = await make(client, {"resourceType": "Practitioner",
                                     "name": [{"prefix": ["Dr"], "family": "Else"}]})
    await make(client, {"resourceType": "PractitionerRole",
                        "practitioner": ref("Practitioner", n.other_gp),
                        "organization": ref("Organization", n.elm),
                        "code": [{"coding": [{"system": SDS, "code": "R0260"}]}]})
    n.gp_role = await make(client, {"resourceType": "PractitionerRole",
                                    "practitioner": ref("Practitioner", n.gp),
                                    "organization": ref("Organization", n.org),
                                    "code": [{"coding": [{"system": SDS, "code": "R0260"}]}]})
    practice = [ref("Organization", n.org)]
    n.ann = await make(client, {"resourceType": "Patient", "name": [{"given": ["Ann"],
                                "family": f"Able{tag}"}], "generalPractitioner": practice})
    n.carl = await make(client, {"resourceType": "Patient", "name": [{"given": ["Carl"],
                                 "family": f"Cole{tag}"}], "generalPractitioner": practice})
    # Beth is a patient of the practice too: she switches between her record and her mum's.
    n.beth_self = await make(client, {"resourceType": "Patient", "name": [{"given": ["Beth"],
                                      "family": f"Able{tag}"}], "generalPractitioner": practice})
    await make(client, {"resourceType": "Condition", "code": {"text": "Hay fever"},
                        "subject": ref("Patient", n.beth_self)})
    n.beth = await make(client, {"resourceType": "RelatedPerson", "active": True,
                                 "patient": ref("Patient", n.ann),
                                 "name": [{"given": ["Beth"], "family": f"Able{tag}"}]})
    await make(client, {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": ref("Patient", n.ann),
        "provision": {"type": "permit", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                 "v3-ParticipationType", "code": "IRCP"}]},
            "reference": ref("RelatedPerson", n.beth)}],
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": t}
                      for t in ("Condition", "Observation")]}})
    a, gp = n.ann, n.gp
    n.diabetes = await make(client, {
        "resourceType": "Condition", "code": {"coding": [{"system": SCT, "code": "44054006"}],
                                              "text": "Type 2 diabetes"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                       "condition-clinical", "code": "active"}]},
        "subject": ref("Patient", a), "recorder": ref("Practitioner", gp),
        "recordedDate": "2024-05-02"})
    n.metformin = await make(client, {
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"text": "Metformin 500 mg tablets"},
        "dosageInstruction": [{"text": "One tablet twice a day with food"}],
        "subject": ref("Patient", a), "requester": ref("Practitioner", gp),
        "authoredOn": "2024-05-02"})
    n.carl_medicine = await make(client, {
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"text": "Salbutamol inhaler"},
        "subject": ref("Patient", n.carl), "requester": ref("Practitioner", gp)})
    n.carl_doc = await make(client, {
        "resourceType": "DocumentReference", "status": "current",
        "description": "Carl's discharge letter", "subject": ref("Patient", n.carl),
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(
            b"Carl was in hospital.").decode()}}]})
    await make(client, {"resourceType": "AllergyIntolerance", "patient": ref("Patient", a),
                        "code": {"text": "Penicillin"}, "recorder": ref("Practitioner", gp),
                        "reaction": [{"manifestation": [{"text": "Rash"}]}]})
    await make(client, {"resourceType": "Immunization", "status": "completed",
                        "vaccineCode": {"text": "Flu vaccine"}, "patient": ref("Patient", a),
                        "occurrenceDateTime": "2025-10-10",
                        "performer": [{"actor": ref("Practitioner", gp)}]})
    for i, (s, d, kg, hba1c) in enumerate(((150, 95, 82.0, 64), (142, 90, 80.5, 58),
                                           (136, 86, 79.0, 53))):
        when = f"2025-0{3 + 3 * i}-15"
        await make(client, _bp(a, when, gp, s, d))
        await make(client, _obs(a, "29463-7", "Body weight", when, gp, valueQuantity={
            "value": kg, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}))
        await make(client, _obs(a, "59261-8", "HbA1c", when, gp, valueQuantity={
            "value": hba1c, "unit": "mmol/mol", "system": "http://unitsofmeasure.org",
            "code": "mmol/mol"}))
    n.letter = await make(client, {
        "resourceType": "DocumentReference", "status": "current",
        "description": "Diabetes clinic letter", "date": "2025-09-20T10:00:00Z",
        "subject": ref("Patient", a), "author": [ref("Practitioner", gp)],
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(
            b"Dear Ann,\nYour HbA1c is improving.").decode()}}]})
    n.plan = await make(client, {
        "resourceType": "CarePlan", "status": "active", "intent": "plan",
        "category": [model.category()], "title": "Anticipatory care plan",
        "subject": ref("Patient", a, "Ann Able"),
        "author": ref("PractitionerRole", n.gp_role, "Dr Gee, Oak Surgery, 01632 960001"),
        "activity": [model.contingency("very high blood sugar or confused",
                                       "Check blood sugar and call the surgery",
                                       out_of_hours="Call 111",
                                       performer=ref("PractitionerRole", n.gp_role, "Dr Gee")),
                     {"detail": {"status": "scheduled",
                                 "description": "Structured medication review"}},
                     model.review_activity("2027-06-01")]})
    message = await make(client, {
        "resourceType": "Communication", "status": "completed", "sent": "2025-11-01T09:00:00Z",
        "subject": ref("Patient", a), "sender": ref("Patient", a),
        "payload": [{"contentString": "Can I take my metformin with breakfast?"}]})
    await make(client, {
        "resourceType": "Communication", "status": "completed", "sent": "2025-11-02T09:00:00Z",
        "subject": ref("Patient", a), "sender": ref("Practitioner", gp),
        "inResponseTo": [ref("Communication", message)],
        "payload": [{"contentString": "Yes, with food is best."}]})
    n.questionnaire = await make(client, {
        "resourceType": "Questionnaire", "status": "active", "title": "How are you feeling?",
        "url": f"https://carenet.invalid/fhir/Questionnaire/feeling-{tag}",
        "item": [{"linkId": "mood", "text": "How is your mood?", "type": "choice",
                  "required": True, "answerOption": [{"valueCoding": {"code": "good",
                                                      "display": "Good"}},
                                                     {"valueCoding": {"code": "low",
                                                      "display": "Low"}}]},
                 {"linkId": "more", "text": "Anything else?", "type": "text"}]})
    return n
