"""HTTP headers a client relies on: Content-Type, ETag, Last-Modified, Location, Allow,
the public base URL in Location and links, and Prefer on conditional interactions."""

from __future__ import annotations

import email.utils
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from api.settings import Settings
from tests.api.support import BASE, create, link, patient
from tests.clients import audited_client
from tests.tokens import bearer, mint

FHIR_JSON = "application/fhir+json"


def assert_http_date(value: str) -> None:
    assert value.endswith(" GMT"), value
    assert email.utils.parsedate_to_datetime(value).tzinfo is not None


async def test_content_type_everywhere(client: httpx.AsyncClient, tag: str) -> None:
    created = await create(client, patient(tag))
    pid = created["id"]
    responses = [
        await client.get(f"/Patient/{pid}"),
        await client.get(f"/Patient/{pid}", params={"_format": "json"}),
        await client.get(f"/Patient/{pid}/_history/1"),
        await client.get(f"/Patient/{pid}/_history"),
        await client.get("/Patient", params={"_id": pid}),
        await client.get("/metadata"),
        await client.post("", json={"resourceType": "Bundle", "type": "batch", "entry": []}),
        await client.put(f"/Patient/{pid}", json=created),
        await client.get(f"/Patient/nobody-{tag}"),
        await client.get("/Patient", params={"bogus": "1"}),
    ]
    for r in responses:
        assert r.headers["content-type"].startswith(FHIR_JSON), (r.request.url, r.headers)
        assert "charset=utf-8" in r.headers["content-type"].lower()
        json.loads(r.content)


async def test_etag_and_last_modified_on_every_version(client: httpx.AsyncClient,
                                                       tag: str) -> None:
    r = await client.post("/Patient", json=patient(tag))
    pid = r.json()["id"]
    assert r.headers["etag"] == 'W/"1"'
    assert_http_date(r.headers["last-modified"])
    r = await client.put(f"/Patient/{pid}", json=patient(tag, id=pid, gender="male"))
    assert r.headers["etag"] == 'W/"2"'
    assert_http_date(r.headers["last-modified"])
    r = await client.patch(f"/Patient/{pid}", content=b'[{"op":"remove","path":"/gender"}]',
                           headers={"content-type": "application/json-patch+json"})
    assert r.headers["etag"] == 'W/"3"'
    for path, etag in ((f"/Patient/{pid}", 'W/"3"'), (f"/Patient/{pid}/_history/2", 'W/"2"')):
        r = await client.get(path)
        assert r.headers["etag"] == etag
        assert r.json()["meta"]["versionId"] == etag[3:-1]
        assert_http_date(r.headers["last-modified"])


async def test_read_is_the_same_on_every_path(client: httpx.AsyncClient, tag: str) -> None:
    """A plain read and one with a query string (which takes the general route) agree."""
    created = await create(client, patient(tag, birthDate="1970-01-01"))
    plain = await client.get(f"/Patient/{created['id']}")
    routed = await client.get(f"/Patient/{created['id']}", params={"_format": "json"})
    assert plain.status_code == routed.status_code == 200
    assert plain.json() == routed.json() == created
    for header in ("etag", "last-modified", "content-type"):
        assert plain.headers[header] == routed.headers[header]
    assert int(plain.headers["content-length"]) == len(plain.content)


async def test_location_is_absolute_and_versioned(client: httpx.AsyncClient, tag: str) -> None:
    r = await client.post("/Patient", json=patient(tag))
    pid = r.json()["id"]
    assert r.headers["location"] == f"{BASE}/Patient/{pid}/_history/1"
    r = await client.put(f"/Patient/c-{tag}", json=patient(tag, id=f"c-{tag}"))
    assert r.status_code == 201
    assert r.headers["location"] == f"{BASE}/Patient/c-{tag}/_history/1"
    r = await client.put(f"/Patient?identifier=urn:test|nobody-{tag}",
                         json=patient(f"nobody-{tag}"))
    assert r.status_code == 201
    assert r.headers["location"] == f"{BASE}/Patient/{r.json()['id']}/_history/1"


async def test_prefer_on_conditional_create(client: httpx.AsyncClient, tag: str) -> None:
    headers = {"If-None-Exist": f"identifier=urn:test|{tag}", "Prefer": "return=minimal"}
    first = await client.post("/Patient", json=patient(tag), headers=headers)
    assert first.status_code == 201 and first.content == b""
    again = await client.post("/Patient", json=patient(tag), headers=headers)
    assert again.status_code == 200 and again.content == b""
    assert again.headers["location"] == first.headers["location"]
    r = await client.post("/Patient", json=patient(tag),
                          headers={**headers, "Prefer": "return=OperationOutcome"})
    assert r.status_code == 200
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_method_not_allowed_says_what_is(client: httpx.AsyncClient, tag: str) -> None:
    r = await client.post(f"/Patient/{tag}", json=patient(tag))
    assert r.status_code == 405
    allowed = {m.strip() for m in r.headers["allow"].split(",")}
    assert {"GET", "PUT", "DELETE", "PATCH"} <= allowed


@pytest.fixture(scope="module")
async def public(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A server configured with its public base URL (behind a proxy)."""
    settings = Settings(database_url=database_url, base_url="https://fhir.example.org/r4/")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        token = await mint(app, issuer="https://fhir.example.org/r4",
                           audience="https://fhir.example.org/r4")
        async with audited_client(app, base_url=BASE, headers=bearer(token)) as c:
            yield c


async def test_configured_base_url_in_location_and_links(public: httpx.AsyncClient,
                                                         tag: str) -> None:
    r = await public.post("/Patient", json=patient(tag))
    pid = r.json()["id"]
    assert r.headers["location"] == f"https://fhir.example.org/r4/Patient/{pid}/_history/1"
    bundle = (await public.get("/Patient", params={"_id": pid})).json()
    assert link(bundle, "self").startswith("https://fhir.example.org/r4/Patient?")
    assert bundle["entry"][0]["fullUrl"] == f"https://fhir.example.org/r4/Patient/{pid}"
    history = (await public.get(f"/Patient/{pid}/_history")).json()
    assert link(history, "self").startswith(f"https://fhir.example.org/r4/Patient/{pid}/")
    meta = (await public.get("/metadata")).json()
    assert meta["implementation"]["url"] == "https://fhir.example.org/r4"
