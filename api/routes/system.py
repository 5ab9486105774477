"""System interactions: the CapabilityStatement and batch/transaction Bundles at the base."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from api.access import AccessDep
from api.deps import DbDep, SettingsDep
from api.http import base_url, fhir_response, prefer, read_json
from api.oauth import context as oauth_context
from consent import access_log
from fhir import jsontext, transaction
from fhir.capability import capability_statement, smart_security
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


def _named_in_searches(bundle: Any) -> set[str]:
    """The patients the search entries of a Bundle name (consent/access_log.py), so the
    request's audit reaches their access logs."""
    found: set[str] = set()
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or request.get("method") not in ("GET", "HEAD"):
            continue
        url = request.get("url")
        if not isinstance(url, str):
            continue
        path, _, query = url.partition("?")
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "Patient":  # Patient/[id]/[type] or /$everything
            found.add(parts[1])
        if query:
            found |= access_log.named_patients(parts[-1] if len(parts) != 2 else parts[0],
                                               parse_qsl(query, keep_blank_values=True))
    return found


@router.post("")
@router.post("/")
async def bundle(request: Request, db: DbDep, settings: SettingsDep,
                 access: AccessDep) -> Response:
    body = await read_json(request, settings.max_body_bytes)
    kind = body.get("type") if isinstance(body, dict) else None
    base = base_url(request)
    minimal = prefer(request, "return") == "minimal"  # entries without their resources
    access.patients |= _named_in_searches(body)
    if kind == "transaction":
        async with db.write() as conn, access.guarding(conn, write=True, search=True):
            result = await transaction.transaction(conn, body, base, minimal)
    elif kind == "batch":
        @asynccontextmanager
        async def entry() -> AsyncIterator[AsyncConnection]:  # each entry alone, guarded
            async with db.write() as conn, access.guarding(conn, write=True, search=True):
                yield conn

        result = await transaction.batch(entry, body, base, minimal)
    else:
        raise BadRequest("POST to the base takes a Bundle of type 'batch' or 'transaction', "
                         f"not {kind!r}.", expression="Bundle.type")
    return fhir_response(jsontext.dumps(result))
