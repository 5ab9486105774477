"""Records for the storage and HTTP tests of risk stratification, written through the API."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx

from careplans.codes import SNOMED
from tests.api.support import create

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
SDS_ROLE = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"


def concept(code: str, system: str = SNOMED) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


async def practice(client: httpx.AsyncClient, ods: str) -> str:
    org = await create(client, {"resourceType": "Organization", "name": f"Surgery {ods}",
                                "identifier": [{"system": ODS, "value": ods}]})
    return org["id"]


async def gp(client: httpx.AsyncClient, org: str) -> str:
    """A GP of `org`: the Practitioner's reference (fhirUser of their token)."""
    doc = await create(client, {"resourceType": "Practitioner", "name": [{"family": "Gee"}]})
    await create(client, {"resourceType": "PractitionerRole",
                          "practitioner": {"reference": f"Practitioner/{doc['id']}"},
                          "organization": {"reference": f"Organization/{org}"},
                          "code": [{"coding": [{"system": SDS_ROLE, "code": "R0260"}]}]})
    return f"Practitioner/{doc['id']}"


async def patient(client: httpx.AsyncClient, org: str, age: int, as_of: date,
                  gender: str = "female") -> str:
    born = date(as_of.year - age, 1, 2)
    body = await create(client, {"resourceType": "Patient", "gender": gender,
                                 "birthDate": born.isoformat(),
                                 "generalPractitioner": [{"reference": f"Organization/{org}"}]})
    return body["id"]


async def condition(client: httpx.AsyncClient, pid: str, code: str, onset: date, *,
                    status: str = "active", verification: str = "confirmed") -> str:
    body = await create(client, {
        "resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
        "clinicalStatus": concept(status, CLINICAL),
        "verificationStatus": concept(verification, VERIFICATION),
        "code": concept(code), "onsetDateTime": onset.isoformat()})
    return f"Condition/{body['id']}"


async def observation(client: httpx.AsyncClient, pid: str, code: str, day: date,
                      **value: Any) -> str:
    body = await create(client, {
        "resourceType": "Observation", "status": "final", "code": concept(code),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": day.isoformat(), **value})
    return f"Observation/{body['id']}"


async def encounter(client: httpx.AsyncClient, pid: str, code: str, day: date) -> str:
    body = await create(client, {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
        "type": [concept(code)], "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()}})
    return f"Encounter/{body['id']}"


async def medicine(client: httpx.AsyncClient, pid: str, code: str, day: date) -> str:
    body = await create(client, {
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": concept(code, "https://dmd.nhs.uk"),
        "subject": {"reference": f"Patient/{pid}"}, "authoredOn": day.isoformat()})
    return f"MedicationRequest/{body['id']}"
