"""Bulk Data export over HTTP (https://hl7.org/fhir/uv/bulkdata/export.html), both backends:
kick-off, polling, manifest, NDJSON files equal to what a search returns to the same client,
access (a practice's service, other clients, tokens without system/ scopes), opt-outs of
secondary use, validation, cancelling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from api.app import create_app
from api.settings import Settings
from tests.api.oauth_support import new_key, public_jwks
from tests.api.support import create, outcome, patient
from tests.clients import audited_client
from tests.tokens import bearer, mint

PREFER = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
OPTED_OUT = "https://carenet.invalid/fhir/bulkdata/opted-out-patients"


@pytest.fixture(scope="module")
async def export_app(database_url: str,
                     tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    settings = Settings(database_url=database_url,
                        export_dir=tmp_path_factory.mktemp("exports"))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def client_for(app: Any, token: str) -> httpx.AsyncClient:
    return audited_client(app, base_url="http://test/fhir", headers=bearer(token))


@pytest.fixture
async def network(export_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The network's backend service (every record)."""
    async with await client_for(export_app, await mint(export_app)) as c:
        yield c


async def kick_off(c: httpx.AsyncClient, path: str) -> str:
    r = await c.get(path, headers=PREFER)
    assert r.status_code == 202, r.text
    return r.headers["content-location"]


async def finished(c: httpx.AsyncClient, status_url: str) -> dict[str, Any]:
    """Poll until the manifest (each answer before it is 202 with X-Progress)."""
    for _ in range(400):
        r = await c.get(status_url)
        if r.status_code == 200:
            return r.json()  # type: ignore[no-any-return]
        assert r.status_code == 202, r.text
        assert r.headers["x-progress"]
        await asyncio.sleep(0.02)
    raise AssertionError("the export did not finish")


async def files(c: httpx.AsyncClient, manifest: dict[str, Any]) -> dict[str, list[dict]]:
    found = {}
    for out in manifest["output"]:
        r = await c.get(out["url"])
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(line) for line in r.text.splitlines()]
        assert len(lines) == out["count"]
        found[out["type"]] = lines
    return found


async def export(c: httpx.AsyncClient, path: str) -> tuple[dict[str, Any], dict[str, list]]:
    manifest = await finished(c, await kick_off(c, path))
    return manifest, await files(c, manifest)


