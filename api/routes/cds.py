"""CDS Hooks 2.0 (https://cds-hooks.hl7.org/2.0/): cards in the clinician's own EHR.

- `GET /cds-services`: discovery (public, as the spec has it);
- `POST /cds-services/carenet-proactive-care`: the `patient-view` hook. The request must carry
  `fhirAuthorization` with an access token of this server for the user viewing the patient
  (the EHR got it by SMART on FHIR): it is verified exactly as a FHIR request's bearer token
  (api/access.py: signature, audience, expiry, revocation, the principal), `context.userId`
  must be that user, and the cards come only from what that user may read through the FHIR
  API. A patient the user has no relationship with gets an empty list of cards (nothing says
  whether the patient exists or what their record holds). No token: 401; a token for
  someone else than `context.userId`: 403. `fhirServer`, when given, must be this server.
  Each call is audited as an operation on the patient.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.requests import Request as StarletteRequest

from api.access import Unauthenticated, authenticate
from api.audit import request_id
from api.deps import SettingsDep
from api.http import FHIR_PREFIX, base_url, read_json
from careplans.cds.cards import SERVICE_ID, cards, service
from careplans.worklist import facts as record
from consent import audit
from consent.policy import ResourceMeta
from fhir import interactions
from fhir.errors import BadRequest, Forbidden, NotFound
from fhir.schema import resource

router = APIRouter()
APP_PATH = "/apps/care-plan/launch"  # the SMART app of the care plans (pages, DESIGN.md)


@router.get("/cds-services")
async def discovery() -> Response:
    return Response(orjson.dumps({"services": [service()]}), media_type="application/json")


def _with_token(request: Request, token: str) -> StarletteRequest:
    """`request` as if it carried `token` as its bearer token, for the FHIR API's check."""
    keep = (b"host", b"x-request-id")  # not break-glass headers: a hook cannot ask for that
    headers = [(k, v) for k, v in request.scope["headers"] if k in keep]
    headers.append((b"authorization", f"Bearer {token}".encode("latin-1")))
    return StarletteRequest({**request.scope, "headers": headers,
                             "path": FHIR_PREFIX + "/Patient", "state": {}})


@router.post("/cds-services/{service_id}")
async def patient_view(service_id: str, request: Request, settings: SettingsDep) -> Response:
    if service_id != SERVICE_ID:
        raise NotFound(f"No CDS service '{service_id}' here; GET /cds-services lists them.")
    body = await read_json(request, settings.max_body_bytes)
    if not isinstance(body, dict) or body.get("hook") != "patient-view":
        raise BadRequest("This service answers the patient-view hook only.")
    context = body.get("context") if isinstance(body.get("context"), dict) else {}
    patient_id = str(context.get("patientId") or "").removeprefix("Patient/")
    user = str(context.get("userId") or "")
    if not patient_id or not user:
        raise BadRequest("context.patientId and context.userId are required (patient-view).")
    fhir_base = base_url(request)
    server = body.get("fhirServer")
    if server is not None and str(server).rstrip("/") != fhir_base:
        raise BadRequest(f"This service reads only its own FHIR server, {fhir_base}.")
    auth = body.get("fhirAuthorization")
    token = auth.get("access_token") if isinstance(auth, dict) else None
    if not isinstance(token, str) or not token:
        raise Unauthenticated("Send fhirAuthorization with an access token of this server "
                              "for the user: cards honour what the user may see.",
                              error="invalid_request")
    access = await authenticate(_with_token(request, token))
    if user not in access.principal.references:
        raise Forbidden(f"The access token is not {user}'s.")
    db = request.app.state.db
    on = datetime.now(UTC).date()
    found: list[dict[str, Any]] = []
    seen = False
    async with db.read() as conn, access.guarding(conn, search=True) as guard:
        try:
            await interactions.read(conn, "Patient", patient_id)
            seen = True
        except (NotFound, Forbidden):
            pass
        if seen:
            facts = (await record.load(conn, on, [patient_id])).get(patient_id)
            if facts is not None:
                ids = await _visible(conn, guard, patient_id)
                facts.risks = [r for r in facts.risks if r.ref in ids]
                facts.plans = [p for p in facts.plans if f"CarePlan/{p[0]}" in ids]
                readable = bool(await access.decide(
                    conn, "search", "CarePlan",
                    ResourceMeta.of({"resourceType": "CarePlan"}, patient_id)))
                root = fhir_base.removesuffix(FHIR_PREFIX)
                found = cards(patient_id, facts, on, root + APP_PATH, readable)
    request.app.state.audit.submit([audit.AuditRecord(
        principal=access.principal, interaction="operation", resource_type="Patient",
        resource_id=patient_id if seen else None, patient_ids=(patient_id,) if seen else (),
        query=f"cds-hooks patient-view {service_id}", client_id=access.caller.client_id,
        request_id=request_id(request.scope))])
    return Response(orjson.dumps({"cards": found}), media_type="application/json")


async def _visible(conn: Any, guard: Any, patient_id: str) -> set[str]:
    """The RiskAssessments and CarePlans of the patient the caller may read."""
    found: set[str] = set()
    for type_ in ("RiskAssessment", "CarePlan"):
        rows = await conn.execute(sa.select(resource.c.id).where(
            resource.c.type == type_, resource.c.patient_id == patient_id,
            resource.c.deleted.is_(False), guard.visible(resource, type_)))
        found.update(f"{type_}/{i}" for i in rows.scalars())
    return found
