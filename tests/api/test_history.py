"""History at instance, type and system level (https://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.api.support import BASE, create, link, outcome, pages, patient


def versions(bundle_pages: list[dict[str, Any]], ids: set[str] | None = None) -> list[tuple]:
    """(type, id, version) of each history entry, in order, optionally only of `ids`."""
    out = []
    for page in bundle_pages:
        assert page["type"] == "history"
        for e in page["entry"]:
            type_, id_ = e["fullUrl"].removeprefix(BASE + "/").split("/")
            if ids is None or id_ in ids:
                out.append((type_, id_, int(e["response"]["etag"].split('"')[1])))
    return out


async def pause() -> None:
    """Let the clock move on, so that consecutive writes have distinct lastUpdated."""
    await asyncio.sleep(0.005)


async def make_history(client: httpx.AsyncClient, tag: str) -> tuple[str, list[dict]]:
    """A Patient with four versions: create, two updates, delete. Returns id and versions."""
    created = await create(client, patient(tag))
    pid = created["id"]
    seen = [created]
    for gender in ("male", "female"):
        await pause()
        r = await client.put(f"/Patient/{pid}", json=dict(seen[-1], gender=gender))
        assert r.status_code == 200
        seen.append(r.json())
    await pause()
    assert (await client.delete(f"/Patient/{pid}")).status_code in (200, 204)
    return pid, seen


async def test_instance_history(client: httpx.AsyncClient, tag: str) -> None:
    pid, seen = await make_history(client, tag)
    bundle = (await client.get(f"/Patient/{pid}/_history")).json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    entries = bundle["entry"]
    assert [e["request"]["method"] for e in entries] == ["DELETE", "PUT", "PUT", "POST"]
    assert [e["response"]["etag"] for e in entries] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    assert entries[-1]["response"]["status"].startswith("201")
    assert entries[1]["response"]["status"].startswith("200")
    assert "resource" not in entries[0]
    assert entries[1]["resource"]["gender"] == "female"
    assert entries[2]["resource"]["gender"] == "male"
    assert entries[3]["resource"] == seen[0]
    for e in entries:
        assert e["fullUrl"] == f"{BASE}/Patient/{pid}"
        assert e["response"]["lastModified"]
    assert link(bundle, "self").startswith(f"{BASE}/Patient/{pid}/_history")


async def test_instance_history_paging_and_since(client: httpx.AsyncClient, tag: str) -> None:
    pid, seen = await make_history(client, tag)
    got = versions(await pages(client, f"/Patient/{pid}/_history", {"_count": "1"}))
    assert got == [("Patient", pid, v) for v in (4, 3, 2, 1)]
    since = seen[1]["meta"]["lastUpdated"]  # version 2 was written at this instant
    got = versions(await pages(client, f"/Patient/{pid}/_history",
                               {"_since": since, "_count": "2"}))
    assert got == [("Patient", pid, v) for v in (4, 3, 2)]
    # The same instant written with a zone offset: also when following the next link.
    offset = since.replace("Z", "+00:00")
    got = versions(await pages(client, f"/Patient/{pid}/_history",
                               {"_since": offset, "_count": "1"}))
    assert got == [("Patient", pid, v) for v in (4, 3, 2)]
    got = versions(await pages(client, f"/Patient/{pid}/_history",
                               {"_since": "2999-01-01"}))
    assert got == []


async def test_type_history_sees_each_version_once(client: httpx.AsyncClient, tag: str) -> None:
    first = await create(client, patient(tag))
    since = first["meta"]["lastUpdated"]
    mine = {first["id"]}
    expected = {("Patient", first["id"], 1)}
    for i in range(3):
        made = await create(client, patient(f"{tag}-{i}"))
        mine.add(made["id"])
        expected.add(("Patient", made["id"], 1))
        r = await client.put(f"/Patient/{made['id']}", json=dict(made, gender="unknown"))
        assert r.status_code == 200
        expected.add(("Patient", made["id"], 2))
    obs = await create(client, {"resourceType": "Observation", "status": "final",
                                "code": {"text": tag}})
    got_pages = await pages(client, "/Patient/_history", {"_since": since, "_count": "2"})
    assert len(got_pages) >= 4
    for page in got_pages:
        assert len(page["entry"]) <= 2
    everything = versions(got_pages)
    assert all(t == "Patient" for t, _, _ in everything)
    assert obs["id"] not in {i for _, i, _ in everything}
    got = versions(got_pages, mine)
    assert len(got) == len(set(got)), got
    assert set(got) == expected
    # Newest first.
    assert got[0] == ("Patient", made["id"], 2)


async def test_system_history(client: httpx.AsyncClient, tag: str) -> None:
    pat = await create(client, patient(tag))
    obs = await create(client, {"resourceType": "Observation", "status": "final",
                                "code": {"text": tag},
                                "subject": {"reference": f"Patient/{pat['id']}"}})
    r = await client.put(f"/Observation/{obs['id']}", json=dict(obs, status="amended"))
    assert r.status_code == 200
    got_pages = await pages(client, "/_history",
                            {"_since": pat["meta"]["lastUpdated"], "_count": "1"})
    got = versions(got_pages, {pat["id"], obs["id"]})
    assert got == [("Observation", obs["id"], 2), ("Observation", obs["id"], 1),
                   ("Patient", pat["id"], 1)]
    assert link(got_pages[0], "self").startswith(f"{BASE}/_history")


async def test_history_pages_stay_put_while_others_write(client: httpx.AsyncClient,
                                                         tag: str) -> None:
    pid, _ = await make_history(client, tag)
    first = (await client.get(f"/Patient/{pid}/_history", params={"_count": "2"})).json()
    assert versions([first]) == [("Patient", pid, 4), ("Patient", pid, 3)]
    # A write between pages does not shift the next page.
    r = await client.put(f"/Patient/{pid}", json=patient(tag, id=pid))
    assert r.status_code in (200, 201)
    second = (await client.get(link(first, "next"))).json()
    assert versions([second]) == [("Patient", pid, 2), ("Patient", pid, 1)]


async def test_history_errors(client: httpx.AsyncClient, tag: str) -> None:
    outcome(await client.get(f"/Patient/nobody-{tag}/_history"), 404)
    outcome(await client.get("/Nothing/_history"), 404)
    outcome(await client.get("/Patient/_history", params={"_since": "last tuesday"}), 400,
            "_since")
    outcome(await client.get("/Patient/_history", params={"_count": "many"}), 400, "_count")
    outcome(await client.get("/_history", params={"_at": "2020"}), 400, "_at")
    outcome(await client.get("/_history", params={"_cursor": "???"}), 400)
