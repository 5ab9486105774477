"""Records and lookups for the worklist tests, written through the API as the network's
backend service."""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import sqlalchemy as sa

from careplans.risk.assessment import (
    ADMISSION,
    BAND_SYSTEM,
    FRAILTY,
    METHOD_SYSTEM,
    RISK_PROBABILITY,
)
from careplans.worklist.facts import REFERRAL_CATEGORY
from careplans.worklist.models import WorklistItem
from tests.api.support import create
from tests.careplans import records as r
from tests.careplans.support import plan

AS_OF = date(2026, 9, 1)  # a Tuesday; Monday 2026-08-31 is the Summer bank holiday
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
items = WorklistItem.__table__


def ago(days: int) -> date:
    return AS_OF - timedelta(days=days)


async def team(client: httpx.AsyncClient, tag: str) -> SimpleNamespace:
    """A practice with a case manager (R0600) and a pharmacist (R1290)."""
    t = SimpleNamespace()
    t.org = await r.practice(client, f"W{tag}")
    t.cm_prac, t.cm_role = await staff(client, t.org, "R0600")
    t.cm2_prac, t.cm2_role = await staff(client, t.org, "R0600")
    return t


async def staff(client: httpx.AsyncClient, org: str, code: str) -> tuple[str, str]:
    prac = await create(client, {"resourceType": "Practitioner", "name": [{"family": "Case"}]})
    role = await create(client, {
        "resourceType": "PractitionerRole",
        "practitioner": {"reference": f"Practitioner/{prac['id']}"},
        "organization": {"reference": f"Organization/{org}"},
        "code": [{"coding": [{"system": r.SDS_ROLE, "code": code}]}]})
    return prac["id"], role["id"]


async def patient(client: httpx.AsyncClient, t: SimpleNamespace, age: int = 82) -> str:
    return await r.patient(client, t.org, age, AS_OF)


def risk_body(pid: str, method: str, band: str, score: float | None = None) -> dict[str, Any]:
    system = BAND_SYSTEM if method == FRAILTY else RISK_PROBABILITY
    prediction: dict[str, Any] = {"qualitativeRisk": {"coding": [{"system": system,
                                                                  "code": band}]}}
    if score is not None:
        prediction["probabilityDecimal"] = score
    return {"resourceType": "RiskAssessment", "status": "final",
            "subject": {"reference": f"Patient/{pid}"},
            "method": {"coding": [{"system": METHOD_SYSTEM, "code": method}]},
            "prediction": [prediction]}


async def risk(client: httpx.AsyncClient, pid: str, band: str, method: str = FRAILTY,
               score: float | None = 0.39) -> str:
    body = await create(client, risk_body(pid, method, band,
                                          score if method == FRAILTY else None))
    return body["id"]


async def rerisk(client: httpx.AsyncClient, pid: str, ra_id: str, band: str,
                 method: str = FRAILTY) -> None:
    got = await client.put(f"/RiskAssessment/{ra_id}",
                           json={**risk_body(pid, method, band), "id": ra_id})
    assert got.status_code == 200, got.text


async def care_plan(client: httpx.AsyncClient, pid: str, coordinator: str,
                    review: date) -> str:
    body = await create(client, plan(pid, coordinator=f"PractitionerRole/{coordinator}",
                                     review=review.isoformat()))
    return body["id"]


async def encounter(client: httpx.AsyncClient, pid: str, klass: str, day: date,
                    status: str = "finished", code: str | None = None) -> str:
    body: dict[str, Any] = {
        "resourceType": "Encounter", "status": status,
        "class": {"system": ACT, "code": klass}, "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": day.isoformat(), "end": day.isoformat()}}
    if code:
        body["type"] = [r.concept(code)]
    return (await create(client, body))["id"]


async def medicines(client: httpx.AsyncClient, pid: str, n: int) -> None:
    for i in range(n):
        await r.medicine(client, pid, f"9{i:03d}1000001104", ago(30 + i))


async def med_review(client: httpx.AsyncClient, pid: str, day: date) -> None:
    await create(client, {"resourceType": "Procedure", "status": "completed",
                          "code": r.concept("1239511000000100"),
                          "subject": {"reference": f"Patient/{pid}"},
                          "performedDateTime": day.isoformat()})


async def referral(client: httpx.AsyncClient, pid: str, day: date) -> str:
    system, code = REFERRAL_CATEGORY
    body = await create(client, {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "category": [{"coding": [{"system": system, "code": code}]}],
        "code": {"text": "Social care needs assessment"},
        "subject": {"reference": f"Patient/{pid}"}, "authoredOn": day.isoformat()})
    return body["id"]


async def acknowledge(client: httpx.AsyncClient, pid: str, sr_id: str) -> None:
    await create(client, {"resourceType": "Task", "status": "accepted", "intent": "order",
                          "basedOn": [{"reference": f"ServiceRequest/{sr_id}"}],
                          "for": {"reference": f"Patient/{pid}"}})


async def message(client: httpx.AsyncClient, pid: str, sender: str, day: date) -> str:
    body = await create(client, {
        "resourceType": "Communication", "status": "completed",
        "subject": {"reference": f"Patient/{pid}"}, "sender": {"reference": sender},
        "sent": f"{day.isoformat()}T10:00:00Z", "payload": [{"contentString": "Hello"}]})
    return body["id"]


async def item_rows(app: Any, *pids: str) -> dict[tuple[str, str], Any]:
    """(rule, patient) -> the item rows of these patients (a list when several)."""
    async with app.state.db.read() as conn:
        rows = (await conn.execute(sa.select(items).where(items.c.patient_id.in_(pids)))).all()
    found: dict[tuple[str, str], Any] = {}
    for row in rows:
        found.setdefault((row.rule, row.patient_id), []).append(row)
    return found


async def task(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    got = await client.get(f"/Task/{task_id}")
    assert got.status_code == 200, got.text
    return got.json()


__all__ = ["ADMISSION", "FRAILTY"]
