"""All-or-nothing writes, on both backends: a failing transaction, conditional create or
update leaves no trace; a batch keeps its good entries and reports the bad one in place.

"No trace" is checked three ways: a search by the test's unique identifier finds nothing,
the type history since the test began holds no version carrying that identifier, and the
resources the failed request touched are still at the version they had before.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

SYSTEM = "urn:test"


def patient(value: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": value}],
            "name": [{"family": f"Atom{value}"}], **extra}


def observation(value: str, subject: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "identifier": [{"system": SYSTEM, "value": value}],
            "code": {"text": "weight"}, "subject": {"reference": subject}}


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


async def since_now() -> str:
    """A _since value after every write so far and before any later one (the server and the
    tests share the clock; versions are stamped to the millisecond, rounded)."""
    await asyncio.sleep(0.01)
    stamp = datetime.now(UTC) - timedelta(milliseconds=2)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def count(client: httpx.AsyncClient, type_: str, value: str) -> int:
    r = await client.get(f"/{type_}", params={"identifier": f"{SYSTEM}|{value}", "_count": "100"})
    assert r.status_code == 200, r.text
    return len(r.json().get("entry") or [])


async def history_mentions(client: httpx.AsyncClient, type_: str, since: str, text: str) -> int:
    """How many versions of `type_` written since `since` carry `text` anywhere."""
    r = await client.get(f"/{type_}/_history", params={"_since": since, "_count": "1000"})
    assert r.status_code == 200, r.text
    return sum(text in orjson.dumps(e.get("resource")).decode()
               for e in r.json().get("entry") or [])


async def versions(client: httpx.AsyncClient, type_: str, id_: str) -> list[int]:
    r = await client.get(f"/{type_}/{id_}/_history", params={"_count": "1000"})
    assert r.status_code == 200, r.text
    return sorted(int(e["response"]["etag"].strip('W/"')) for e in r.json()["entry"])


async def make(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(f"/{body['resourceType']}", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None,
         if_none_exist: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource,
                             "request": {"method": "POST", "url": resource["resourceType"]}}
    if full_url:
        entry["fullUrl"] = full_url
    if if_none_exist:
        entry["request"]["ifNoneExist"] = if_none_exist
    return entry


def put(resource: dict[str, Any], url: str, if_match: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource, "request": {"method": "PUT", "url": url}}
    if if_match:
        entry["request"]["ifMatch"] = if_match
    return entry


def failed(r: httpx.Response, status: int, entry: int) -> str:
    """Assert `r` is an OperationOutcome with `status` naming Bundle.entry[entry]."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    text = " ".join(i.get("diagnostics", "") for i in body["issue"])
    assert f"Bundle.entry[{entry}]" in text, text
    assert all(i["severity"] in ("error", "fatal") for i in body["issue"]), body
    return text


# --- transactions ---------------------------------------------------------------------------


async def test_transaction_with_invalid_later_entry_keeps_nothing(
        client: httpx.AsyncClient, tag: str) -> None:
    since = await since_now()
    pat = urn()
    bad = patient(f"{tag}-bad", birthDate="not-a-date")
    r = await client.post("", json=transaction(
        post(patient(tag), pat),
        post(observation(tag, pat), urn()),
        post(bad, urn()),
    ))
    text = failed(r, 422, 2)
    assert "birthDate" in text
    assert await count(client, "Patient", tag) == 0
    assert await count(client, "Observation", tag) == 0
    assert await count(client, "Patient", f"{tag}-bad") == 0
    assert await history_mentions(client, "Patient", since, tag) == 0
    assert await history_mentions(client, "Observation", since, tag) == 0
    # The same Bundle without the bad entry goes through: the failure was the bad entry.
    r = await client.post("", json=transaction(post(patient(tag), pat),
                                               post(observation(tag, pat), urn())))
    assert r.status_code == 200, r.text
    assert await count(client, "Patient", tag) == 1
    assert await count(client, "Observation", tag) == 1


async def test_transaction_with_stale_if_match_undoes_creates_and_deletes(
        client: httpx.AsyncClient, tag: str) -> None:
    target = await make(client, patient(f"{tag}-target"))
    doomed = await make(client, patient(f"{tag}-doomed"))
    since = await since_now()
    changed = patient(f"{tag}-target", id=target["id"], gender="female")
    r = await client.post("", json=transaction(
        post(patient(tag), urn()),                               # runs second (POST)
        {"request": {"method": "DELETE", "url": f"Patient/{doomed['id']}"}},  # runs first
        put(changed, f"Patient/{target['id']}", 'W/"7"'),        # runs last and fails
    ))
    text = failed(r, 412, 2)
    assert "version 1" in text
    assert await count(client, "Patient", tag) == 0
    # The deletion that ran before the failure was undone as well.
    read = await client.get(f"/Patient/{doomed['id']}")
    assert read.status_code == 200 and read.headers["etag"] == 'W/"1"'
    read = await client.get(f"/Patient/{target['id']}")
    assert read.status_code == 200 and read.headers["etag"] == 'W/"1"'
    assert "gender" not in read.json()
    assert await versions(client, "Patient", doomed["id"]) == [1]
    assert await versions(client, "Patient", target["id"]) == [1]
    assert await history_mentions(client, "Patient", since, tag) == 0


