"""Read, vread, create, update, delete over HTTP on both backends."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

import httpx

from tests.api.support import create, outcome, pages


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


async def test_client_id_is_ignored_even_when_it_names_an_existing_resource(
        client: httpx.AsyncClient, tag: str) -> None:
    first = await create(client, patient(tag))
    second = await create(client, patient(tag, id=first["id"], gender="male"))
    assert second["id"] != first["id"]
    still = (await client.get(f"/Patient/{first['id']}")).json()
    assert still["meta"]["versionId"] == "1" and "gender" not in still


async def test_read_answers_etag_last_modified_and_meta(client: httpx.AsyncClient,
                                                        tag: str) -> None:
    created = await create(client, patient(tag, birthDate="1950-02-03"))
    r = await client.get(f"/Patient/{created['id']}")
    assert r.status_code == 200
    body = r.json()
    assert body == created
    assert r.headers["etag"] == 'W/"1"'
    modified = email.utils.parsedate_to_datetime(r.headers["last-modified"])
    updated = datetime.fromisoformat(body["meta"]["lastUpdated"].replace("Z", "+00:00"))
    assert modified.tzinfo is not None
    assert abs((updated - modified).total_seconds()) < 1
    assert abs((datetime.now(UTC) - updated).total_seconds()) < 300


async def test_read_with_query_string_and_accept_json_is_the_same(
        client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    for kwargs in ({"params": {"_format": "json"}}, {"headers": {"accept": "application/json"}},
                   {"params": {"_format": "application/fhir+json"}},
                   {"headers": {"accept": "application/fhir+json; fhirVersion=4.0"}}):
        r = await client.get(f"/Patient/{created['id']}", **kwargs)
        assert r.status_code == 200, (kwargs, r.text)
        assert r.json()["id"] == created["id"]


async def test_read_unknown_id_is_404(client: httpx.AsyncClient, tag: str) -> None:
    outcome(await client.get(f"/Patient/nobody-{tag}"), 404, f"nobody-{tag}")


async def test_read_invalid_id_is_400(client: httpx.AsyncClient) -> None:
    outcome(await client.get("/Patient/" + "x" * 65), 400)
    outcome(await client.get("/Patient/bad_id!"), 400)


async def test_vread_returns_each_version(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag, gender="female"))
    pid = created["id"]
    updated = dict(created, gender="male")
    r = await client.put(f"/Patient/{pid}", json=updated)
    assert r.status_code == 200, r.text
    v1 = await client.get(f"/Patient/{pid}/_history/1")
    v2 = await client.get(f"/Patient/{pid}/_history/2")
    assert v1.status_code == v2.status_code == 200
    assert v1.json()["gender"] == "female" and v1.json()["meta"]["versionId"] == "1"
    assert v2.json()["gender"] == "male" and v2.json()["meta"]["versionId"] == "2"
    assert v1.headers["etag"] == 'W/"1"' and v2.headers["etag"] == 'W/"2"'
    assert "last-modified" in v1.headers
    outcome(await client.get(f"/Patient/{pid}/_history/3"), 404)
    outcome(await client.get(f"/Patient/{pid}/_history/one"), 400)
    outcome(await client.get(f"/Patient/nobody-{tag}/_history/1"), 404)


async def test_create_type_mismatch_is_400(client: httpx.AsyncClient, tag: str) -> None:
    body = outcome(await client.post("/Observation", json=patient(tag)), 400, "Patient")
    assert body["issue"][0].get("expression") == ["resourceType"]


async def test_update_makes_a_new_version(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    pid = created["id"]
    r = await client.put(f"/Patient/{pid}", json=dict(created, birthDate="1961-07-08"))
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"'
    assert "last-modified" in r.headers
    body = r.json()
    assert body["meta"]["versionId"] == "2" and body["birthDate"] == "1961-07-08"
    assert body["meta"]["lastUpdated"] >= created["meta"]["lastUpdated"]
    read = await client.get(f"/Patient/{pid}")
    assert read.json()["birthDate"] == "1961-07-08"
    assert read.headers["etag"] == 'W/"2"'
    # The client's meta.versionId is not trusted: the server numbers versions.
    stale = dict(body, meta={"versionId": "99"}, gender="other")
    r = await client.put(f"/Patient/{pid}", json=stale)
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "3"


async def test_update_with_new_client_id_creates(client: httpx.AsyncClient, tag: str) -> None:
    pid = f"client-{tag}"
    r = await client.put(f"/Patient/{pid}", json=patient(tag, id=pid))
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/fhir/Patient/{pid}/_history/1")
    assert r.json()["id"] == pid and r.json()["meta"]["versionId"] == "1"
    read = await client.get(f"/Patient/{pid}")
    assert read.status_code == 200 and read.json()["id"] == pid


async def test_update_id_must_match_url(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    pid = created["id"]
    body = outcome(await client.put(f"/Patient/{pid}", json=dict(created, id="other-id")),
                   400, "other-id")
    assert body["issue"][0].get("expression") == ["id"]
    no_id = {k: v for k, v in created.items() if k != "id"}
    outcome(await client.put(f"/Patient/{pid}", json=no_id), 400)
    # Nothing was written by the failures.
    assert (await client.get(f"/Patient/{pid}")).headers["etag"] == 'W/"1"'


async def test_update_type_mismatch_is_400(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    body = {"resourceType": "Observation", "id": created["id"], "status": "final",
            "code": {"text": "x"}}
    outcome(await client.put(f"/Patient/{created['id']}", json=body), 400)


async def test_delete_then_read_is_gone_and_history_keeps_it(
        client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    pid = created["id"]
    r = await client.delete(f"/Patient/{pid}")
    assert r.status_code in (200, 204), r.text
    if r.status_code == 200 and r.content:
        assert r.json()["resourceType"] == "OperationOutcome"
    outcome(await client.get(f"/Patient/{pid}"), 410)
    v1 = await client.get(f"/Patient/{pid}/_history/1")
    assert v1.status_code == 200 and v1.json()["id"] == pid
    # The deletion is itself a version; vread of it says Gone.
    outcome(await client.get(f"/Patient/{pid}/_history/2"), 410)
    history = [e for page in await pages(client, f"/Patient/{pid}/_history") for e in page["entry"]]
    assert [e["request"]["method"] for e in history] == ["DELETE", "POST"]
    assert "resource" not in history[0]
    assert history[1]["resource"]["id"] == pid
    # A deleted resource is not found by search.
    r = await client.get("/Patient", params={"identifier": f"urn:test|{tag}"})
    assert r.json()["total"] == 0
    # Deleting again is harmless.
    again = await client.delete(f"/Patient/{pid}")
    assert again.status_code in (200, 204)


async def test_delete_unknown_is_404(client: httpx.AsyncClient, tag: str) -> None:
    outcome(await client.delete(f"/Patient/nobody-{tag}"), 404)


async def test_update_after_delete_brings_it_back(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    pid = created["id"]
    assert (await client.delete(f"/Patient/{pid}")).status_code in (200, 204)
    r = await client.put(f"/Patient/{pid}", json=patient(tag, id=pid))
    assert r.status_code in (200, 201), r.text
    assert r.json()["meta"]["versionId"] == "3"
    assert (await client.get(f"/Patient/{pid}")).status_code == 200


async def test_if_match_guards_update_and_delete(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    pid = created["id"]
    r = await client.put(f"/Patient/{pid}", json=dict(created, gender="female"),
                         headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    # A second writer still holding version 1 is refused, and nothing changes.
    outcome(await client.put(f"/Patient/{pid}", json=dict(created, gender="male"),
                             headers={"If-Match": 'W/"1"'}), 412)
    assert (await client.get(f"/Patient/{pid}")).json()["gender"] == "female"
    outcome(await client.delete(f"/Patient/{pid}", headers={"If-Match": 'W/"1"'}), 412)
    assert (await client.get(f"/Patient/{pid}")).status_code == 200
    outcome(await client.put(f"/Patient/{pid}", json=created, headers={"If-Match": "soon"}), 400)
    r = await client.delete(f"/Patient/{pid}", headers={"If-Match": 'W/"2"'})
    assert r.status_code in (200, 204)
    outcome(await client.get(f"/Patient/{pid}"), 410)


async def test_if_match_on_update_of_missing_resource_is_412(
        client: httpx.AsyncClient, tag: str) -> None:
    pid = f"never-{tag}"
    outcome(await client.put(f"/Patient/{pid}", json=patient(tag, id=pid),
                             headers={"If-Match": 'W/"1"'}), 412)
    outcome(await client.get(f"/Patient/{pid}"), 404)


async def test_prefer_return(client: httpx.AsyncClient, tag: str) -> None:
    r = await client.post("/Patient", json=patient(tag), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201
    assert r.content == b""
    assert r.headers["etag"] == 'W/"1"'
    location = r.headers["location"]
    pid = location.split("/Patient/")[1].split("/")[0]
    assert (await client.get(location)).json()["id"] == pid

    r = await client.put(f"/Patient/{pid}", json=patient(tag, id=pid, gender="male"),
                         headers={"Prefer": "return=minimal"})
    assert r.status_code == 200 and r.content == b"" and r.headers["etag"] == 'W/"2"'

    r = await client.put(f"/Patient/{pid}", json=patient(tag, id=pid, gender="female"),
                         headers={"Prefer": "return=representation"})
    assert r.status_code == 200 and r.json()["gender"] == "female"

    r = await client.post("/Patient", json=patient(tag),
                          headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.headers["location"].endswith("/_history/1")
    assert r.headers["etag"] == 'W/"1"'

    # No preference: the resource.
    r = await client.post("/Patient", json=patient(tag))
    assert r.json()["resourceType"] == "Patient"
