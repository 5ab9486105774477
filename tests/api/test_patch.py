"""JSON Patch (RFC 6902) on PATCH [type]/[id] (https://hl7.org/fhir/R4/http.html#patch)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.api.support import create, outcome, patient

PATCH_JSON = {"content-type": "application/json-patch+json"}


async def send_patch(client: httpx.AsyncClient, path: str, ops: Any,
                     **headers: str) -> httpx.Response:
    return await client.patch(path, content=json.dumps(ops), headers={**PATCH_JSON, **headers})


async def test_patch_makes_a_new_version(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag, gender="female"))
    pid = created["id"]
    r = await send_patch(client, f"/Patient/{pid}", [
        {"op": "replace", "path": "/gender", "value": "male"},
        {"op": "add", "path": "/birthDate", "value": "1944-04-04"},
        {"op": "add", "path": "/name/0/given/-", "value": "Beth"},
    ])
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"'
    body = r.json()
    assert body["gender"] == "male" and body["birthDate"] == "1944-04-04"
    assert body["name"][0]["given"] == ["Ann", "Beth"]
    assert body["meta"]["versionId"] == "2"
    read = (await client.get(f"/Patient/{pid}")).json()
    assert read["gender"] == "male" and read["meta"]["versionId"] == "2"
    # The patched values are searchable.
    r = await client.get("/Patient", params={"identifier": f"urn:test|{tag}",
                                             "birthdate": "1944-04-04"})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [pid]
    assert (await client.get(f"/Patient/{pid}/_history/1")).json()["gender"] == "female"


async def test_patch_remove(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag, gender="female"))
    r = await send_patch(client, f"/Patient/{created['id']}",
                         [{"op": "remove", "path": "/gender"}])
    assert r.status_code == 200 and "gender" not in r.json()
    r = await client.get("/Patient", params={"identifier": f"urn:test|{tag}", "gender": "female"})
    assert r.json()["total"] == 0


async def test_patch_needs_json_patch_media_type(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    for ctype in ("application/json", "application/fhir+json", "application/xml"):
        r = await client.patch(f"/Patient/{created['id']}", content=json.dumps(ops),
                               headers={"content-type": ctype})
        outcome(r, 415, "json-patch+json")
    r = await client.get(f"/Patient/{created['id']}")
    assert r.headers["etag"] == 'W/"1"'


async def test_patch_may_not_change_id_or_type(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    pid = created["id"]
    outcome(await send_patch(client, f"/Patient/{pid}",
                             [{"op": "replace", "path": "/id", "value": "other"}]), 422, "id")
    outcome(await send_patch(client, f"/Patient/{pid}",
                             [{"op": "replace", "path": "/resourceType", "value": "Person"}]), 422)
    outcome(await send_patch(client, f"/Patient/{pid}", [{"op": "remove", "path": "/id"}]), 422)
    outcome(await client.get("/Patient/other"), 404)
    assert (await client.get(f"/Patient/{pid}")).headers["etag"] == 'W/"1"'


async def test_patch_bad_path_or_operation_is_422(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    path = f"/Patient/{created['id']}"
    outcome(await send_patch(client, path, [{"op": "replace", "path": "/nope/x", "value": 1}]),
            422)
    outcome(await send_patch(client, path, [{"op": "remove", "path": "/name/7"}]), 422)
    outcome(await send_patch(client, path, [{"op": "frobnicate", "path": "/gender"}]), 422)
    outcome(await send_patch(client, path, [{"op": "add"}]), 422)
    outcome(await send_patch(client, path, ["not an operation"]), 422)
    # A failed `test` stops the whole patch.
    outcome(await send_patch(client, path, [
        {"op": "replace", "path": "/gender", "value": "male"},
        {"op": "test", "path": "/name/0/family", "value": "Someone else"},
    ]), 422)
    # Not a patch document at all.
    outcome(await send_patch(client, path, {"op": "remove", "path": "/gender"}), 400)
    outcome(await client.patch(path, content=b"[{", headers=PATCH_JSON), 400)
    read = await client.get(path)
    assert read.headers["etag"] == 'W/"1"' and "gender" not in read.json()


async def test_patch_to_an_invalid_resource_is_422_naming_it(
        client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    body = outcome(await send_patch(client, f"/Patient/{created['id']}",
                                    [{"op": "add", "path": "/birthDate", "value": "yesterday"}]),
                   422, "birthDate")
    assert any("Patient.birthDate" in e for i in body["issue"] for e in i.get("expression", ()))


async def test_patch_if_match(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    path = f"/Patient/{created['id']}"
    ops = [{"op": "add", "path": "/gender", "value": "male"}]
    outcome(await send_patch(client, path, ops, **{"If-Match": 'W/"7"'}), 412)
    r = await send_patch(client, path, ops, **{"If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'


async def test_patch_prefer_minimal(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    r = await send_patch(client, f"/Patient/{created['id']}",
                         [{"op": "add", "path": "/gender", "value": "male"}],
                         Prefer="return=minimal")
    assert r.status_code == 200 and r.content == b"" and r.headers["etag"] == 'W/"2"'


async def test_patch_unknown_or_deleted(client: httpx.AsyncClient, tag: str) -> None:
    ops = [{"op": "add", "path": "/gender", "value": "male"}]
    outcome(await send_patch(client, f"/Patient/nobody-{tag}", ops), 404)
    created = await create(client, patient(tag))
    assert (await client.delete(f"/Patient/{created['id']}")).status_code in (200, 204)
    outcome(await send_patch(client, f"/Patient/{created['id']}", ops), 410)