async def searched(c: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
    r = await c.get(f"{query}{'&' if '?' in query else '?'}_count=1000")
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def by_id(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in resources}


async def observation(c: httpx.AsyncClient, pid: str, code: str) -> dict[str, Any]:
    return await create(c, {"resourceType": "Observation", "status": "final",
                            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                            "subject": {"reference": f"Patient/{pid}"}})


async def test_group_export_is_what_a_search_returns(network: httpx.AsyncClient,
                                                     tag: str) -> None:
    a = (await create(network, patient(tag)))["id"]
    b = (await create(network, patient(tag)))["id"]
    outsider = (await create(network, patient(tag)))["id"]
    for pid in (a, b, outsider):
        await observation(network, pid, "8867-4")
        await observation(network, pid, "29463-7")
    group = await create(network, {"resourceType": "Group", "type": "person", "actual": True,
                                   "member": [{"entity": {"reference": f"Patient/{a}"}},
                                              {"entity": {"reference": f"Patient/{b}"}}]})
    path = f"/Group/{group['id']}/$export"
    manifest, out = await export(network, path)

    assert manifest["request"] == f"http://test/fhir{path}"
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    assert manifest["transactionTime"].endswith("Z")
    assert manifest["extension"][OPTED_OUT] == 0
    # The Group is in its first member's compartment (R4 Patient compartment: Group.member).
    assert sorted(out) == ["Group", "Observation", "Patient"]
    assert by_id(out["Patient"]) == by_id(await searched(network, f"/Patient?_id={a},{b}"))
    assert by_id(out["Observation"]) == by_id(
        await searched(network, f"/Observation?subject=Patient/{a},Patient/{b}"))
    assert len(out["Observation"]) == 4

    # _type and _typeFilter narrow it; _since after everything leaves nothing.
    only = (f"{path}?_type=Observation&_typeFilter="
            "Observation%3Fcode%3Dhttp://loinc.org%7C8867-4")
    _, out = await export(network, only)
    assert sorted(o["subject"]["reference"] for o in out["Observation"]) == sorted(
        [f"Patient/{a}", f"Patient/{b}"])
    assert {o["code"]["coding"][0]["code"] for o in out["Observation"]} == {"8867-4"}
    manifest, out = await export(network, f"{path}?_since=2999-01-01T00:00:00Z")
    assert manifest["output"] == [] and out == {}


async def practice_service(app: Any, org: str) -> str:
    """A backend service the operator registered and tied to Organization/`org`: its token."""
    from consent import clients

    body = {"client_name": "Practice planning", "jwks": public_jwks(new_key("ES384")),
            "grant_types": ["client_credentials"], "scope": "system/*.rs",
            "organization": f"Organization/{org}"}
    async with app.state.db.write() as conn:
        client_id = (await clients.register(conn, body, operator=True))["client_id"]
    return await mint(app, sub=client_id, client_id=client_id, scope="system/*.rs")


async def test_a_practice_service_exports_its_own_patients_only(
        export_app: Any, network: httpx.AsyncClient, tag: str) -> None:
    org = (await create(network, {"resourceType": "Organization", "name": f"S {tag}"}))["id"]
    ours = (await create(network, patient(
        tag, generalPractitioner=[{"reference": f"Organization/{org}"}])))["id"]
    theirs = (await create(network, patient(tag)))["id"]
    for pid in (ours, theirs):
        await observation(network, pid, "8867-4")
    async with await client_for(export_app, await practice_service(export_app, org)) as c:
        manifest, out = await export(c, "/Patient/$export?_type=Patient,Observation")
        assert [p["id"] for p in out["Patient"]] == [ours]
        assert [o["subject"]["reference"] for o in out["Observation"]] == [f"Patient/{ours}"]
        assert by_id(out["Observation"]) == by_id(await searched(c, "/Observation"))
        # The network's own service sees both, and another client cannot read these files.
        r = await network.get(manifest["output"][0]["url"])
        outcome(r, 404, "no export job")
        r = await network.get(manifest["output"][0]["url"].replace("$export-file",
                                                                     "$export-poll")
                              .rsplit("/", 1)[0])
        outcome(r, 404, "no export job")


async def test_patients_who_opted_out_are_left_out_and_counted(
        network: httpx.AsyncClient, tag: str) -> None:
    stays = (await create(network, patient(tag)))["id"]
    leaves = (await create(network, patient(tag)))["id"]
    for pid in (stays, leaves):
        await observation(network, pid, "8867-4")
    await create(network, {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "research"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{leaves}"},
        "provision": {"type": "deny", "purpose": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": "HRESCH"}]}})
    group = await create(network, {"resourceType": "Group", "type": "person", "actual": True,
                                   "member": [{"entity": {"reference": f"Patient/{stays}"}},
                                              {"entity": {"reference": f"Patient/{leaves}"}}]})
    manifest, out = await export(network, f"/Group/{group['id']}/$export")
    assert manifest["extension"][OPTED_OUT] == 1
    assert [p["id"] for p in out["Patient"]] == [stays]
    assert [o["subject"]["reference"] for o in out["Observation"]] == [f"Patient/{stays}"]
    assert "Consent" not in out  # the opt-out is the patient's record too
    # A search for direct care still finds them.
    assert [p["id"] for p in await searched(network, f"/Patient?_id={leaves}")] == [leaves]


async def test_only_backend_services_with_system_scopes_export(
        export_app: Any, network: httpx.AsyncClient, tag: str) -> None:
    pid = (await create(network, patient(tag)))["id"]
    token = await mint(export_app, sub=f"Patient/{pid}", scope="patient/*.rs",
                       fhir_user=f"Patient/{pid}", patient=pid)
    async with await client_for(export_app, token) as c:
        outcome(await c.get("/$export", headers=PREFER), 403, "system/")
        outcome(await c.get("/Patient/$export", headers=PREFER), 403, "system/")


async def test_bad_requests_are_refused(network: httpx.AsyncClient) -> None:
    outcome(await network.get("/$export?_type=Nonsense", headers=PREFER), 400, "Nonsense")
    outcome(await network.get("/$export?_since=yesterday", headers=PREFER), 400, "_since")
    outcome(await network.get("/$export?_typeFilter=Observation%3Fnope%3D1", headers=PREFER),
            400, "nope")
    outcome(await network.get("/$export?_typeFilter=Observation%3Fcode%3Dx&_type=Patient",
                              headers=PREFER), 400, "_typeFilter")
    outcome(await network.get("/$export?_outputFormat=text/csv", headers=PREFER), 400,
            "_outputFormat")
    outcome(await network.get("/$export"), 400, "respond-async")
    outcome(await network.get("/Group/no-such-group/$export", headers=PREFER), 404)
    outcome(await network.get("/$export-poll/no-such-job"), 404, "no export job")


async def test_cancel_deletes_the_job_and_its_files(export_app: Any,
                                                    network: httpx.AsyncClient) -> None:
    status_url = await kick_off(network, "/$export?_type=Patient")
    job_id = status_url.rsplit("/", 1)[1]
    r = await network.delete(status_url)
    assert r.status_code == 202, r.text
    outcome(await network.get(status_url), 404, "no export job")
    assert not (Path(export_app.state.exports.directory) / job_id).exists()


async def test_the_capability_statement_names_the_operations(network: httpx.AsyncClient) -> None:
    statement = (await network.get("/metadata")).json()
    rest = statement["rest"][0]
    assert {"name": "export", "definition":
            "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"} in rest["operation"]
    for type_ in ("Patient", "Group"):
        entry = next(r for r in rest["resource"] if r["type"] == type_)
        assert "export" in [op["name"] for op in entry["operation"]]


async def test_a_job_a_restart_interrupted_says_so(export_app: Any,
                                                   network: httpx.AsyncClient) -> None:
    """A job no worker runs any more (its last report over a minute old) answers as failed,
    with what to do; a running one's status stays 202."""
    from fhir.operations import export_jobs
    from tests.tokens import TEST_CLIENT

    async with export_app.state.db.write() as conn:
        job_id = await export_jobs.create(conn, client=TEST_CLIENT, request="http://test/x")
        await export_jobs.update(conn, job_id, status="in-progress")
        await conn.execute(export_jobs.job.update().where(export_jobs.job.c.id == job_id)
                           .values(heartbeat=0.0, created=0.0))
    outcome(await network.get(f"/$export-poll/{job_id}"), 500, "kick it off again")
    async with export_app.state.db.write() as conn:
        await export_jobs.update(conn, job_id, status="in-progress")  # reported just now
    r = await network.get(f"/$export-poll/{job_id}")
    assert r.status_code == 202 and r.headers["x-progress"] == "in-progress"


async def test_a_scope_narrowed_by_search_exports_only_what_it_finds(
        export_app: Any, network: httpx.AsyncClient, tag: str) -> None:
    pid = (await create(network, patient(tag)))["id"]
    for category in ("vital-signs", "laboratory"):
        await create(network, {
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                "observation-category", "code": category}]}],
            "code": {"text": category}, "subject": {"reference": f"Patient/{pid}"}})
    group = await create(network, {"resourceType": "Group", "type": "person", "actual": True,
                                   "member": [{"entity": {"reference": f"Patient/{pid}"}}]})
    token = await mint(export_app, scope="system/Patient.rs system/Group.rs "
                                         "system/Observation.rs?category=vital-signs")
    async with await client_for(export_app, token) as c:
        _, out = await export(c, f"/Group/{group['id']}/$export")
        assert sorted(out) == ["Group", "Observation", "Patient"]
        assert [o["code"]["text"] for o in out["Observation"]] == ["vital-signs"]
        outcome(await c.get("/$export?_type=Condition", headers=PREFER), 403, "Condition")
