"""System interactions: the CapabilityStatement and batch/transaction Bundles at the base."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from api.access import Access, AccessDep
from api.deps import DbDep, SettingsDep
from api.http import base_url, fhir_response, prefer, read_json
from api.oauth import context as oauth_context
from fhir import jsontext, transaction
from fhir.capability import capability_statement, smart_security
from fhir.db import Database
from fhir.errors import BadRequest

router = APIRouter()
VERSION = "0.1.0"


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    cached = getattr(request.app.state, "capability", None)
    if cached is None:
        endpoints = {name: oauth_context.endpoint(request, name)
                     for name in ("authorize", "token", "register", "introspect", "revoke")}
        cached = orjson.dumps(capability_statement(
            base=base_url(request), software_version=VERSION,
            security=smart_security(endpoints)))
        request.app.state.capability = cached
    return fhir_response(cached)


@router.post("")
@router.post("/")
async def bundle(request: Request, db: DbDep, settings: SettingsDep,
                 access: AccessDep) -> Response:
    body = await read_json(request, settings.max_body_bytes)
    kind = body.get("type") if isinstance(body, dict) else None
    base = base_url(request)
    minimal = prefer(request, "return") == "minimal"  # entries without their resources
    if kind == "transaction":
        async with db.write() as conn, access.guarding(conn, write=True, search=True):
            result = await transaction.transaction(conn, body, base, minimal)
    elif kind == "batch":
        result = await _batch(db, access, body, base, minimal)
    else:
        raise BadRequest("POST to the base takes a Bundle of type 'batch' or 'transaction', "
                         f"not {kind!r}.", expression="Bundle.type")
    return fhir_response(jsontext.dumps(result))


async def _batch(db: Database, access: Access, body: Any, base: str,
                 minimal: bool) -> dict[str, Any]:
    """Each entry alone and guarded, its failure undoing only itself.

    On PostgreSQL the entries run in savepoints of one transaction, committed once before the
    answer (a group commit: one WAL flush for the Bundle, not one per entry); on SQLite, whose
    commits are cheap and whose savepoints pysqlite handles badly, each in its own transaction.
    Each entry's audit names what that entry touched, not every entry before it (which made a
    batch's audit, and its time, grow with the square of its size).
    """
    if db.is_sqlite:
        @asynccontextmanager
        async def alone() -> AsyncIterator[AsyncConnection]:
            access.patients.clear()
            access.written.clear()
            async with db.write() as conn, access.guarding(conn, write=True, search=True):
                yield conn

        return await transaction.batch(alone, body, base, minimal)
    async with db.write() as outer:
        @asynccontextmanager
        async def nested() -> AsyncIterator[AsyncConnection]:
            access.patients.clear()
            access.written.clear()
            async with outer.begin_nested(), access.guarding(outer, write=True, search=True):
                yield outer

        return await transaction.batch(nested, body, base, minimal)
