"""Errors on a real server (uvicorn on 127.0.0.1, as `python -m api serve` runs it): a 500
keeps the client's keep-alive connection usable, a request uvicorn cannot parse (an unknown
method) is answered with an OperationOutcome, and a client that leaves mid-body is not logged
as a server error (issue 18, items 6 and 7)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import Request
from fastapi.routing import APIRoute

from api.app import create_app
from api.errors import FhirHttpToolsProtocol
from api.settings import Settings
from tests.tokens import bearer, mint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _boom(request: Request) -> Any:
    raise RuntimeError("a bug the client did not cause")


async def _port(request: Request) -> dict[str, int]:
    assert request.client is not None
    return {"port": request.client.port}  # the client's end of the connection


@pytest.fixture
async def served(tmp_path: Any) -> AsyncIterator[tuple[str, Any]]:
    """The app on uvicorn at 127.0.0.1:<free port> with two test-only routes: one that
    fails unexpectedly, one that tells the connection's client port."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/s.db"))
    app.router.routes[0:0] = [APIRoute("/fhir/_test_boom", _boom),
                              APIRoute("/fhir/_test_port", _port)]
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           http=FhirHttpToolsProtocol, log_level="warning",
                                           lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_a_500_keeps_the_connection(served: tuple[str, Any],
                                          caplog: pytest.LogCaptureFixture) -> None:
    root, _app = served
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=root, limits=limits, trust_env=False) as client:
        before = (await client.get("/fhir/_test_port")).json()["port"]
        with caplog.at_level(logging.ERROR):
            r = await client.get("/fhir/_test_boom")
        assert r.status_code == 500
        body = r.json()
        assert body["resourceType"] == "OperationOutcome"
        assert "reference" in body["issue"][0]["diagnostics"]
        assert "Traceback" not in r.text
        after = await client.get("/fhir/_test_port")
        assert after.status_code == 200
        assert after.json()["port"] == before  # the same keep-alive connection
        assert (await client.get("/fhir/metadata")).status_code == 200
    # The server logged the failure once, with its reference, and no connection trouble.
    messages = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert any("unhandled error" in m for m in messages)
    assert not any("Exception in ASGI application" in m for m in messages), messages


async def _raw(root: str, data: bytes, *, read: bool = True) -> bytes:
    host, port = root.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    out = await asyncio.wait_for(reader.read(65536), 10) if read else b""
    writer.close()
    return out


async def test_unknown_method_gets_an_operation_outcome(served: tuple[str, Any]) -> None:
    root, _app = served
    answer = await _raw(root, b"FOO /fhir/Patient HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    assert b"content-type: application/fhir+json" in head.lower()
    outcome = httpx.Response(400, content=body).json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "method" in outcome["issue"][0]["diagnostics"]
    # A method uvicorn parses but no route takes: 405 with Allow, also an OperationOutcome.
    async with httpx.AsyncClient(base_url=root, trust_env=False) as client:
        r = await client.request("PROPFIND", "/fhir/Patient")
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"
    assert "GET" in r.headers["allow"]


async def test_client_leaving_mid_body_is_not_a_server_error(
        served: tuple[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    root, app = served
    token = await mint(app)
    auth = bearer(token)["Authorization"]
    head = (f"POST /fhir/Patient HTTP/1.1\r\nHost: test\r\nAuthorization: {auth}\r\n"
            "Content-Type: application/fhir+json\r\nContent-Length: 100000\r\n\r\n").encode()
    with caplog.at_level(logging.WARNING):
        await _raw(root, head + b'{"resourceType": "Patient", "name": [', read=False)
        await asyncio.sleep(1.0)  # the server notices the disconnect and ends the request
        async with httpx.AsyncClient(base_url=root, trust_env=False,
                                     headers=bearer(token)) as client:
            r = await client.get("/fhir/Patient", params={"_count": "1"})
            assert r.status_code == 200, r.text
            assert r.json().get("total", 0) == 0  # nothing was stored
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert errors == []
