"""Every failure is an OperationOutcome with the right status, never a trace or a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from api.settings import Settings
from tests.api.support import BASE, create, outcome, patient
from tests.clients import audited_client
from tests.tokens import bearer, mint

NHS = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_JSON = {"content-type": "application/fhir+json"}


async def test_malformed_json_is_400(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    for body in (b"{", b'{"resourceType": "Patient",}', b"", b"\xff\xfe", b"[" * 5000):
        outcome(await client.post("/Patient", content=body, headers=FHIR_JSON), 400)
        outcome(await client.put(f"/Patient/{created['id']}", content=body, headers=FHIR_JSON),
                400)
    outcome(await client.post("/Patient", json=[patient(tag)]), 400)
    outcome(await client.post("/Patient", json="Patient"), 400)
    outcome(await client.post("/Patient", json={"name": [{"family": "x"}]}), 400,
            "resourceType")
    assert (await client.get(f"/Patient/{created['id']}")).headers["etag"] == 'W/"1"'


async def test_bad_search_is_400(client: httpx.AsyncClient) -> None:
    outcome(await client.get("/Patient", params={"shoe-size": "9"}), 400, "shoe-size")
    outcome(await client.get("/Patient", params={"birthdate": "1940-02-31"}), 400, "birthdate")
    outcome(await client.get("/Observation", params={"subject": "Patient/1/2"}), 400, "subject")
    outcome(await client.get("/Observation", params={"value-quantity": "heavy"}), 400)


async def test_unknown_type_or_id_is_404(client: httpx.AsyncClient, tag: str) -> None:
    outcome(await client.get("/Unicorn"), 404, "Unicorn")
    outcome(await client.get("/Unicorn/1"), 404, "Unicorn")
    outcome(await client.get("/Unicorn/1/_history"), 404)
    outcome(await client.get("/Unicorn/_history"), 404)
    outcome(await client.post("/Unicorn", json={"resourceType": "Unicorn"}), 404)
    outcome(await client.put("/Unicorn/1", json={"resourceType": "Unicorn", "id": "1"}), 404)
    outcome(await client.delete("/Unicorn/1"), 404)
    outcome(await client.post("/Unicorn/_search", data={}), 404)
    outcome(await client.get(f"/Patient/nobody-{tag}"), 404)
    outcome(await client.get("/Patient/1/_history/1/more"), 404)
    outcome(await client.get("http://test/elsewhere"), 404)
    # A type that is not a stored resource (OperationOutcome, Parameters)
    outcome(await client.get("/OperationOutcome"), 404)


async def test_method_not_allowed_is_405(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    outcome(await client.post(f"/Patient/{created['id']}", json=created), 405, "POST")
    outcome(await client.put(f"/Patient/{created['id']}/_history/1", json=created), 405)
    outcome(await client.delete(f"/Patient/{created['id']}/_history"), 405)
    # (PATCH /Patient?criteria is a conditional patch: tests/api/test_conditional.py)
    outcome(await client.patch(f"/Patient/{created['id']}/_history/1", content=b"[]",
                               headers={"content-type": "application/json-patch+json"}), 405)
    assert (await client.get(f"/Patient/{created['id']}")).headers["etag"] == 'W/"1"'


async def test_version_conflict_is_409_or_412(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    pid = created["id"]
    assert (await client.put(f"/Patient/{pid}", json=created)).status_code == 200
    r = await client.put(f"/Patient/{pid}", json=created, headers={"If-Match": 'W/"1"'})
    assert r.status_code in (409, 412)
    outcome(r, r.status_code, "version")


async def test_deleted_is_410(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    assert (await client.delete(f"/Patient/{created['id']}")).status_code in (200, 204)
    outcome(await client.get(f"/Patient/{created['id']}"), 410, "deleted")


@pytest.fixture(scope="module")
async def small(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A second server on the same database that takes bodies of at most 2 KiB."""
    app = create_app(Settings(database_url=database_url, max_body_bytes=2048))
    async with app.router.lifespan_context(app):
        async with audited_client(app, base_url=BASE, headers=bearer(await mint(app))) as c:
            yield c


