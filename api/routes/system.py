"""System interactions: the CapabilityStatement and batch/transaction Bundles at the base."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import RepositoryDep, SettingsDep
from api.http import base_url, fhir_response, prefer, read_json
from api.oauth import context as oauth_context
from fhir import jsontext
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


@router.post("")
@router.post("/")
async def bundle(request: Request, settings: SettingsDep, repo: RepositoryDep) -> Response:
    body = await read_json(request, settings.max_body_bytes)
    kind = body.get("type") if isinstance(body, dict) else None
    base = base_url(request)
    minimal = prefer(request, "return") == "minimal"  # entries without their resources
    if kind not in ("batch", "transaction"):
        raise BadRequest("POST to the base takes a Bundle of type 'batch' or 'transaction', "
                         f"not {kind!r}.", expression="Bundle.type")
    result = await repo.bundle(body, base, minimal)
    return fhir_response(jsontext.dumps(result))
