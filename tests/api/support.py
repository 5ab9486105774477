"""Helpers shared by the HTTP tests: resource builders, OperationOutcome checks, paging."""

from __future__ import annotations

from typing import Any

import httpx

BASE = "http://test/fhir"
TEST_SYSTEM = "urn:test"


def patient(tag: str, **extra: Any) -> dict[str, Any]:
    """A Patient found by identifier urn:test|tag and by family name Test<tag>."""
    return {"resourceType": "Patient", "identifier": [{"system": TEST_SYSTEM, "value": tag}],
            "name": [{"family": f"Test{tag}", "given": ["Ann"]}], **extra}


async def create(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST the resource, insist on 201, return what the server stored."""
    r = await client.post(f"/{body['resourceType']}", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def outcome(r: httpx.Response, status: int, *text: str) -> dict[str, Any]:
    """Assert an OperationOutcome answer with `status` whose diagnostics mention each of `text`."""
    assert r.status_code == status, f"{r.status_code} != {status}: {r.text}"
    assert r.headers["content-type"].startswith("application/fhir+json"), r.headers
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"], body
    for issue in body["issue"]:
        assert issue["severity"] in ("fatal", "error", "warning", "information")
        assert issue["code"]
    diagnostics = " ".join(i.get("diagnostics", "") for i in body["issue"])
    assert "Traceback" not in diagnostics and 'File "' not in diagnostics
    for t in text:
        assert t.lower() in diagnostics.lower(), f"{t!r} not in {diagnostics!r}"
    if status >= 400:
        assert any(i["severity"] in ("error", "fatal") for i in body["issue"]), body
    return body


def link(bundle: dict[str, Any], relation: str) -> str | None:
    for item in bundle.get("link", ()):
        if item["relation"] == relation:
            return item["url"]
    return None


async def pages(client: httpx.AsyncClient, path: str,
                params: Any = None) -> list[dict[str, Any]]:
    """Every page of a search or history, following `next` links; asserts each is a Bundle."""
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    out = [r.json()]
    while (nxt := link(out[-1], "next")) is not None:
        assert nxt.startswith(BASE + "/"), nxt
        assert len(out) < 200, "runaway paging"
        r = await client.get(nxt)
        assert r.status_code == 200, r.text
        out.append(r.json())
    for page in out:
        assert page["resourceType"] == "Bundle"
        assert link(page, "self") is not None
    return out


def entry_ids(bundle_pages: list[dict[str, Any]]) -> list[str]:
    return [e["resource"]["id"] for page in bundle_pages for e in page.get("entry", ())]


async def search_ids(client: httpx.AsyncClient, type_: str, params: Any) -> list[str]:
    """Ids a search finds over all its pages, checking none is repeated."""
    ids = entry_ids(await pages(client, f"/{type_}", params))
    assert len(ids) == len(set(ids)), f"an id repeats across pages: {ids}"
    return ids
