"""Concurrency safety against a real server: `python -m api serve --workers 2` on PostgreSQL,
driven by many concurrent HTTP connections released together.

Each race opens its connections first (one AsyncClient per request), then lets every request
go at once, so the requests meet in the server and the database rather than queueing in the
client. Two worker processes mean the races are settled by PostgreSQL, not by one event loop.
Every wait is bounded; the server is terminated in a finalizer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.tokens import bearer, mint_for_server

ROOT = Path(__file__).resolve().parent.parent.parent
SYSTEM = "urn:test"
STARTUP_SECONDS = 60
RACE_SECONDS = 120

Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


# --- the server -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _create_database(admin: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(admin: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (uvicorn and its workers), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def server(pg_url: str, request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> str:
    """The FHIR base URL of a 2-worker server on a fresh PostgreSQL database of its own."""
    parsed = make_url(pg_url)
    name = f"carenet_concurrency_{uuid.uuid4().hex[:8]}"
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(False)
    asyncio.run(_create_database(admin, name))
    request.addfinalizer(lambda: asyncio.run(_drop_database(admin, name)))

    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    env = dict(os.environ,
               CARENET_DATABASE_URL=parsed.set(database=name).render_as_string(False),
               # 2 workers x (5 + 10 overflow) connections: well inside max_connections=100.
               CARENET_DB_POOL_SIZE="5", CARENET_LOG_LEVEL="warning")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    request.addfinalizer(lambda: _stop(proc))

    base = f"http://127.0.0.1:{port}/fhir"
    deadline = time.monotonic() + STARTUP_SECONDS
    with httpx.Client(base_url=base, timeout=2, trust_env=False) as probe:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if probe.get("/metadata").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer /metadata within {STARTUP_SECONDS}s:\n"
                            f"{log_path.read_text()}")
            time.sleep(0.2)
    token = asyncio.run(mint_for_server(env["CARENET_DATABASE_URL"], base))
    return Server(base, bearer(token))


class Server(str):
    """The server's FHIR base, and the headers that sign a client in to it."""

    headers: dict[str, str]

    def __new__(cls, base: str, headers: dict[str, str]) -> Server:
        made = super().__new__(cls, base)
        made.headers = headers
        return made


# --- racing ---------------------------------------------------------------------------------


async def race(base: str, n: int, send: Request) -> list[httpx.Response]:
    """Send `n` requests over `n` separate connections, all released at the same moment."""
    headers = getattr(base, "headers", None)
    clients = [httpx.AsyncClient(base_url=base, timeout=60, trust_env=False, headers=headers)
               for _ in range(n)]
    try:
        # Connect first (one keep-alive connection each), so only the race itself is timed.
        warm = await asyncio.wait_for(
            asyncio.gather(*(c.get("/metadata") for c in clients)), RACE_SECONDS)
        assert all(r.status_code == 200 for r in warm)
        go = asyncio.Event()

        async def one(i: int, c: httpx.AsyncClient) -> httpx.Response:
            await go.wait()
            return await send(c, i)

        tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(clients)]
        await asyncio.sleep(0.05)  # every task is waiting on the event
        go.set()
        return await asyncio.wait_for(asyncio.gather(*tasks), RACE_SECONDS)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


@pytest.fixture
async def http(server: str) -> Any:
    async with httpx.AsyncClient(base_url=server, timeout=60, trust_env=False,
                                 headers=server.headers) as c:
        yield c


def patient(value: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": value}],
            "name": [{"family": f"Race{value}"}], **extra}


async def search_ids(http: httpx.AsyncClient, type_: str, **params: str) -> list[str]:
    r = await http.get(f"/{type_}", params={**params, "_count": "1000"})
    assert r.status_code == 200, r.text
    return [e["resource"]["id"] for e in r.json().get("entry") or []]


