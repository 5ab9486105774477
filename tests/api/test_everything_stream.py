"""Patient/$everything streams: memory stays flat however large the page.

A patient with 3,000 Observations of ~10 kB each is fetched with _count=1000, so each page's
Bundle is over 10 MB. The app is driven through raw ASGI, writing each body chunk straight to a
file (httpx's ASGITransport would gather the whole body in memory itself), and tracemalloc's
peak during each request must stay under a quarter of that page's size: building the Bundle
(or just the list of its rows) in memory would take at least the page's size, and fail.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.support import create

OBSERVATIONS = 3000
PAGE = 1000
NOTE = "x" * 10000


@pytest.fixture(scope="module")
async def big_record(client: httpx.AsyncClient) -> str:
    patient = await create(client, {"resourceType": "Patient", "name": [{"family": "Big"}]})
    subject = {"reference": f"Patient/{patient['id']}"}
    for start in range(0, OBSERVATIONS, 500):
        entries = [{
            "resource": {"resourceType": "Observation", "status": "final",
                         "code": {"text": f"reading {i}"}, "subject": subject,
                         "effectiveDateTime": "2024-01-01", "note": [{"text": NOTE}]},
            "request": {"method": "POST", "url": "Observation"},
        } for i in range(start, min(start + 500, OBSERVATIONS))]
        r = await client.post("", json={"resourceType": "Bundle", "type": "transaction",
                                        "entry": entries})
        assert r.status_code == 200, r.text[:500]
    return patient["id"]


async def asgi_get(app: Any, path: str, query: str, sink: Path,
                   token: str) -> tuple[int, int]:
    """GET through the ASGI app, body chunks written to `sink`; (status, body bytes)."""
    done = asyncio.Event()
    status = 0
    size = 0

    async def receive() -> dict[str, Any]:
        if not done.is_set() and not getattr(receive, "sent", False):
            receive.sent = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    with sink.open("wb") as out:
        async def send(message: dict[str, Any]) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                out.write(message.get("body", b""))
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
                 "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
                 "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
                 "headers": [(b"host", b"test"), (b"accept", b"application/fhir+json"),
                             (b"authorization", f"Bearer {token}".encode())],
                 "server": ("test", 80), "client": ("127.0.0.1", 50000)}
        await app(scope, receive, send)
    return status, size


async def test_everything_streams_in_flat_memory(app: Any, big_record: str,
                                                 system_token: str) -> None:
    path = f"/fhir/Patient/{big_record}/$everything"
    query = f"_count={PAGE}"
    seen: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        sink = Path(tmp) / "page.json"
        # warm caches (compiled SQL, pools) first
        await asgi_get(app, path, query, sink, system_token)
        pages = 0
        peaks: list[int] = []
        while query is not None:
            tracemalloc.start()
            try:
                status, size = await asgi_get(app, path, query, sink, system_token)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert status == 200, sink.read_text()[:500]
            bundle = json.loads(sink.read_bytes())
            entries = bundle.get("entry", [])
            seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries]
            if len(entries) >= PAGE // 2:  # a full page: big enough to tell
                assert size > 10_000_000, size
                assert peak < size / 4, f"peak {peak} bytes for a {size}-byte page"
                peaks.append(peak)
            pages += 1
            nxt = [x["url"] for x in bundle["link"] if x["relation"] == "next"]
            query = urlsplit(nxt[0]).query if nxt else None
            assert pages <= 5
    assert len(seen) == len(set(seen)) == OBSERVATIONS + 1
    assert f"Patient/{big_record}" in seen
    assert pages == 4  # 1000 + 1000 + 1000 + 1
    assert len(peaks) == 3
