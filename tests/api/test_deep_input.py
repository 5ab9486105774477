"""Deeply nested input is stored when it is valid FHIR within the documented depth
(fhir/rules.py MAX_DEPTH: 128 levels of JSON objects and arrays) and refused with a 422
beyond it: never a 500 (issue 18, item 6)."""

from __future__ import annotations

from typing import Any

import httpx

from fhir.rules import MAX_DEPTH
from tests.api.support import outcome


def nested_items(depth: int) -> list[dict[str, Any]]:
    """QuestionnaireResponse items, each group holding the next, `depth` deep."""
    item: dict[str, Any] = {"linkId": f"q{depth}", "answer": [{"valueString": "yes"}]}
    for level in range(depth - 1, 0, -1):
        item = {"linkId": f"g{level}", "item": [item]}
    return [item]


def nested_extensions(depth: int) -> list[dict[str, Any]]:
    ext: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "leaf"}
    for _ in range(depth - 1):
        ext = {"url": "http://example.org/branch", "extension": [ext]}
    return [ext]


def response(tag: str, depth: int) -> dict[str, Any]:
    return {"resourceType": "QuestionnaireResponse", "status": "completed",
            "identifier": {"system": "urn:test", "value": tag}, "item": nested_items(depth)}


async def test_deep_but_valid_resources_are_stored(client: httpx.AsyncClient,
                                                   tag: str) -> None:
    depth = (MAX_DEPTH - 4) // 2  # each level is an array and an object
    r = await client.post("/QuestionnaireResponse", json=response(tag, depth))
    assert r.status_code == 201, r.text[:500]
    stored = (await client.get(f"/QuestionnaireResponse/{r.json()['id']}")).json()
    assert stored["item"] == nested_items(depth)
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": tag}],
               "extension": nested_extensions(depth)}
    r = await client.post("/Patient", json=patient)
    assert r.status_code == 201, r.text[:500]
    assert (await client.get(f"/Patient/{r.json()['id']}")).json()["extension"] == \
        patient["extension"]


async def test_too_deep_is_422_never_500(client: httpx.AsyncClient, tag: str) -> None:
    for body in (response(tag, 150),
                 {"resourceType": "Patient", "extension": nested_extensions(120)},
                 {"resourceType": "Patient", "extension": nested_extensions(300)}):
        for r in (await client.post(f"/{body['resourceType']}", json=body),
                  await client.post("", json={"resourceType": "Bundle", "type": "transaction",
                                              "entry": [{"resource": body, "request": {
                                                  "method": "POST",
                                                  "url": body["resourceType"]}}]})):
            outcome(r, 422, str(MAX_DEPTH))
    # Deeper than the JSON parser goes (written by hand: the client's encoder stops too).
    text = '{"resourceType": "QuestionnaireResponse", "status": "completed", "item": ' + \
        '[{"linkId": "g", "item": ' * 3000 + '[{"linkId": "q"}]' + '}]' * 3000 + '}'
    r = await client.post("/QuestionnaireResponse", content=text,
                          headers={"Content-Type": "application/fhir+json"})
    outcome(r, 400 if r.status_code == 400 else 422)
    r = await client.get("/QuestionnaireResponse", params={"identifier": f"urn:test|{tag}"})
    assert r.json()["total"] == 0


async def test_contained_resource_of_an_unknown_type_is_422(client: httpx.AsyncClient,
                                                            tag: str) -> None:
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": tag}],
            "contained": [{"resourceType": "Spaceship", "id": "s1"}]}
    outcome(await client.post("/Patient", json=body), 422, "Spaceship")
    body["contained"] = [{"resourceType": 7, "id": "s1"}]
    outcome(await client.post("/Patient", json=body), 422)
    body["contained"] = ["Organization/1"]
    outcome(await client.post("/Patient", json=body), 422)
    r = await client.get("/Patient", params={"identifier": f"urn:test|{tag}"})
    assert r.json()["total"] == 0
