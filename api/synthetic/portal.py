"""What the demo network needs for the patient portal: carers' proxy grants, a questionnaire.

A carer (RelatedPerson) sees nothing of the person they care for until that person grants
it (consent/consents.py): every synthetic carer gets a patient-privacy `Consent` permitting
them the everyday record (no labels are opened; sealed entries stay sealed). The
questionnaire is a simple check-in of the network's own making, not a validated instrument.
"""

from __future__ import annotations

from typing import Any

from api.synthetic.ids import resource_id

TYPES = "http://hl7.org/fhir/resource-types"
PROXY_TYPES = ("Patient", "Condition", "Observation", "MedicationRequest", "AllergyIntolerance",
               "Immunization", "CarePlan", "Goal", "Appointment", "Communication")


def proxy_grant(patient_ref: str, carer_ref: str, as_of: str) -> dict[str, Any]:
    """The patient's Consent giving their carer the everyday record (a proxy grant)."""
    return {
        "resourceType": "Consent", "status": "active", "dateTime": as_of,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": patient_ref},
        "provision": {"type": "permit", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                 "v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"reference": carer_ref}}],
            "class": [{"system": TYPES, "code": t} for t in PROXY_TYPES]},
    }


def questionnaire(seed: int) -> dict[str, Any]:
    """A short check-in between reviews, for patients with a care plan."""
    return {
        "resourceType": "Questionnaire", "id": resource_id(seed, "questionnaire", "check-in"),
        "url": "https://carenet.invalid/fhir/Questionnaire/check-in", "version": "1",
        "name": "CheckIn", "title": "How are you getting on?", "status": "active",
        "description": "A few questions for your care team between reviews.",
        "item": [
            {"linkId": "overall", "text": "How have you been this week?", "type": "choice",
             "required": True, "answerOption": [
                 {"valueCoding": {"code": "well", "display": "Well"}},
                 {"valueCoding": {"code": "same", "display": "About the same as usual"}},
                 {"valueCoding": {"code": "worse", "display": "Worse than usual"}}]},
            {"linkId": "fall", "text": "Have you had a fall since your last check-in?",
             "type": "boolean"},
            {"linkId": "more", "text": "Is there anything you want your care team to know?",
             "type": "text"},
        ],
    }
