"""Risk stratification of one patient: `POST Patient/[id]/$stratify[?as-of=YYYY-MM-DD]`.

Scores the patient's record now (careplans/risk), stores what changed as the patient's
current RiskAssessments (a new version only when the result differs) through the caller's
guard, and answers a `collection` Bundle of the patient's current assessments. Who may run
it: staff whose role writes RiskAssessment (consent/data/role-access.csv) and who have a
relationship with the patient, and the network's services; a patient or carer gets 403, and
a patient the caller may not see answers 404 as one that does not exist.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.access import AccessDep
from api.deps import DbDep
from api.http import base_url, fhir_response
from careplans.risk import flows
from careplans.risk.assessment import METHODS, assessment_id
from consent.principals import Kind
from fhir import capability, interactions, store
from fhir.errors import BadRequest, Forbidden

router = APIRouter()
capability.add_operation("Patient", "stratify",
                         "https://carenet.invalid/fhir/OperationDefinition/stratify")


def _as_of(request: Request) -> date:
    text = request.query_params.get("as-of")
    if text is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"as-of '{text}' is not a date; give it as YYYY-MM-DD.",
                         expression="as-of") from None


@router.post("/Patient/{id_}/$stratify")
async def stratify_patient(id_: str, request: Request, db: DbDep,
                           access: AccessDep) -> Response:
    """Patient/[id]/$stratify: the patient's frailty index and admission-risk score, now."""
    as_of = _as_of(request)
    if access.principal.kind in (Kind.PATIENT, Kind.CARER):
        raise Forbidden("$stratify is run by the care team or the network's services; your "
                        "own assessments are readable at RiskAssessment?patient=<your id>.")
    access.scope_context("RiskAssessment", "create")  # 403 before any lookup
    access.scope_context("RiskAssessment", "update")
    async with db.write() as conn, access.guarding(conn, write=True):
        await interactions.read(conn, "Patient", id_)  # 404 unknown or unseen, 410 deleted
        found = await flows.score(conn, [id_], as_of)
        await flows.write_outcomes(conn, found, as_of, bulk=False)
        current = [await store.read_current(conn, "RiskAssessment", assessment_id(m, id_))
                   for m in METHODS]
    base = base_url(request)
    entries = [{"fullUrl": f"{base}/RiskAssessment/{s.id}", "resource": orjson.loads(s.content)}
               for s in current if s is not None and s.content is not None]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return fhir_response(orjson.dumps(bundle))
