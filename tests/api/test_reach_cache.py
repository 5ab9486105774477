"""A GP's listed reach (consent/context.py) across their own writes, through the HTTP API.

Writing an Observation cannot change whom a GP reaches, so their next requests reuse the
list (no relationship listing per write: what made a GP's creates twice the CPU of the
backend service's); writing a Patient registered at their practice can, so the list is
dropped and their next search no longer finds a patient who moved to another practice.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from consent import context, relationships
from tests.clients import audited_client
from tests.tokens import bearer, mint

SDS = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"


@pytest.fixture
async def gp(app: Any, client: httpx.AsyncClient) -> AsyncIterator[SimpleNamespace]:
    tag = uuid.uuid4().hex[:8]

    async def make(body: dict[str, Any]) -> str:
        r = await client.post(f"/{body['resourceType']}", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    org = await make({"resourceType": "Organization", "name": f"Reach Surgery {tag}"})
    prac = await make({"resourceType": "Practitioner", "name": [{"family": f"Reach{tag}"}]})
    await make({"resourceType": "PractitionerRole",
                "practitioner": {"reference": f"Practitioner/{prac}"},
                "organization": {"reference": f"Organization/{org}"},
                "code": [{"coding": [{"system": SDS, "code": "R0260"}]}]})
    patient = await make({"resourceType": "Patient", "name": [{"family": f"Reach{tag}"}],
                          "generalPractitioner": [{"reference": f"Organization/{org}"}]})
    token = await mint(app, sub=f"Practitioner/{prac}", scope="user/*.cruds",
                       fhir_user=f"Practitioner/{prac}")
    async with audited_client(app, base_url="http://test/fhir", headers=bearer(token)) as c:
        yield SimpleNamespace(client=c, org=org, patient=patient, tag=tag)


def _observation(patient: str, value: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "valueQuantity": {"value": value, "unit": "/min",
                              "system": "http://unitsofmeasure.org", "code": "/min"}}


async def test_a_gp_s_observations_do_not_list_their_patients_again(
        gp: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    listings = 0
    real = relationships.listed

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal listings
        listings += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(relationships, "listed", counted)
    r = await gp.client.get("/Observation", params={"subject": f"Patient/{gp.patient}"})
    assert r.status_code == 200, r.text
    first = listings
    assert first == len(context.STAFF_RELATIONSHIPS)  # the search listed the reach once
    for value in range(5):
        r = await gp.client.post("/Observation", json=_observation(gp.patient, 60 + value))
        assert r.status_code == 201, r.text
    r = await gp.client.get("/Observation", params={"subject": f"Patient/{gp.patient}"})
    assert r.status_code == 200 and r.json()["total"] == 5
    assert listings == first  # five writes and a search later, still the same list


async def test_a_patient_a_gp_moves_away_is_out_of_their_next_search(
        gp: SimpleNamespace, client: httpx.AsyncClient) -> None:
    r = await gp.client.get("/Patient", params={"family": f"Reach{gp.tag}"})
    assert r.status_code == 200 and [e["resource"]["id"] for e in r.json()["entry"]] == [
        gp.patient]  # the reach is listed now, with their one patient
    r = await client.post("/Organization", json={"resourceType": "Organization",
                                                  "name": f"Elsewhere {gp.tag}"})
    elsewhere = r.json()["id"]
    r = await gp.client.put(f"/Patient/{gp.patient}", json={
        "resourceType": "Patient", "id": gp.patient, "name": [{"family": f"Reach{gp.tag}"}],
        "generalPractitioner": [{"reference": f"Organization/{elsewhere}"}]})
    assert r.status_code == 200, r.text  # the GP records the patient's new practice
    r = await gp.client.get("/Patient", params={"family": f"Reach{gp.tag}"})
    assert r.status_code == 200 and r.json().get("entry", []) == []