async def history(http: httpx.AsyncClient, type_: str, id_: str) -> list[dict[str, Any]]:
    r = await http.get(f"/{type_}/{id_}/_history", params={"_count": "1000"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert not [link for link in body["link"] if link["relation"] == "next"]
    return body["entry"]


def versions_of(entries: list[dict[str, Any]]) -> list[int]:
    return sorted(int(e["response"]["etag"].strip('W/"')) for e in entries)


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


# --- the races ------------------------------------------------------------------------------


async def test_concurrent_conditional_creates_make_one_resource(
        server: str, http: httpx.AsyncClient, tag: str) -> None:
    cond = f"identifier={SYSTEM}|{tag}"

    async def send(c: httpx.AsyncClient, i: int) -> httpx.Response:
        return await c.post("/Patient", json=patient(tag, gender="unknown"),
                            headers={"If-None-Exist": cond})

    responses = await race(server, 50, send)
    assert statuses(responses) == {201: 1, 200: 49}, [r.text for r in responses
                                                      if r.status_code not in (200, 201)]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    (id_,) = ids
    assert all(r.headers["etag"] == 'W/"1"' for r in responses)
    assert await search_ids(http, "Patient", identifier=f"{SYSTEM}|{tag}") == [id_]
    assert versions_of(await history(http, "Patient", id_)) == [1]
    # The losers' rolled-back inserts left no version anywhere in the type's history.
    r = await http.get("/Patient/_history", params={"_count": "1000"})
    mentions = [e for e in r.json()["entry"] if tag in str(e.get("resource"))]
    assert [e["resource"]["id"] for e in mentions] == [id_]


async def test_concurrent_puts_with_the_same_if_match_one_wins(
        server: str, http: httpx.AsyncClient, tag: str) -> None:
    r = await http.post("/Patient", json=patient(tag))
    assert r.status_code == 201, r.text
    id_ = r.json()["id"]

    async def send(c: httpx.AsyncClient, i: int) -> httpx.Response:
        body = patient(tag, id=id_, name=[{"family": f"Race{tag}", "given": [f"w{i}"]}])
        return await c.put(f"/Patient/{id_}", json=body, headers={"If-Match": 'W/"1"'})

    responses = await race(server, 100, send)
    assert statuses(responses) == {200: 1, 412: 99}, [r.text for r in responses
                                                      if r.status_code not in (200, 412)]
    (winner,) = [i for i, r in enumerate(responses) if r.status_code == 200]
    assert responses[winner].headers["etag"] == 'W/"2"'
    for r in responses:
        if r.status_code == 412:
            assert r.json()["resourceType"] == "OperationOutcome"
    current = await http.get(f"/Patient/{id_}")
    assert current.headers["etag"] == 'W/"2"'
    assert current.json()["meta"]["versionId"] == "2"
    assert current.json()["name"][0]["given"] == [f"w{winner}"]
    entries = await history(http, "Patient", id_)
    assert versions_of(entries) == [1, 2]
    v2 = [e for e in entries if e["response"]["etag"] == 'W/"2"'][0]
    assert v2["resource"]["name"][0]["given"] == [f"w{winner}"]


async def test_concurrent_puts_without_if_match_all_land(
        server: str, http: httpx.AsyncClient, tag: str) -> None:
    r = await http.post("/Patient", json=patient(tag))
    assert r.status_code == 201, r.text
    id_ = r.json()["id"]

    async def send(c: httpx.AsyncClient, i: int) -> httpx.Response:
        body = patient(tag, id=id_, name=[{"family": f"Race{tag}", "given": [f"w{i}"]}])
        return await c.put(f"/Patient/{id_}", json=body)

    responses = await race(server, 100, send)
    assert statuses(responses) == {200: 100}, [r.text for r in responses if r.status_code != 200]
    # Each writer got its own version: 2..101, none shared, none skipped.
    assert sorted(int(r.headers["etag"].strip('W/"')) for r in responses) == list(range(2, 102))
    current = await http.get(f"/Patient/{id_}")
    assert current.headers["etag"] == 'W/"101"'
    entries = await history(http, "Patient", id_)
    assert versions_of(entries) == list(range(1, 102))
    # No write was lost: every writer's body is one version, the one its response named.
    written = {int(e["response"]["etag"].strip('W/"')): e["resource"]["name"][0].get("given")
               for e in entries}
    for i, r in enumerate(responses):
        assert written[int(r.headers["etag"].strip('W/"'))] == [f"w{i}"]
    assert current.json()["name"][0]["given"] == written[101]


async def test_concurrent_creates_on_update_with_one_id(
        server: str, http: httpx.AsyncClient, tag: str) -> None:
    """PUT to an id that does not exist yet, 30 times at once: one creates, 29 update."""
    id_ = f"race-{tag}"

    async def send(c: httpx.AsyncClient, i: int) -> httpx.Response:
        body = patient(tag, id=id_, name=[{"family": f"Race{tag}", "given": [f"w{i}"]}])
        return await c.put(f"/Patient/{id_}", json=body)

    responses = await race(server, 30, send)
    assert statuses(responses) == {201: 1, 200: 29}, [r.text for r in responses
                                                      if r.status_code not in (200, 201)]
    assert sorted(int(r.headers["etag"].strip('W/"')) for r in responses) == list(range(1, 31))
    assert versions_of(await history(http, "Patient", id_)) == list(range(1, 31))


async def test_concurrent_conditional_creates_in_transactions_make_one_resource(
        server: str, http: httpx.AsyncClient, tag: str) -> None:
    cond = f"identifier={SYSTEM}|{tag}"

    async def send(c: httpx.AsyncClient, i: int) -> httpx.Response:
        ref = f"urn:uuid:{uuid.uuid4()}"
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": ref, "resource": patient(tag),
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": cond}},
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
             "resource": {"resourceType": "Observation", "status": "final",
                          "identifier": [{"system": SYSTEM, "value": f"{tag}-{i}"}],
                          "code": {"text": "weight"}, "subject": {"reference": ref}},
             "request": {"method": "POST", "url": "Observation"}},
        ]}
        return await c.post("", json=bundle)

    responses = await race(server, 20, send)
    assert statuses(responses) == {200: 20}, [r.text for r in responses if r.status_code != 200]
    first = [r.json()["entry"][0] for r in responses]
    assert Counter(e["response"]["status"].split()[0] for e in first) == {"201": 1, "200": 19}
    ids = {e["resource"]["id"] for e in first}
    assert len(ids) == 1
    (id_,) = ids
    assert await search_ids(http, "Patient", identifier=f"{SYSTEM}|{tag}") == [id_]
    assert versions_of(await history(http, "Patient", id_)) == [1]
    # Every transaction's Observation refers to the one Patient that exists.
    for i, r in enumerate(responses):
        obs = r.json()["entry"][1]["resource"]
        assert obs["subject"]["reference"] == f"Patient/{id_}", (i, obs)
    found = await search_ids(http, "Observation", subject=f"Patient/{id_}")
    assert len(found) == 20