async def test_body_too_large_is_413(small: httpx.AsyncClient, tag: str) -> None:
    big = patient(tag, name=[{"family": "x" * 3000}])
    outcome(await small.post("/Patient", json=big), 413)
    outcome(await small.put(f"/Patient/big-{tag}", json=dict(big, id=f"big-{tag}")), 413)
    outcome(await small.post("", json={"resourceType": "Bundle", "type": "batch",
                                       "entry": [{"resource": big,
                                                  "request": {"method": "POST",
                                                              "url": "Patient"}}]}), 413)
    outcome(await small.post("/Patient/_search", data={"family": "x" * 3000}), 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        text = json.dumps(big).encode()
        for i in range(0, len(text), 500):
            yield text[i:i + 500]

    outcome(await small.post("/Patient", content=chunks(), headers=FHIR_JSON), 413)
    r = await small.get("/Patient", params={"identifier": f"urn:test|{tag}"})
    assert r.json()["total"] == 0
    # Below the limit all is well.
    assert (await small.post("/Patient", json=patient(tag))).status_code == 201


async def test_body_over_the_default_limit_is_413(client: httpx.AsyncClient, tag: str) -> None:
    limit = Settings().max_body_bytes
    r = await client.post("/Patient", content=b" " * (limit + 1), headers=FHIR_JSON)
    outcome(r, 413)


async def test_unsupported_media_type_is_415(client: httpx.AsyncClient, tag: str) -> None:
    xml = f'<Patient xmlns="http://hl7.org/fhir"><id value="{tag}"/></Patient>'
    for ctype in ("application/fhir+xml", "application/xml", "text/plain"):
        outcome(await client.post("/Patient", content=xml, headers={"content-type": ctype}),
                415, ctype)
        outcome(await client.put(f"/Patient/{tag}", content=xml,
                                 headers={"content-type": ctype}), 415)
    outcome(await client.post("", content=xml, headers={"content-type": "application/fhir+xml"}),
            415)
    outcome(await client.get(f"/Patient/{tag}"), 404)


async def test_not_acceptable_is_406(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    path = f"/Patient/{created['id']}"
    for accept in ("application/fhir+xml", "application/xml", "text/html"):
        outcome(await client.get(path, headers={"accept": accept}), 406)
    for fmt in ("xml", "application/fhir+xml", "html"):
        outcome(await client.get(path, params={"_format": fmt}), 406, fmt)
        outcome(await client.get("/Patient", params={"_format": fmt}), 406)
    outcome(await client.get("/metadata", headers={"accept": "application/fhir+xml"}), 406)
    # A write that asks for XML back is refused before anything is written.
    outcome(await client.post("/Patient", json=patient(tag),
                              headers={"accept": "application/fhir+xml"}), 406)
    r = await client.get("/Patient", params={"identifier": f"urn:test|{tag}"})
    assert r.json()["total"] == 1
    # XML among acceptable alternatives is fine.
    r = await client.get(path, headers={"accept": "application/fhir+xml;q=0.9, */*;q=0.1"})
    assert r.status_code == 200


async def test_invalid_resource_is_422_naming_the_element(client: httpx.AsyncClient,
                                                          tag: str) -> None:
    cases = {
        "Patient.birthDate": patient(tag, birthDate="last spring"),
        "Patient.colour": patient(tag, colour="blue"),
        "Patient.name[0].family": patient(tag, name=[{"family": 5}]),
        "Patient.active": patient(tag, active="sometimes"),
    }
    for element, body in cases.items():
        for r in (await client.post("/Patient", json=body),
                  await client.put(f"/Patient/p-{tag}", json=dict(body, id=f"p-{tag}"))):
            found = outcome(r, 422, element)
            expressions = [e for i in found["issue"] for e in i.get("expression", ())]
            assert element in expressions, (element, found)
    outcome(await client.get(f"/Patient/p-{tag}"), 404)
    r = await client.get("/Patient", params={"identifier": f"urn:test|{tag}"})
    assert r.json()["total"] == 0


async def test_nhs_number_modulus_11(client: httpx.AsyncClient, tag: str) -> None:
    def with_nhs(number: str) -> dict:
        return patient(tag, identifier=[{"system": NHS, "value": number},
                                        {"system": "urn:test", "value": tag}])

    ok = await client.post("/Patient", json=with_nhs("9000000009"))
    assert ok.status_code == 201, ok.text
    for bad in ("9000000001", "900000000", "90000000090", "900000000X"):
        body = outcome(await client.post("/Patient", json=with_nhs(bad)), 422, "NHS number")
        assert body["issue"][0]["expression"] == ["Patient.identifier[0].value"]
    pid = ok.json()["id"]
    outcome(await client.put(f"/Patient/{pid}", json=dict(with_nhs("9000000001"), id=pid)), 422)
    r = await client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": with_nhs("9000000001"), "request": {"method": "POST", "url": "Patient"}}]})
    outcome(r, 422, "NHS number")
    r = await client.get("/Patient", params={"identifier": f"{NHS}|9000000009",
                                             "_id": pid})
    assert r.json()["total"] == 1
    r = await client.get("/Patient", params={"identifier": f"urn:test|{tag}"})
    assert r.json()["total"] == 1


async def test_control_characters_are_refused_not_a_crash(client: httpx.AsyncClient,
                                                          tag: str) -> None:
    r = await client.post("/Patient", json=patient(tag, name=[{"family": "a\u0000b"}]))
    assert r.status_code in (400, 422)
    outcome(r, r.status_code, "Patient.name[0].family")
    outcome(await client.get("/Patient", params={"family": "a\u0000b"}), 400)
    outcome(await client.get("/Patient", params={"_id": "\u0000"}), 400)
    r = await client.get("/Patient", params={"identifier": f"urn:test|{tag}"})
    assert r.json()["total"] == 0


async def test_odd_numbers_are_not_a_crash(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    pid = created["id"]
    outcome(await client.get(f"/Patient/{pid}/_history/99999999999999999999"), 404)
    outcome(await client.get(f"/Patient/{pid}/_history/\u00b2"), 400)
    outcome(await client.get("/Patient", params={"_count": "\u00b2"}), 400)
    outcome(await client.get("/Patient/_history", params={"_count": "\u00b2"}), 400)
    outcome(await client.get("/Patient", params={"_cursor": "cjk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"}),
            400)
    outcome(await client.put(f"/Patient/{pid}", json=created,
                             headers={"If-Match": 'W/"\u00b2"'.encode("latin-1")}), 400)
    body = patient(tag, identifier=[{"system": NHS, "value": "900000000\u00b2"}])
    outcome(await client.post("/Patient", json=body), 422)
    # _count=0 on history: an empty page, not a failure
    for path in (f"/Patient/{pid}/_history", "/Patient/_history", "/_history"):
        r = await client.get(path, params={"_count": "0"})
        assert r.status_code == 200, r.text
        assert r.json()["type"] == "history"


async def test_far_dates_are_not_a_crash(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag, birthDate="9999-12-31"))
    for value in ("9999-12-31", "9999-12", "ge9999-12-31", "0001-01-01", "lt0001-01-01"):
        r = await client.get("/Patient", params={"identifier": f"urn:test|{tag}",
                                                 "birthdate": value})
        assert r.status_code == 200, (value, r.text)
    r = await client.get("/Patient", params={"identifier": f"urn:test|{tag}",
                                             "birthdate": "9999-12-31"})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [created["id"]]


async def test_malformed_bundle_entries_are_400(client: httpx.AsyncClient, tag: str) -> None:
    def one(entry: dict) -> dict:
        return {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}

    res = patient(tag, id=f"b-{tag}")
    for kind in ("transaction", "batch"):
        for request in ({"method": "PUT", "url": f"Patient/b-{tag}", "ifMatch": 1},
                        {"method": "POST", "url": "Patient", "ifNoneExist": 5}):
            r = await client.post("", json=dict(one({"resource": res, "request": request}),
                                                type=kind))
            if kind == "transaction" or r.status_code != 200:
                outcome(r, 400)
            else:
                assert r.json()["entry"][0]["response"]["status"].startswith("400")
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": 5}
    r = await client.post("", json=one({"resource": binary,
                                        "request": {"method": "PATCH", "url": f"Patient/b-{tag}"}}))
    assert 400 <= r.status_code < 500
    outcome(r, r.status_code)
