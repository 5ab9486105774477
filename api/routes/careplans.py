"""Anticipatory care plans over HTTP (careplans/plans/; README "Anticipatory care plans").

- `GET Patient/[id]/$draft-care-plan`: a draft plan pre-filled from the record, returned and
  not stored (a GET stores nothing, and an unreviewed draft in the record would be mistaken for
  a plan). Only what the caller may read goes into it; a patient the caller may not see is
  404, as everywhere.
- `POST CarePlan/[id]/$contribute`: a patient, or a carer with the proxy grant, adds what
  matters to them and comments to their plan; a new version naming them (Provenance), with
  the clinical content untouched.
- `install(app)`: these routes, and the CarePlan write rule (lifecycle, validation, narrative)
  on every write of a CarePlan, whatever the route (fhir/writerules.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from api.access import Access, AccessDep
from api.deps import DbDep, SettingsDep
from api.guard import RequestGuard, entered_by
from api.http import FHIR_PREFIX, check_accept, fhir_response, read_json, resource_response
from careplans.plans import contribute as contributions
from careplans.plans import draft, model, record
from careplans.plans.narrative import narrative
from careplans.plans.rules import RULE
from consent.principals import Kind
from fhir import capability, interactions, writerules
from fhir import guard as fhir_guard
from fhir.errors import Forbidden, Unprocessable
from fhir.store import Stored

router = APIRouter()
OPERATION = "https://carenet.invalid/fhir/OperationDefinition/"


def install(app: FastAPI) -> None:
    """The care plan routes (before the generic [type]/[id]/... ones) and write rule."""
    writerules.register("CarePlan", RULE)
    capability.add_operation("Patient", "draft-care-plan", OPERATION + "draft-care-plan")
    capability.add_operation("CarePlan", "contribute", OPERATION + "contribute")
    app.include_router(router, prefix=FHIR_PREFIX, dependencies=[Depends(check_accept)])


@router.get("/Patient/{id_}/$draft-care-plan")
async def draft_care_plan(id_: str, db: DbDep, access: AccessDep) -> Response:
    access.scope_context("Patient", "read")
    access.scope_context("CarePlan", "read")
    if access.break_glass_reason is not None and access.break_glass_patient is None:
        access.break_glass_patient = id_
    async with db.read() as conn, access.guarding(conn, search=True) as guard:
        stored = await interactions.read(conn, "Patient", id_)  # 404 unknown or unseen
        assert stored.content is not None
        found = await record.gather(conn, orjson.loads(stored.content), guard.visible)
    plan = draft.build(found, datetime.now(UTC).date())
    plan["text"] = narrative(plan)
    return fhir_response(orjson.dumps(plan))


class ContributionGuard:
    """The guard of one `$contribute`: reads as the caller's own guard; writes only the new
    Goals of this patient and the next version of this plan, on the caller's behalf (the
    policy lets patients write only what they entered, and a plan is the clinicians')."""

    def __init__(self, inner: RequestGuard, access: Access, plan: Stored) -> None:
        self.inner, self.access, self.plan = inner, access, plan

    @property
    def visible(self) -> Any:
        return self.inner.visible

    async def check_read(self, conn: Any, interaction: str, stored: Stored) -> None:
        await self.inner.check_read(conn, interaction, stored)

    async def check_target(self, conn: Any, interaction: str, resource_type: str, id_: str,
                           current: Stored | None) -> None:
        await self.inner.check_target(conn, interaction, resource_type, id_, current)

    def prepare(self, body: dict[str, Any]) -> None:
        if body.get("resourceType") == "Goal":  # the person's own words: theirs to change
            body["meta"] = {**(body.get("meta") or {}),
                            "source": entered_by(self.access.principal)}

    async def check_write(self, conn: Any, interaction: str, resource_type: str,
                          body: dict[str, Any] | None, patient_id: str | None,
                          current: Stored | None) -> None:
        plan = self.plan
        allowed = patient_id == plan.patient_id and (
            (resource_type == "Goal" and interaction == "create")
            or (resource_type == "CarePlan" and interaction == "update"
                and current is not None and current.id == plan.id))
        if not allowed:
            raise Forbidden(f"$contribute may not {interaction} this {resource_type}.")
        self.access.written.append((interaction, resource_type, (body or {}).get("id", "")))


@router.post("/CarePlan/{id_}/$contribute")
async def contribute(id_: str, request: Request, db: DbDep, settings: SettingsDep,
                     access: AccessDep) -> Response:
    addition = contributions.parse(await read_json(request, settings.max_body_bytes))
    access.scope_context("CarePlan", "update")
    principal = access.principal
    async with db.write() as conn, access.guarding(conn, write=True) as inner:
        stored = await interactions.read(conn, "CarePlan", id_)  # 404 unknown or unseen
        assert stored.content is not None
        if principal.kind not in (Kind.PATIENT, Kind.CARER):
            raise Forbidden("$contribute is how a patient or their carer adds to their plan; "
                            "staff revise the plan itself (PUT or PATCH CarePlan/[id]).")
        plan = orjson.loads(stored.content)
        if not model.is_anticipatory(plan):
            raise Unprocessable("$contribute adds to anticipatory care plans only.")
        now = datetime.now(UTC)
        with fhir_guard.guarding(ContributionGuard(inner, access, stored)):
            goal_ids = []
            for text in addition.what_matters:
                made = await interactions.create(conn, "Goal", contributions.goal(
                    str(stored.patient_id), principal.user, text, now.date().isoformat()))
                assert made.stored is not None
                goal_ids.append(made.stored.id)
            new = contributions.apply(plan, addition, author=principal.user,
                                      goal_ids=goal_ids,
                                      now=now.isoformat(timespec="seconds"))
            result = await interactions.update(conn, "CarePlan", id_, new, stored.version)
    assert result.stored is not None
    return resource_response(request, result.stored, 200, location=True)