async def test_concurrent_conditional_creates_after_the_key_went_stale(
        server: str, http: httpx.AsyncClient, tag: str) -> None:
    """The first match moves away from the criteria; 20 racing creates then make one new one."""
    cond = f"identifier={SYSTEM}|{tag}"
    first = await http.post("/Patient", json=patient(tag), headers={"If-None-Exist": cond})
    assert first.status_code == 201, first.text
    old = first.json()["id"]
    moved = await http.put(f"/Patient/{old}", json=patient(f"{tag}-moved", id=old))
    assert moved.status_code == 200, moved.text

    async def send(c: httpx.AsyncClient, i: int) -> httpx.Response:
        return await c.post("/Patient", json=patient(tag), headers={"If-None-Exist": cond})

    responses = await race(server, 20, send)
    assert statuses(responses) == {201: 1, 200: 19}, [r.text for r in responses
                                                      if r.status_code not in (200, 201)]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1 and old not in ids
    assert await search_ids(http, "Patient", identifier=f"{SYSTEM}|{tag}") == list(ids)


async def test_concurrent_conditional_updates_make_one_resource(
        server: str, http: httpx.AsyncClient, tag: str) -> None:
    """50 PUT Patient?identifier=... with nothing matching yet: one creates (201), the others
    update what it made (200), each its own version; never a duplicate, never a 412."""

    async def send(c: httpx.AsyncClient, i: int) -> httpx.Response:
        body = patient(tag, name=[{"family": f"Race{tag}", "given": [f"w{i}"]}])
        return await c.put(f"/Patient?identifier={SYSTEM}|{tag}", json=body)

    responses = await race(server, 50, send)
    assert statuses(responses) == {201: 1, 200: 49}, [r.text for r in responses
                                                      if r.status_code not in (200, 201)]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    (id_,) = ids
    assert await search_ids(http, "Patient", identifier=f"{SYSTEM}|{tag}") == [id_]
    assert sorted(int(r.headers["etag"].strip('W/"')) for r in responses) == list(range(1, 51))
    assert versions_of(await history(http, "Patient", id_)) == list(range(1, 51))


