"""A carer signed in as their RelatedPerson sees what the patient's proxy grant allows, over
HTTP: never the safeguarding (SDV) or third-party (NOPAT) entries, never another patient."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.support import create
from tests.tokens import bearer, mint

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
TYPES = "http://hl7.org/fhir/resource-types"


def _proxy(patient: str, carer: str, *types: str) -> dict[str, Any]:
    """A patient-privacy Consent granting `carer` the listed types (a proxy grant)."""
    provision: dict[str, Any] = {"type": "permit", "actor": [{
        "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                             "v3-ParticipationType", "code": "IRCP"}]},
        "reference": {"reference": f"RelatedPerson/{carer}"}}]}
    if types:
        provision["class"] = [{"system": TYPES, "code": t} for t in types]
    return {"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                  "consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{patient}"}, "provision": provision}


def _condition(patient: str, text: str, label: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Condition", "code": {"text": text},
                            "subject": {"reference": f"Patient/{patient}"}}
    if label:
        body["meta"] = {"security": [{"system": ACT, "code": label}]}
    return body


@pytest.fixture(scope="module")
async def family(client: httpx.AsyncClient) -> dict[str, str]:
    """Mum (cared for by her daughter, who holds a proxy grant for Conditions and
    Observations), and a neighbour the daughter has nothing to do with."""
    mum = (await create(client, {"resourceType": "Patient", "name": [{"family": "Mum"}]}))["id"]
    other = (await create(client, {"resourceType": "Patient",
                                   "name": [{"family": "Neighbour"}]}))["id"]
    daughter = (await create(client, {"resourceType": "RelatedPerson", "active": True,
                                      "patient": {"reference": f"Patient/{mum}"}}))["id"]
    await create(client, _proxy(mum, daughter, "Condition", "Observation"))
    ids = {"mum": mum, "other": other, "daughter": daughter}
    for key, body in {
        "diabetes": _condition(mum, "Diabetes"),
        "sdv": _condition(mum, "Domestic abuse disclosure", "SDV"),
        "nopat": _condition(mum, "Third-party information", "NOPAT"),
        "neighbour": _condition(other, "Asthma"),
        "meds": {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                 "medicationCodeableConcept": {"text": "Metformin"},
                 "subject": {"reference": f"Patient/{mum}"}},
    }.items():
        ids[key] = (await create(client, body))["id"]
    return ids


async def test_a_carer_sees_the_granted_types_of_the_patient_they_care_for(
        app: Any, client: httpx.AsyncClient, family: dict[str, str]) -> None:
    carer = bearer(await mint(app, sub=f"RelatedPerson/{family['daughter']}",
                              fhir_user=f"RelatedPerson/{family['daughter']}",
                              scope="user/*.rs"))
    r = await client.get(f"/Condition/{family['diabetes']}", headers=carer)
    assert r.status_code == 200, r.text
    found = await client.get("/Condition", params={"patient": family["mum"]}, headers=carer)
    assert found.status_code == 200, found.text
    seen = {e["resource"]["id"] for e in found.json().get("entry", ())}
    assert seen == {family["diabetes"]}  # not SDV (safeguarding), not NOPAT (third party)
    for hidden in ("sdv", "nopat", "neighbour"):
        r = await client.get(f"/Condition/{family[hidden]}", headers=carer)
        assert r.status_code == 404, (hidden, r.text)
    r = await client.get(f"/MedicationRequest/{family['meds']}", headers=carer)
    assert r.status_code == 404  # medicines are outside the grant
    r = await client.get("/Condition", params={"patient": family["other"]}, headers=carer)
    assert r.json().get("entry") is None


async def test_a_carer_without_a_grant_or_with_an_inactive_link_sees_nothing(
        app: Any, client: httpx.AsyncClient, family: dict[str, str]) -> None:
    stranger = (await create(client, {"resourceType": "RelatedPerson", "active": True,
                                      "patient": {"reference": f"Patient/{family['mum']}"}}))
    token = bearer(await mint(app, sub=f"RelatedPerson/{stranger['id']}",
                              fhir_user=f"RelatedPerson/{stranger['id']}", scope="user/*.rs"))
    r = await client.get(f"/Condition/{family['diabetes']}", headers=token)
    assert r.status_code == 404  # a RelatedPerson, but no proxy grant names them
    stranger["active"] = False
    r = await client.put(f"/RelatedPerson/{stranger['id']}", json=stranger)
    assert r.status_code == 200, r.text
    r = await client.get(f"/Condition/{family['diabetes']}", headers=bearer(await mint(
        app, sub=f"RelatedPerson/{stranger['id']}", fhir_user=f"RelatedPerson/{stranger['id']}",
        scope="user/*.rs")))
    assert r.status_code == 401  # an inactive RelatedPerson cannot sign in


async def test_a_token_whose_subject_is_not_its_client_is_refused(app: Any,
                                                                  client: httpx.AsyncClient
                                                                  ) -> None:
    forged = bearer(await mint(app, sub="someone-else", scope="system/*.cruds"))
    r = await client.get("/Patient", headers=forged)
    assert r.status_code == 401
