"""Builders shared by the care plan tests: plans, and a small network over HTTP."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import httpx

from careplans.plans import model
from tests.tokens import bearer, mint

SDS = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"
SCT = "http://snomed.info/sct"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
Body = dict[str, Any]


def ref(kind: str, id_: str, display: str | None = None) -> Body:
    out = {"reference": f"{kind}/{id_}"}
    if display:
        out["display"] = display
    return out


def plan(patient: str, *, status: str = "active", coordinator: str | None = "PractitionerRole/c",
         review: str | None = "2027-06-01", **extra: Any) -> Body:
    """An anticipatory care plan with a contingency, ReSPECT preferences and (by default) a
    coordinator and review date."""
    activity = [model.contingency(
        "breathless at rest or chest pain", "Sit upright and give 10 puffs of salbutamol",
        out_of_hours="Call 999 and say she has a ReSPECT form",
        performer={"reference": coordinator or "PractitionerRole/c",
                   "display": "Dr Gee, Oak Surgery, 01632 960001"}),
        {"detail": {"status": "scheduled", "description": "Structured medication review"}}]
    if review:
        activity.append(model.review_activity(review))
    body: Body = {
        "resourceType": "CarePlan", "status": status, "intent": "plan",
        "category": [model.category()], "title": "Anticipatory care plan",
        "subject": {"reference": f"Patient/{patient}", "display": "Ann Able"},
        "activity": activity,
        "extension": [model.respect_extension(
            balance="comfort", cpr="cpr-not-recommended", place_of_care="Home",
            place_of_death="Home, with her daughter")],
    }
    if coordinator:
        body["author"] = {"reference": coordinator, "display": "Cath Coord, 01632 960002"}
    return {**body, **extra}


async def make(client: httpx.AsyncClient, body: Body, **headers: str) -> str:
    r = await client.post(f"/{body['resourceType']}", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def staff(client: httpx.AsyncClient, family: str, org: str, code: str) -> tuple[str, str]:
    """(Practitioner id, PractitionerRole id) of a member of staff of `org`."""
    prac = await make(client, {"resourceType": "Practitioner", "name": [{"family": family}]})
    role = await make(client, {"resourceType": "PractitionerRole",
                               "practitioner": ref("Practitioner", prac),
                               "organization": ref("Organization", org),
                               "code": [{"coding": [{"system": SDS, "code": code}]}]})
    return prac, role


def proxy(patient: str, carer: str, *types: str) -> Body:
    """A patient-privacy Consent granting the carer (RelatedPerson) the listed types."""
    provision: Body = {"type": "permit", "actor": [{
        "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                             "v3-ParticipationType", "code": "IRCP"}]},
        "reference": ref("RelatedPerson", carer)}],
        "class": [{"system": "http://hl7.org/fhir/resource-types", "code": t} for t in types]}
    return {"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                  "consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": ref("Patient", patient), "provision": provision}


async def network(client: httpx.AsyncClient, app: Any) -> SimpleNamespace:
    """Practices A and B with a GP each, a coordinator (nurse case manager) at A, and a
    patient of A with a carer holding a proxy grant for CarePlan; tokens for each."""
    tag = uuid.uuid4().hex[:8]
    n = SimpleNamespace(tag=tag)
    n.org_a = await make(client, {"resourceType": "Organization", "name": f"Oak {tag}"})
    n.org_b = await make(client, {"resourceType": "Organization", "name": f"Elm {tag}"})
    n.gp_a, n.gp_a_role = await staff(client, f"GpA{tag}", n.org_a, "R0260")
    n.gp_b, _ = await staff(client, f"GpB{tag}", n.org_b, "R0260")
    n.coord, n.coord_role = await staff(client, f"Coord{tag}", n.org_a, "R0600")
    n.patient = await new_patient(client, n, "Able")
    n.carer = await make(client, {"resourceType": "RelatedPerson", "active": True,
                                  "patient": ref("Patient", n.patient),
                                  "name": [{"family": "Able", "given": ["Daughter"]}]})
    await make(client, proxy(n.patient, n.carer, "CarePlan", "Goal"))
    n.stranger_carer = await make(client, {"resourceType": "RelatedPerson", "active": True,
                                           "patient": ref("Patient", n.patient)})

    async def who(sub: str, scope: str, **kw: Any) -> dict[str, str]:
        return bearer(await mint(app, sub=sub, fhir_user=sub, scope=scope, **kw))

    n.as_gp_a = await who(f"Practitioner/{n.gp_a}", "user/*.cruds")
    n.as_gp_b = await who(f"Practitioner/{n.gp_b}", "user/*.cruds")
    n.as_patient = await who(f"Patient/{n.patient}", "patient/*.cruds", patient=n.patient)
    n.as_carer = await who(f"RelatedPerson/{n.carer}", "user/*.cruds")
    n.as_stranger_carer = await who(f"RelatedPerson/{n.stranger_carer}", "user/*.cruds")
    return n


async def new_patient(client: httpx.AsyncClient, n: SimpleNamespace, family: str) -> str:
    return await make(client, {"resourceType": "Patient",
                               "name": [{"family": f"{family}{n.tag}", "given": ["Ann"]}],
                               "generalPractitioner": [ref("Organization", n.org_a)]})
