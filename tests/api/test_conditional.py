"""Conditional create, update and delete (https://hl7.org/fhir/R4/http.html#ccreate)."""

from __future__ import annotations

import httpx

from tests.api.support import create, outcome, patient, search_ids


def by_identifier(tag: str) -> str:
    return f"identifier=urn:test|{tag}"


async def test_conditional_create_none_then_existing(client: httpx.AsyncClient, tag: str) -> None:
    headers = {"If-None-Exist": by_identifier(tag)}
    first = await client.post("/Patient", json=patient(tag), headers=headers)
    assert first.status_code == 201, first.text
    pid = first.json()["id"]
    assert first.headers["location"].endswith(f"/Patient/{pid}/_history/1")
    again = await client.post("/Patient", json=patient(tag, gender="male"), headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == pid
    assert again.headers["etag"] == 'W/"1"'
    # Nothing new was written: one Patient, still version 1, without the new gender.
    assert await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}"}) == [pid]
    read = (await client.get(f"/Patient/{pid}")).json()
    assert read["meta"]["versionId"] == "1" and "gender" not in read


async def test_conditional_create_with_full_url_criteria(client: httpx.AsyncClient,
                                                         tag: str) -> None:
    # If-None-Exist may carry the criteria as a URL (type?query).
    headers = {"If-None-Exist": f"Patient?{by_identifier(tag)}"}
    first = await client.post("/Patient", json=patient(tag), headers=headers)
    second = await client.post("/Patient", json=patient(tag), headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


async def test_conditional_create_several_matches_is_412(client: httpx.AsyncClient,
                                                         tag: str) -> None:
    await create(client, patient(tag))
    await create(client, patient(tag))
    outcome(await client.post("/Patient", json=patient(tag),
                              headers={"If-None-Exist": by_identifier(tag)}), 412)
    assert len(await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}"})) == 2


async def test_conditional_create_bad_criteria_is_400(client: httpx.AsyncClient,
                                                      tag: str) -> None:
    outcome(await client.post("/Patient", json=patient(tag),
                              headers={"If-None-Exist": f"nonsense={tag}"}), 400, "nonsense")
    outcome(await client.post("/Patient", json=patient(tag), headers={"If-None-Exist": ""}), 400)
    assert await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}"}) == []


async def test_conditional_create_after_the_match_is_deleted(client: httpx.AsyncClient,
                                                             tag: str) -> None:
    headers = {"If-None-Exist": by_identifier(tag)}
    first = await client.post("/Patient", json=patient(tag), headers=headers)
    assert first.status_code == 201
    assert (await client.delete(f"/Patient/{first.json()['id']}")).status_code in (200, 204)
    second = await client.post("/Patient", json=patient(tag), headers=headers)
    assert second.status_code == 201, second.text
    assert second.json()["id"] != first.json()["id"]
    assert await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}"}) == [
        second.json()["id"]]


async def test_conditional_create_after_the_match_changed(client: httpx.AsyncClient,
                                                          tag: str) -> None:
    """The first match no longer matches: a new resource is created, exactly once, with 201."""
    headers = {"If-None-Exist": by_identifier(tag)}
    first = (await client.post("/Patient", json=patient(tag), headers=headers)).json()
    moved = dict(first, identifier=[{"system": "urn:test", "value": f"{tag}-moved"}])
    assert (await client.put(f"/Patient/{first['id']}", json=moved)).status_code == 200
    second = await client.post("/Patient", json=patient(tag), headers=headers)
    assert second.status_code == 201, second.text
    assert second.json()["id"] != first["id"]
    assert await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}"}) == [
        second.json()["id"]]
    third = await client.post("/Patient", json=patient(tag), headers=headers)
    assert third.status_code == 200 and third.json()["id"] == second.json()["id"]


async def test_conditional_update_no_match_creates(client: httpx.AsyncClient, tag: str) -> None:
    r = await client.put(f"/Patient?{by_identifier(tag)}", json=patient(tag))
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert r.headers["location"].endswith(f"/Patient/{pid}/_history/1")
    assert await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}"}) == [pid]