async def test_transaction_with_unresolvable_reference_keeps_nothing(
        client: httpx.AsyncClient, tag: str) -> None:
    since = await since_now()
    missing = urn()
    r = await client.post("", json=transaction(
        post(patient(tag), urn()),
        post(observation(tag, missing), urn()),
    ))
    text = failed(r, 400, 1)
    assert missing in text
    assert await count(client, "Patient", tag) == 0
    assert await count(client, "Observation", tag) == 0
    assert await history_mentions(client, "Patient", since, tag) == 0
    assert await history_mentions(client, "Observation", since, tag) == 0


async def test_failed_transaction_releases_its_conditional_create(
        client: httpx.AsyncClient, tag: str) -> None:
    """A conditional create inside a failed transaction leaves no key behind: the next
    conditional create with the same criteria creates (201), it does not find a ghost."""
    cond = f"identifier={SYSTEM}|{tag}"
    r = await client.post("", json=transaction(
        post(patient(tag), urn(), cond),
        post(patient(f"{tag}-bad", birthDate="not-a-date"), urn()),
    ))
    failed(r, 422, 1)
    assert await count(client, "Patient", tag) == 0
    r = await client.post("/Patient", json=patient(tag), headers={"If-None-Exist": cond})
    assert r.status_code == 201, r.text
    r2 = await client.post("/Patient", json=patient(tag), headers={"If-None-Exist": cond})
    assert r2.status_code == 200 and r2.json()["id"] == r.json()["id"]
    assert await count(client, "Patient", tag) == 1


async def test_failed_patch_in_transaction_keeps_nothing(
        client: httpx.AsyncClient, tag: str) -> None:
    target = await make(client, patient(f"{tag}-t"))
    patched = await make(client, patient(f"{tag}-p"))  # (one entry per resource: http.html#trules)
    since = await since_now()
    ops = [{"op": "replace", "path": "/id", "value": "other"}]  # may not change the id: 422
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
              "data": base64.b64encode(orjson.dumps(ops)).decode()}
    r = await client.post("", json=transaction(
        post(patient(tag), urn()),
        put(patient(f"{tag}-t", id=target["id"], gender="male"), f"Patient/{target['id']}"),
        {"resource": binary, "request": {"method": "PATCH", "url": f"Patient/{patched['id']}"}},
    ))
    failed(r, 422, 2)
    assert await count(client, "Patient", tag) == 0
    assert await versions(client, "Patient", target["id"]) == [1]
    assert "gender" not in (await client.get(f"/Patient/{target['id']}")).json()
    assert await history_mentions(client, "Patient", since, tag) == 0


# --- batch ----------------------------------------------------------------------------------


async def test_batch_keeps_good_entries_and_reports_bad_ones(
        client: httpx.AsyncClient, tag: str) -> None:
    target = await make(client, patient(f"{tag}-t"))
    r = await client.post("", json=transaction(
        post(patient(f"{tag}-1")),
        post(patient(f"{tag}-bad", birthDate="not-a-date")),
        put(patient(f"{tag}-t", id=target["id"], gender="male"), f"Patient/{target['id']}",
            'W/"9"'),
        put(patient(f"{tag}-obs", id="some-other-id"), f"Patient/{tag}-obs"),  # id mismatch
        post(patient(f"{tag}-2")),
        kind="batch",
    ))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"].split()[0] for e in body["entry"]]
    assert statuses == ["201", "422", "412", "400", "201"], statuses
    for i in (1, 2, 3):
        outcome = body["entry"][i]["response"]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["severity"] == "error"
    assert await count(client, "Patient", f"{tag}-1") == 1
    assert await count(client, "Patient", f"{tag}-2") == 1
    assert await count(client, "Patient", f"{tag}-bad") == 0
    assert await count(client, "Patient", f"{tag}-obs") == 0
    assert await versions(client, "Patient", target["id"]) == [1]
    for i in (0, 4):
        id_ = body["entry"][i]["resource"]["id"]
        assert (await client.get(f"/Patient/{id_}")).status_code == 200


# --- single conditional interactions ------------------------------------------------------


async def test_failed_conditional_create_changes_nothing(
        client: httpx.AsyncClient, tag: str) -> None:
    cond = f"identifier={SYSTEM}|{tag}"
    # Invalid body: 422 and no key is kept, so a valid one afterwards creates.
    r = await client.post("/Patient", json=patient(tag, birthDate="nope"),
                          headers={"If-None-Exist": cond})
    assert r.status_code == 422, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert await count(client, "Patient", tag) == 0
    first = await client.post("/Patient", json=patient(tag), headers={"If-None-Exist": cond})
    assert first.status_code == 201, first.text
    # Two matches: 412 and nothing new.
    await make(client, patient(tag))
    since = await since_now()
    r = await client.post("/Patient", json=patient(tag, gender="other"),
                          headers={"If-None-Exist": cond})
    assert r.status_code == 412, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert await count(client, "Patient", tag) == 2
    assert await history_mentions(client, "Patient", since, "other") == 0


