"""Batch and transaction Bundles at the base (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx

from tests.api.support import BASE, create, outcome, patient, search_ids


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict:
    entry: dict[str, Any] = {"resource": resource,
                             "request": {"method": "POST", "url": resource["resourceType"],
                                         **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def observation(tag: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "identifier": [{"system": "urn:test", "value": tag}],
            "code": {"text": "weight"}, "subject": {"reference": subject}, **extra}


def status(entry: dict[str, Any]) -> int:
    return int(entry["response"]["status"].split()[0])


async def send(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("", json=body)


async def test_transaction_resolves_urn_uuid_references(client: httpx.AsyncClient,
                                                        tag: str) -> None:
    p_url, o_url = urn(), urn()
    body = bundle(
        "transaction",
        # The Observation comes first: references resolve whatever the order.
        post(observation(tag, p_url, hasMember=[{"reference": o_url}],
                         performer=[{"reference": p_url}]), urn()),
        post(observation(tag, p_url), o_url),
        post(patient(tag, link=[{"other": {"reference": p_url}, "type": "seealso"}]), p_url),
    )
    r = await send(client, body)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["resourceType"] == "Bundle" and result["type"] == "transaction-response"
    entries = result["entry"]
    assert len(entries) == 3
    for e in entries:
        assert status(e) == 201
        assert e["response"]["etag"] == 'W/"1"'
        assert e["response"]["lastModified"]
    ids = [e["response"]["location"].split("/")[1] for e in entries]
    assert [e["response"]["location"] for e in entries] == [
        f"{t}/{i}/_history/1" for t, i in zip(("Observation", "Observation", "Patient"), ids,
                                              strict=True)]
    for e, id_ in zip(entries, ids, strict=True):
        assert e["fullUrl"].endswith(f"/{id_}")
    pid = ids[2]
    first = (await client.get(f"/Observation/{ids[0]}")).json()
    assert first["subject"]["reference"] == f"Patient/{pid}"
    assert first["performer"][0]["reference"] == f"Patient/{pid}"
    assert first["hasMember"][0]["reference"] == f"Observation/{ids[1]}"
    second = (await client.get(f"/Observation/{ids[1]}")).json()
    assert second["subject"]["reference"] == f"Patient/{pid}"
    me = (await client.get(f"/Patient/{pid}")).json()
    assert me["link"][0]["other"]["reference"] == f"Patient/{pid}"
    # The rewritten references are indexed: searchable by the new id.
    assert set(await search_ids(client, "Observation", {"subject": f"Patient/{pid}"})) == \
        set(ids[:2])


async def test_transaction_conditional_reference(client: httpx.AsyncClient, tag: str) -> None:
    pat = await create(client, patient(tag))
    body = bundle("transaction",
                  post(observation(tag, f"Patient?identifier=urn:test|{tag}"), urn()))
    r = await send(client, body)
    assert r.status_code == 200, r.text
    oid = r.json()["entry"][0]["response"]["location"].split("/")[1]
    obs = (await client.get(f"/Observation/{oid}")).json()
    assert obs["subject"]["reference"] == f"Patient/{pat['id']}"


async def test_transaction_conditional_reference_must_match_one(client: httpx.AsyncClient,
                                                                tag: str) -> None:
    body = bundle("transaction",
                  post(observation(tag, f"Patient?identifier=urn:test|{tag}"), urn()))
    r = await send(client, body)
    assert 400 <= r.status_code < 500
    outcome(r, r.status_code, f"urn:test|{tag}")
    await create(client, patient(tag))
    await create(client, patient(tag))
    outcome(await send(client, body), 412)
    assert await search_ids(client, "Observation", {"identifier": f"urn:test|{tag}"}) == []


async def test_transaction_is_all_or_nothing(client: httpx.AsyncClient, tag: str) -> None:
    p_url = urn()
    body = bundle(
        "transaction",
        post(patient(tag), p_url),
        post(observation(tag, p_url)),
        post({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
              "valueQuantity": {"value": "heavy"}}),
    )
    r = await send(client, body)
    assert r.status_code in (400, 422), r.text
    outcome(r, r.status_code, "entry[2]")
    assert await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}"}) == []
    assert await search_ids(client, "Observation", {"identifier": f"urn:test|{tag}"}) == []


async def test_transaction_unresolved_urn_is_400(client: httpx.AsyncClient, tag: str) -> None:
    body = bundle("transaction", post(observation(tag, urn()), urn()))
    outcome(await send(client, body), 400, "entry[0]")


async def test_transaction_update_delete_conditional_create_and_read(
        client: httpx.AsyncClient, tag: str) -> None:
    keep = await create(client, patient(tag))
    drop = await create(client, patient(f"{tag}-drop"))
    existing = await create(client, patient(f"{tag}-known"))
    body = bundle(
        "transaction",
        {"resource": dict(keep, gender="female"),
         "request": {"method": "PUT", "url": f"Patient/{keep['id']}", "ifMatch": 'W/"1"'}},
        {"request": {"method": "DELETE", "url": f"Patient/{drop['id']}"}},
        post(patient(f"{tag}-known"), urn(), ifNoneExist=f"identifier=urn:test|{tag}-known"),
        post(patient(f"{tag}-new"), urn(), ifNoneExist=f"identifier=urn:test|{tag}-new"),
        {"request": {"method": "GET", "url": f"Patient/{keep['id']}"}},
        {"resource": patient(f"{tag}-put", id=f"put-{tag}"),
         "request": {"method": "PUT", "url": f"Patient/put-{tag}"}},
    )
    r = await send(client, body)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [status(e) for e in entries] == [200, status(entries[1]), 200, 201, 200, 201]
    assert status(entries[1]) in (200, 204)
    assert entries[0]["response"]["etag"] == 'W/"2"'
    assert entries[0]["response"]["location"] == f"Patient/{keep['id']}/_history/2"
    assert entries[2]["response"]["location"].startswith(f"Patient/{existing['id']}/")
    assert entries[2]["response"]["etag"] == 'W/"1"'
    assert entries[4]["resource"]["id"] == keep["id"]
    assert entries[4]["resource"]["gender"] == "female"  # reads run after the writes
    assert entries[5]["response"]["location"] == f"Patient/put-{tag}/_history/1"
    outcome(await client.get(f"/Patient/{drop['id']}"), 410)
    assert (await client.get(f"/Patient/{keep['id']}")).json()["gender"] == "female"
    assert len(await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}-known"})) == 1
    assert len(await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}-new"})) == 1


async def test_transaction_stale_if_match_rolls_back(client: httpx.AsyncClient,
                                                     tag: str) -> None:
    keep = await create(client, patient(tag))
    body = bundle(
        "transaction",
        post(patient(f"{tag}-other")),
        {"resource": dict(keep, gender="female"),
         "request": {"method": "PUT", "url": f"Patient/{keep['id']}", "ifMatch": 'W/"5"'}},
    )
    outcome(await send(client, body), 412)
    assert await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}-other"}) == []
    assert "gender" not in (await client.get(f"/Patient/{keep['id']}")).json()


async def test_transaction_conditional_update_with_full_url(client: httpx.AsyncClient,
                                                            tag: str) -> None:
    """A conditional update that creates: references to its fullUrl name the new resource."""
    p_url = urn()
    body = bundle(
        "transaction",
        {"fullUrl": p_url, "resource": patient(tag),
         "request": {"method": "PUT", "url": f"Patient?identifier=urn:test|{tag}"}},
        post(observation(tag, p_url), urn()),
    )
    r = await send(client, body)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [status(e) for e in entries] == [201, 201]
    pid = entries[0]["response"]["location"].split("/")[1]
    oid = entries[1]["response"]["location"].split("/")[1]
    assert (await client.get(f"/Observation/{oid}")).json()["subject"]["reference"] == \
        f"Patient/{pid}"
    # Again: now it matches, so the same Patient is updated and referenced.
    r = await send(client, body)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert status(entries[0]) == 200
    assert entries[0]["response"]["location"] == f"Patient/{pid}/_history/2"
    oid = entries[1]["response"]["location"].split("/")[1]
    assert (await client.get(f"/Observation/{oid}")).json()["subject"]["reference"] == \
        f"Patient/{pid}"


async def test_transaction_patch_entry(client: httpx.AsyncClient, tag: str) -> None:
    pat = await create(client, patient(tag))
    ops = [{"op": "add", "path": "/gender", "value": "other"}]
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
              "data": base64.b64encode(json.dumps(ops).encode()).decode()}
    body = bundle("transaction", {"resource": binary,
                                  "request": {"method": "PATCH", "url": f"Patient/{pat['id']}"}})
    r = await send(client, body)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["etag"] == 'W/"2"'
    assert (await client.get(f"/Patient/{pat['id']}")).json()["gender"] == "other"


async def test_batch_runs_entries_independently(client: httpx.AsyncClient, tag: str) -> None:
    pat = await create(client, patient(tag))
    body = bundle(
        "batch",
        post(patient(f"{tag}-b")),
        {"request": {"method": "GET", "url": f"Patient/{pat['id']}"}},
        {"request": {"method": "GET", "url": f"Patient?identifier=urn:test|{tag}"}},
        {"request": {"method": "GET", "url": f"Patient/nobody-{tag}"}},
        post({"resourceType": "Patient", "birthDate": "sometimes"}),
        {"resource": dict(pat, gender="male"),
         "request": {"method": "PUT", "url": f"Patient/{pat['id']}"}},
    )
    r = await send(client, body)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["type"] == "batch-response"
    entries = result["entry"]
    assert len(entries) == 6
    assert [status(e) for e in entries] == [201, 200, 200, 404, 422, 200]
    assert entries[0]["response"]["location"].startswith("Patient/")
    assert entries[0]["response"]["etag"] == 'W/"1"'
    assert entries[1]["resource"]["id"] == pat["id"]
    assert entries[1]["response"]["etag"] == 'W/"1"'
    searchset = entries[2]["resource"]
    assert searchset["resourceType"] == "Bundle" and searchset["type"] == "searchset"
    assert [e["resource"]["id"] for e in searchset["entry"]] == [pat["id"]]
    for failed in entries[3:5]:
        assert failed["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[5]["response"]["etag"] == 'W/"2"'
    # The entries that succeeded were kept although others failed.
    assert len(await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}-b"})) == 1
    assert (await client.get(f"/Patient/{pat['id']}")).json()["gender"] == "male"


async def test_bundle_errors(client: httpx.AsyncClient, tag: str) -> None:
    outcome(await send(client, {"resourceType": "Bundle", "type": "collection"}), 400,
            "collection")
    outcome(await send(client, patient(tag)), 400)
    outcome(await send(client, bundle("transaction", {"resource": patient(tag)})), 400,
            "entry[0]")
    outcome(await send(client, bundle("transaction", {"request": {"method": "FETCH",
                                                                  "url": "Patient"}})), 400)
    outcome(await send(client, bundle("transaction",
                                      post({"resourceType": "Nothing"}))), 404, "Nothing")
    outcome(await client.post("", content=b"{", headers={"content-type": "application/fhir+json"}),
            400)
    # An empty transaction does nothing, successfully.
    r = await send(client, bundle("transaction"))
    assert r.status_code == 200 and r.json()["entry"] == []
    assert BASE


async def test_batch_audits_each_entry_once(app: Any, client: httpx.AsyncClient,
                                            tag: str) -> None:
    """Each entry of a batch stores the AuditEvent of what it touched: n entries, n events,
    each naming its own patient (each entry once named every patient before it too, which
    made a batch's time grow with the square of its size)."""
    from collections import Counter

    import orjson
    import sqlalchemy as sa

    from fhir.schema import resource

    r = await send(client, bundle("batch", *(post(patient(f"{tag}-{i}")) for i in range(20))))
    assert r.status_code == 200, r.text
    ids = {e["response"]["location"].split("/")[1] for e in r.json()["entry"]}
    request_id = r.headers["x-request-id"]
    await app.state.audit.flush()
    named: Counter[str] = Counter()
    async with app.state.db.read() as conn:
        for content in (await conn.execute(sa.select(resource.c.content).where(
                resource.c.type == "AuditEvent",
                sa.cast(resource.c.content, sa.Text).contains(request_id)))).scalars():
            for entity in orjson.loads(content).get("entity", ()):
                ref = entity.get("what", {}).get("reference", "")
                if ref.startswith("Patient/"):
                    named[ref.split("/")[1]] += 1
    assert named == dict.fromkeys(ids, 1)


async def test_transaction_entries_with_one_full_url_are_400(client: httpx.AsyncClient,
                                                              tag: str) -> None:
    same = urn()
    for kind in ("transaction", "batch"):
        body = bundle(kind, post(patient(f"{tag}-a"), same), post(patient(f"{tag}-b"), same))
        outcome(await send(client, body), 400, "fullUrl", "Bundle.entry[0]")
    for suffix in ("a", "b"):
        assert await search_ids(client, "Patient",
                                {"identifier": f"urn:test|{tag}-{suffix}"}) == []


async def test_transaction_changing_one_resource_twice_is_400(client: httpx.AsyncClient,
                                                             tag: str) -> None:
    pid = f"twice-{tag}"
    two_puts = bundle("transaction",
                      {"resource": patient(tag, id=pid, gender="male"),
                       "request": {"method": "PUT", "url": f"Patient/{pid}"}},
                      {"resource": patient(tag, id=pid, gender="female"),
                       "request": {"method": "PUT", "url": f"Patient/{pid}"}})
    outcome(await send(client, two_puts), 400, f"Patient/{pid}", "Bundle.entry[0]",
            "Bundle.entry[1]")
    outcome(await client.get(f"/Patient/{pid}"), 404)
    # The same through a conditional update that resolves to it, and a delete.
    existing = await create(client, patient(f"{tag}-c"))
    mixed = bundle("transaction",
                   {"resource": patient(f"{tag}-c", gender="male"),
                    "request": {"method": "PUT", "url": f"Patient?identifier=urn:test|{tag}-c"}},
                   {"request": {"method": "DELETE", "url": f"Patient/{existing['id']}"}},
                   post(patient(f"{tag}-d")))
    outcome(await send(client, mixed), 400, f"Patient/{existing['id']}")
    read = (await client.get(f"/Patient/{existing['id']}")).json()
    assert read["meta"]["versionId"] == "1" and "gender" not in read
    assert await search_ids(client, "Patient", {"identifier": f"urn:test|{tag}-d"}) == []
