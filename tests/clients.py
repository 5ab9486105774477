"""HTTP clients of the app for tests, and the check that every request left an AuditEvent.

Each FHIR request an `audited_client` sends carries a fresh X-Request-Id; after each test
(tests/conftest.py), every one of them must be named by an AuditEvent (BALP
entity[transaction]) of the app it went to.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from fhir.schema import resource

SENT: list[tuple[Any, str]] = []
UNAUDITED = ("/fhir/metadata", "/fhir/.well-known/smart-configuration")


def audited_client(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client of `app` whose FHIR requests the audit check follows."""

    async def tag(request: httpx.Request) -> None:
        path = request.url.path
        if path.startswith("/fhir") and path not in UNAUDITED:
            rid = uuid.uuid4().hex
            request.headers["X-Request-Id"] = rid
            SENT.append((app, rid))

    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, event_hooks={"request": [tag]}, **kwargs)


async def audited_ids(app: Any, since: float) -> set[str]:
    """The X-Request-Ids named by the AuditEvents `app` stored since `since` (epoch s)."""
    await asyncio.wait_for(app.state.audit.flush(), 60)  # a stuck audit log fails, not hangs
    async with app.state.db.read() as conn:
        rows = (await conn.execute(sa.select(resource.c.content).where(
            resource.c.type == "AuditEvent", resource.c.last_updated >= since))).scalars()
        found = set()
        for content in rows:
            for entity in orjson.loads(content).get("entity", ()):
                if entity.get("type", {}).get("code") == "XrequestId":
                    found.add(entity["what"]["identifier"]["value"])
    return found