async def test_failed_updates_change_nothing(client: httpx.AsyncClient, tag: str) -> None:
    one = await make(client, patient(tag))
    two = await make(client, patient(tag))
    since = await since_now()
    # Conditional update matching two resources: 412.
    r = await client.put("/Patient", params={"identifier": f"{SYSTEM}|{tag}"},
                         json=patient(tag, gender="female"))
    assert r.status_code == 412, r.text
    # Conditional update with a stale If-Match: 412.
    r = await client.put("/Patient", params={"_id": one["id"]},
                         json=patient(tag, gender="female"), headers={"If-Match": 'W/"4"'})
    assert r.status_code == 412, r.text
    # Update with a stale If-Match, and with an invalid body.
    r = await client.put(f"/Patient/{one['id']}", json=patient(tag, id=one["id"], gender="female"),
                         headers={"If-Match": 'W/"2"'})
    assert r.status_code == 412, r.text
    r = await client.put(f"/Patient/{one['id']}", json=patient(tag, id=one["id"], birthDate="x"))
    assert r.status_code == 422, r.text
    # Update-as-create with an invalid body creates nothing.
    r = await client.put(f"/Patient/{tag}-new", json=patient(tag, id=f"{tag}-new", birthDate="x"))
    assert r.status_code == 422, r.text
    assert (await client.get(f"/Patient/{tag}-new")).status_code == 404
    for p in (one, two):
        assert await versions(client, "Patient", p["id"]) == [1]
        assert "gender" not in (await client.get(f"/Patient/{p['id']}")).json()
    assert await count(client, "Patient", tag) == 2
    assert await history_mentions(client, "Patient", since, tag) == 0


# --- the conditional-create key when its resource no longer matches ----------------------


async def test_conditional_create_after_its_resource_stopped_matching(
        client: httpx.AsyncClient, tag: str) -> None:
    cond = f"identifier={SYSTEM}|{tag}"
    first = await client.post("/Patient", json=patient(tag), headers={"If-None-Exist": cond})
    assert first.status_code == 201, first.text
    old = first.json()
    # The resource moves away from the criteria; its conditional key is now stale.
    r = await client.put(f"/Patient/{old['id']}", json=patient(f"{tag}-moved", id=old["id"]))
    assert r.status_code == 200, r.text
    assert await count(client, "Patient", tag) == 0
    again = await client.post("/Patient", json=patient(tag), headers={"If-None-Exist": cond})
    assert again.status_code == 201, again.text
    new = again.json()
    assert new["id"] != old["id"]
    assert new["meta"]["versionId"] == "1"
    assert await count(client, "Patient", tag) == 1
    assert await versions(client, "Patient", new["id"]) == [1]
    third = await client.post("/Patient", json=patient(tag), headers={"If-None-Exist": cond})
    assert third.status_code == 200 and third.json()["id"] == new["id"]
    assert await count(client, "Patient", tag) == 1
    assert await versions(client, "Patient", old["id"]) == [1, 2]


async def test_conditional_create_in_transaction_after_resource_stopped_matching(
        client: httpx.AsyncClient, tag: str) -> None:
    cond = f"identifier={SYSTEM}|{tag}"
    first = await client.post("/Patient", json=patient(tag), headers={"If-None-Exist": cond})
    assert first.status_code == 201, first.text
    old = first.json()
    r = await client.put(f"/Patient/{old['id']}", json=patient(f"{tag}-moved", id=old["id"]))
    assert r.status_code == 200, r.text
    pat = urn()
    r = await client.post("", json=transaction(post(patient(tag), pat, cond),
                                               post(observation(tag, pat), urn())))
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"].startswith("201")
    new_id = entries[0]["resource"]["id"]
    assert new_id != old["id"]
    assert entries[1]["resource"]["subject"]["reference"] == f"Patient/{new_id}"
    found = await client.get("/Patient", params={"identifier": f"{SYSTEM}|{tag}"})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [new_id]


async def test_transaction_with_two_conditional_creates_of_one_resource_fails(
        client: httpx.AsyncClient, tag: str) -> None:
    """Two entries whose ifNoneExist name the same new resource overlap: the transaction fails
    (https://hl7.org/fhir/R4/http.html#trules) rather than point a reference at an id that
    was never stored."""
    cond = f"identifier={SYSTEM}|{tag}"
    first, second = urn(), urn()
    r = await client.post("", json=transaction(
        post(patient(tag), first, cond),
        post(patient(tag), second, cond),
        post(observation(tag, second), urn()),
    ))
    failed(r, 412, 1)
    assert await count(client, "Patient", tag) == 0
    assert await count(client, "Observation", tag) == 0
