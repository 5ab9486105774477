"""Exact matches find values of any stored length (token, `:exact` string, uri), and
conditional creates on them do not duplicate (issue 18, item 3; fhir/index.py `finish`)."""

from __future__ import annotations

import httpx

from tests.api.support import create, search_ids

SYSTEM = "urn:test"


def long_value(tag: str, size: int, tail: str = "") -> str:
    """A value of `size` characters starting with `tag`; `tail` ends it (values differing
    only there share their first `size - len(tail)` characters)."""
    return (tag + "x" * size)[: size - len(tail)] + tail


async def test_long_identifier_is_found_exactly(client: httpx.AsyncClient, tag: str) -> None:
    value = long_value(tag, 300, "-a")
    twin = long_value(tag, 300, "-b")  # the same first 298 characters
    a = await create(client, {"resourceType": "Patient",
                              "identifier": [{"system": SYSTEM, "value": value}]})
    b = await create(client, {"resourceType": "Patient",
                              "identifier": [{"system": SYSTEM, "value": twin}]})
    assert await search_ids(client, "Patient", {"identifier": f"{SYSTEM}|{value}"}) == [a["id"]]
    assert await search_ids(client, "Patient", {"identifier": value}) == [a["id"]]
    assert await search_ids(client, "Patient", {"identifier": f"{SYSTEM}|{twin}"}) == [b["id"]]
    # Their common start, at the column's length or shorter, is neither of them.
    assert await search_ids(client, "Patient", {"identifier": value[:255]}) == []
    assert await search_ids(client, "Patient", {"identifier": value[:254]}) == []
    # A value of exactly the column's length is found, and only by itself.
    exact = await create(client, {"resourceType": "Patient",
                                  "identifier": [{"system": SYSTEM, "value": value[:255]}]})
    assert await search_ids(client, "Patient", {"identifier": value[:255]}) == [exact["id"]]


async def test_long_system_is_found_exactly(client: httpx.AsyncClient, tag: str) -> None:
    system = "urn:" + long_value(tag, 400)
    created = await create(client, {"resourceType": "Patient",
                                    "identifier": [{"system": system, "value": tag}]})
    assert await search_ids(client, "Patient", {"identifier": f"{system}|{tag}"}) == [
        created["id"]]
    assert await search_ids(client, "Patient", {"identifier": f"{system[:255]}|{tag}"}) == []


async def test_conditional_create_on_a_long_identifier_does_not_duplicate(
        client: httpx.AsyncClient, tag: str) -> None:
    value = long_value(tag, 300)
    body = {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": value}]}
    headers = {"If-None-Exist": f"identifier={SYSTEM}|{value}"}
    first = await client.post("/Patient", json=body, headers=headers)
    second = await client.post("/Patient", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200), second.text
    assert first.json()["id"] == second.json()["id"]
    put = await client.put(f"/Patient?identifier={SYSTEM}|{value}", json=body)
    assert put.status_code == 200 and put.json()["id"] == first.json()["id"], put.text
    assert len(await search_ids(client, "Patient", {"identifier": f"{SYSTEM}|{value}"})) == 1


async def test_long_family_with_exact(client: httpx.AsyncClient, tag: str) -> None:
    family = long_value(tag, 300, "Z")
    created = await create(client, {"resourceType": "Patient", "name": [{"family": family}]})
    assert await search_ids(client, "Patient", {"family:exact": family}) == [created["id"]]
    assert await search_ids(client, "Patient", {"family:exact": family[:-1] + "Y"}) == []
    assert await search_ids(client, "Patient", {"family:exact": family[:255]}) == []
    # Starts-with uses what the column holds: a long prefix still finds it.
    assert await search_ids(client, "Patient", {"family": family[:280]}) == [created["id"]]
    headers = {"If-None-Exist": f"family:exact={family}"}
    again = await client.post("/Patient", json={"resourceType": "Patient",
                                                "name": [{"family": family}]}, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == created["id"], again.text


async def test_long_questionnaire_url(client: httpx.AsyncClient, tag: str) -> None:
    url = "https://example.org/q/" + long_value(tag, 1025 - 22)
    assert len(url) == 1025
    body = {"resourceType": "Questionnaire", "status": "active", "url": url}
    created = await create(client, body)
    assert await search_ids(client, "Questionnaire", {"url": url}) == [created["id"]]
    assert await search_ids(client, "Questionnaire", {"url": url[:1024]}) == []
    assert await search_ids(client, "Questionnaire", {"url:below": url[:500]}) == [
        created["id"]]
    again = await client.post("/Questionnaire", json=body, headers={"If-None-Exist":
                                                                     f"url={url}"})
    assert again.status_code == 200 and again.json()["id"] == created["id"], again.text
