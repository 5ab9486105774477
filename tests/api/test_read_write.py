"""Read, vread, create, update, delete over HTTP on both backends."""

from __future__ import annotations

import httpx


def patient(tag: str, **extra: object) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": tag}],
            "name": [{"family": f"Test{tag}", "given": ["Ann"]}], **extra}


async def test_create_assigns_id_and_read_returns_it(client: httpx.AsyncClient, tag: str) -> None:
    r = await client.post("/Patient", json=patient(tag, id="client-chosen"))
    assert r.status_code == 201
    body = r.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert "last-modified" in r.headers
    read = await client.get(f"/Patient/{body['id']}")
    assert read.status_code == 200
    assert read.headers["content-type"].startswith("application/fhir+json")
    assert read.json()["name"][0]["family"] == f"Test{tag}"
