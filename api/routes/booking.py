"""Booking: the Appointment write rule (careplans/booking/rules.py), installed at start-up,
and `Slot/$find` (fhir/operations/find_slots.py).

Booking itself is the FHIR create of an Appointment naming a free Slot
(https://hl7.org/fhir/R4/appointment.html); cancelling or rescheduling is its update. The
rule applies to every write of an Appointment, whatever the route.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from api.deps import RepositoryDep
from api.http import FHIR_PREFIX, base_url, check_accept, fhir_response
from careplans.booking.rules import RULE
from fhir import bundles, capability, writerules

router = APIRouter()
FIND = "https://carenet.invalid/fhir/OperationDefinition/find-slots"


def install(app: FastAPI) -> None:
    """Register the Appointment rule and Slot/$find (before the generic [type]/[id])."""
    writerules.register("Appointment", RULE)
    capability.add_operation("Slot", "find", FIND)
    app.include_router(router, prefix=FHIR_PREFIX, dependencies=[Depends(check_accept)])


@router.get("/Slot/$find")
async def find_slots(request: Request, repo: RepositoryDep) -> Response:
    params = parse_qsl(request.url.query, keep_blank_values=True)
    page, query = await repo.find_slots(params)
    return fhir_response(bundles.searchset(base=base_url(request), page=page, query=query))