async def test_concurrent_conditional_updates_in_transactions_make_one_resource(
        server: str, http: httpx.AsyncClient, tag: str) -> None:
    """The same race inside transaction Bundles whose other entry refers to the fullUrl."""

    async def send(c: httpx.AsyncClient, i: int) -> httpx.Response:
        ref = f"urn:uuid:{uuid.uuid4()}"
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": ref, "resource": patient(tag),
             "request": {"method": "PUT", "url": f"Patient?identifier={SYSTEM}|{tag}"}},
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}",
             "resource": {"resourceType": "Observation", "status": "final",
                          "identifier": [{"system": SYSTEM, "value": f"{tag}-{i}"}],
                          "code": {"text": "weight"}, "subject": {"reference": ref}},
             "request": {"method": "POST", "url": "Observation"}},
        ]}
        return await c.post("", json=bundle)

    responses = await race(server, 20, send)
    assert statuses(responses) == {200: 20}, [r.text for r in responses if r.status_code != 200]
    first = [r.json()["entry"][0] for r in responses]
    assert Counter(e["response"]["status"].split()[0] for e in first) == {"201": 1, "200": 19}
    ids = {e["resource"]["id"] for e in first}
    assert len(ids) == 1
    (id_,) = ids
    assert await search_ids(http, "Patient", identifier=f"{SYSTEM}|{tag}") == [id_]
    assert versions_of(await history(http, "Patient", id_)) == list(range(1, 21))
    for r in responses:
        assert r.json()["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{id_}"
    assert len(await search_ids(http, "Observation", subject=f"Patient/{id_}")) == 20


async def test_conditional_updates_race_conditional_creates(
        server: str, http: httpx.AsyncClient, tag: str) -> None:
    """Conditional creates and updates with the same criteria share one lock: one resource."""
    cond = f"identifier={SYSTEM}|{tag}"

    async def send(c: httpx.AsyncClient, i: int) -> httpx.Response:
        if i % 2:
            return await c.post("/Patient", json=patient(tag), headers={"If-None-Exist": cond})
        return await c.put(f"/Patient?{cond}", json=patient(tag))

    responses = await race(server, 30, send)
    assert set(statuses(responses)) <= {200, 201}, [r.text for r in responses
                                                    if r.status_code not in (200, 201)]
    assert statuses(responses)[201] == 1
    assert len(await search_ids(http, "Patient", identifier=f"{SYSTEM}|{tag}")) == 1


async def test_concurrent_conditional_patches_apply_one_by_one(
        server: str, http: httpx.AsyncClient, tag: str) -> None:
    """30 PATCH Patient?identifier=... each appending a given name: all land, none lost."""
    r = await http.post("/Patient", json=patient(tag, name=[{"family": "P", "given": ["v"]}]))
    assert r.status_code == 201, r.text
    id_ = r.json()["id"]

    async def send(c: httpx.AsyncClient, i: int) -> httpx.Response:
        ops = [{"op": "add", "path": "/name/0/given/-", "value": f"w{i}"}]
        return await c.patch(f"/Patient?identifier={SYSTEM}|{tag}", content=orjson_dumps(ops),
                             headers={"Content-Type": "application/json-patch+json"})

    responses = await race(server, 30, send)
    assert statuses(responses) == {200: 30}, [r.text for r in responses if r.status_code != 200]
    current = (await http.get(f"/Patient/{id_}")).json()
    assert sorted(current["name"][0]["given"]) == sorted(["v", *(f"w{i}" for i in range(30))])
    assert current["meta"]["versionId"] == "31"


async def test_concurrent_conditional_deletes_delete_once(
        server: str, http: httpx.AsyncClient, tag: str) -> None:
    r = await http.post("/Patient", json=patient(tag))
    assert r.status_code == 201, r.text
    id_ = r.json()["id"]

    async def send(c: httpx.AsyncClient, i: int) -> httpx.Response:
        return await c.delete(f"/Patient?identifier={SYSTEM}|{tag}")

    responses = await race(server, 20, send)
    assert statuses(responses) == {200: 20}, [r.text for r in responses if r.status_code != 200]
    assert (await http.get(f"/Patient/{id_}")).status_code == 410
    assert versions_of(await history(http, "Patient", id_)) == [1, 2]


def orjson_dumps(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value)