async def test_conditional_update_one_match_updates_it(client: httpx.AsyncClient,
                                                       tag: str) -> None:
    created = await create(client, patient(tag))
    r = await client.put(f"/Patient?{by_identifier(tag)}", json=patient(tag, gender="female"))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == created["id"]
    assert r.headers["etag"] == 'W/"2"'
    read = (await client.get(f"/Patient/{created['id']}")).json()
    assert read["gender"] == "female" and read["meta"]["versionId"] == "2"
    # The body may carry the matching id, but not another one.
    r = await client.put(f"/Patient?{by_identifier(tag)}",
                         json=patient(tag, id=created["id"], gender="male"))
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "3"
    outcome(await client.put(f"/Patient?{by_identifier(tag)}",
                             json=patient(tag, id="someone-else")), 400)
    assert await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}"}) == [
        created["id"]]


async def test_conditional_update_several_matches_is_412(client: httpx.AsyncClient,
                                                         tag: str) -> None:
    a = await create(client, patient(tag))
    b = await create(client, patient(tag))
    outcome(await client.put(f"/Patient?{by_identifier(tag)}",
                             json=patient(tag, gender="male")), 412)
    for created in (a, b):
        read = (await client.get(f"/Patient/{created['id']}")).json()
        assert read["meta"]["versionId"] == "1" and "gender" not in read


async def test_conditional_update_with_two_criteria(client: httpx.AsyncClient, tag: str) -> None:
    a = await create(client, patient(tag, gender="male"))
    await create(client, patient(tag, gender="female"))
    r = await client.put("/Patient", params={"identifier": f"urn:test|{tag}", "gender": "male"},
                         json=patient(tag, gender="male", birthDate="1930"))
    assert r.status_code == 200 and r.json()["id"] == a["id"]


async def test_conditional_update_without_criteria_is_400(client: httpx.AsyncClient,
                                                          tag: str) -> None:
    outcome(await client.put("/Patient", json=patient(tag)), 400)
    outcome(await client.put("/Patient?bogus=1", json=patient(tag)), 400, "bogus")


async def test_conditional_delete_single_match(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    r = await client.delete(f"/Patient?{by_identifier(tag)}")
    assert r.status_code in (200, 204), r.text
    outcome(await client.get(f"/Patient/{created['id']}"), 410)
    assert await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}"}) == []


async def test_conditional_delete_several_matches_is_412(client: httpx.AsyncClient,
                                                         tag: str) -> None:
    a = await create(client, patient(tag))
    b = await create(client, patient(tag))
    outcome(await client.delete(f"/Patient?{by_identifier(tag)}"), 412)
    for created in (a, b):
        assert (await client.get(f"/Patient/{created['id']}")).status_code == 200


async def test_conditional_delete_no_match(client: httpx.AsyncClient, tag: str) -> None:
    r = await client.delete(f"/Patient?{by_identifier(tag)}")
    body = outcome(r, 200)
    assert body["issue"][0]["diagnostics"]
    outcome(await client.delete("/Patient"), 400)


async def test_concurrent_conditional_updates_store_one(client: httpx.AsyncClient,
                                                        tag: str) -> None:
    """20 conditional updates at once through the app (both backends): one creates, the rest
    update it (tests/fhir/test_concurrency.py races a real 2-worker server on PostgreSQL)."""
    import asyncio

    responses = await asyncio.gather(*(
        client.put(f"/Patient?{by_identifier(tag)}", json=patient(tag, gender="male"))
        for _ in range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 19 + [201], [r.text for r in responses if r.status_code >= 300]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}"})) == 1


async def test_conditional_patch(client: httpx.AsyncClient, tag: str) -> None:
    ops = '[{"op": "add", "path": "/gender", "value": "female"}]'
    headers = {"Content-Type": "application/json-patch+json"}
    outcome(await client.patch(f"/Patient?{by_identifier(tag)}", content=ops, headers=headers),
            404)
    created = await create(client, patient(tag))
    r = await client.patch(f"/Patient?{by_identifier(tag)}", content=ops, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == created["id"] and r.json()["gender"] == "female"
    assert r.headers["etag"] == 'W/"2"'
    await create(client, patient(tag))
    outcome(await client.patch(f"/Patient?{by_identifier(tag)}", content=ops, headers=headers),
            412)
    outcome(await client.patch("/Patient", content=ops, headers=headers), 400)
