"""Only valid FHIR is stored (issue 18, item 4; fhir/strict.py, fhir/rules.py): each invalid
body is a 422 OperationOutcome naming the element's path, by create, update, PATCH and in a
transaction, and nothing is stored."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.api.support import outcome, patient

OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}}


def obs(tag: str, **extra: Any) -> dict[str, Any]:
    return {**OBS, "identifier": [{"system": "urn:test", "value": tag}], **extra}


def div(html: str) -> dict[str, Any]:
    return {"status": "generated", "div": html}


# (element path the outcome must name, the body)
CASES: list[tuple[str, Any]] = [
    ("Patient.active", lambda t: patient(t, active="yes")),
    ("Patient.active", lambda t: patient(t, active=1)),
    ("Patient.gender", lambda t: patient(t, gender="robot")),
    ("Patient.multipleBirthInteger", lambda t: patient(t, multipleBirthInteger="2")),
    ("Patient.birthDate", lambda t: patient(t, birthDate=1950)),
    ("Patient.name[1]", lambda t: patient(t, name=[{"family": "A"}, {}])),
    ("Patient.telecom", lambda t: patient(t, telecom=[])),
    ("Patient.name[0].given[0]", lambda t: patient(t, name=[{"family": "A", "given": [""]}])),
    ("Patient.gender", lambda t: patient(t, gender=None)),
    ("Patient.name", lambda t: patient(t, name={"family": "A"})),
    ("Observation.status", lambda t: obs(t, status="garbage")),
    ("Observation.valueQuantity.value", lambda t: obs(t, valueQuantity={"value": "5"})),
    ("Observation.valueQuantity.comparator",
     lambda t: obs(t, valueQuantity={"value": 5, "comparator": "about"})),
    ("Observation.subject.reference", lambda t: obs(t, subject={"reference": "Foo/1"})),
    ("Observation.subject.reference", lambda t: obs(t, subject={"reference": "Patient/"})),
    ("Observation.subject.reference", lambda t: obs(t, subject={"reference": "../../x"})),
    ("Observation.subject.reference",
     lambda t: obs(t, subject={"reference": "Patient?identifier=x|y"})),
    ("Observation.subject.reference", lambda t: obs(t, subject={"reference": "#missing"})),
    ("Patient.text.div", lambda t: patient(t, text=div("<p>hi</p>"))),
    ("Patient.text.div", lambda t: patient(t, text=div("<div>no namespace</div>"))),
    ("Patient.text.div",
     lambda t: patient(t, text=div('<div xmlns="http://www.w3.org/1999/xhtml"><p>open</div>'))),
    ("Patient.text.div", lambda t: patient(t, text=div(
        '<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>'))),
    ("Patient.text.div", lambda t: patient(t, text=div(
        '<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">a</p></div>'))),
    ("Patient.contained[0].id", lambda t: patient(
        t, contained=[{"resourceType": "Organization", "name": "x"}])),
    ("Patient.contained[0].contained", lambda t: patient(t, contained=[
        {"resourceType": "Organization", "id": "o", "name": "x",
         "contained": [{"resourceType": "Organization", "id": "p", "name": "y"}]}],
        managingOrganization={"reference": "#o"})),
    ("Patient.contained[0].resourceType", lambda t: patient(
        t, contained=[{"resourceType": "Foo", "id": "f"}])),
    ("Patient.managingOrganization.reference", lambda t: patient(
        t, contained=[{"resourceType": "Organization", "id": "o", "name": "x"}],
        managingOrganization={"reference": "#other"})),
]


@pytest.mark.parametrize(("element", "make"), CASES, ids=[f"{i}-{c[0]}" for i, c in
                                                           enumerate(CASES)])
async def test_invalid_fhir_is_refused_naming_the_element(
        client: httpx.AsyncClient, tag: str, element: str, make: Any) -> None:
    body = make(tag)
    type_ = body["resourceType"]
    sent = [await client.post(f"/{type_}", json=body),
            await client.put(f"/{type_}/s-{tag}", json=dict(body, id=f"s-{tag}")),
            await client.put(f"/{type_}?identifier=urn:test|{tag}", json=body)]
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": body, "request": {"method": "POST", "url": type_}}]}
    if "Patient?" not in json.dumps(body):  # a transaction resolves conditional references
        sent.append(await client.post("", json=transaction))
    for r in sent:
        found = outcome(r, 422)
        expressions = [e for i in found["issue"] for e in i.get("expression", ())]
        assert any(e.endswith(element) for e in expressions), (element, found)
    r = await client.get(f"/{type_}", params={"identifier": f"urn:test|{tag}"})
    assert r.json()["total"] == 0
    outcome(await client.get(f"/{type_}/s-{tag}"), 404)


async def test_a_patch_cannot_make_a_resource_invalid(client: httpx.AsyncClient,
                                                      tag: str) -> None:
    r = await client.post("/Patient", json=patient(tag, active=True))
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    for ops, element in (([{"op": "replace", "path": "/active", "value": "yes"}],
                          "Patient.active"),
                         ([{"op": "add", "path": "/name/-", "value": {}}], "Patient.name[1]"),
                         ([{"op": "add", "path": "/gender", "value": "robot"}],
                          "Patient.gender")):
        found = outcome(await client.patch(f"/Patient/{pid}", content=json.dumps(ops),
                                           headers={"Content-Type":
                                                    "application/json-patch+json"}), 422)
        assert [element] in [i.get("expression") for i in found["issue"]], found
        binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
                  "data": base64.b64encode(json.dumps(ops).encode()).decode()}
        outcome(await client.post("", json={"resourceType": "Bundle", "type": "transaction",
                                            "entry": [{"resource": binary, "request": {
                                                "method": "PATCH", "url": f"Patient/{pid}"}}]}),
                422)
    current = (await client.get(f"/Patient/{pid}")).json()
    assert current["meta"]["versionId"] == "1" and current["active"] is True


async def test_valid_forms_are_kept_as_sent(client: httpx.AsyncClient, tag: str) -> None:
    """What strictness must not refuse: every reference form, local references to contained
    resources, primitive arrays with extensions, decimals and narrative as written."""
    body = patient(
        tag, active=False, gender="other", multipleBirthInteger=2,
        text=div('<div xmlns="http://www.w3.org/1999/xhtml"><p>Ann <b>Test</b></p></div>'),
        contained=[{"resourceType": "Organization", "id": "org", "name": "Practice"}],
        managingOrganization={"reference": "#org"},
        generalPractitioner=[{"reference": "Practitioner/abc"},
                             {"reference": "Practitioner/abc/_history/2"},
                             {"reference": "https://example.org/fhir/Practitioner/1"},
                             {"reference": "urn:uuid:6f1c9a52-1111-4d1a-9e57-2c0e7a2d6c1e"},
                             {"identifier": {"system": "urn:x", "value": "1"}}],
        name=[{"family": "Test", "given": ["Ann", None],
               "_given": [None, {"extension": [{"url": "http://example.org/x",
                                                "valueString": "y"}]}]}])
    r = await client.post("/Patient", json=body)
    assert r.status_code == 201, r.text
    stored = (await client.get(f"/Patient/{r.json()['id']}")).json()
    for key in ("active", "gender", "multipleBirthInteger", "text", "contained", "name",
                "managingOrganization", "generalPractitioner"):
        assert stored[key] == body[key], key
    quantity = await client.post("/Observation", json=obs(
        tag, valueQuantity={"value": 2.50, "comparator": "<", "unit": "kg"}))
    assert quantity.status_code == 201, quantity.text
    assert '"value":2.5' in quantity.text or '"value":2.50' in quantity.text
