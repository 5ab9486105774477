"""CDS Hooks 2.0 patient-view cards: the shape the spec asks for, and the FHIR API's access
rules (the hook's fhirAuthorization token, verified; nothing for a stranger)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from careplans.cds.cards import SERVICE_ID
from tests.api.support import outcome
from tests.careplans import records as r
from tests.careplans import worklist_support as w
from tests.tokens import mint

URL = f"/cds-services/{SERVICE_ID}"


@pytest.fixture
async def hooks(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as c:
        yield c


def hook(patient: str, user: str, token: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                            "fhirServer": "http://test/fhir",
                            "context": {"userId": user, "patientId": patient}}
    if token is not None:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer",
                                     "expires_in": 300, "scope": "user/*.rs",
                                     "subject": "ehr"}
    return body


@pytest.fixture
async def clinic(app: Any, client: httpx.AsyncClient, tag: str) -> Any:
    t = await w.team(client, tag)
    t.frail = await w.patient(client, t)
    await w.risk(client, t.frail, "severe", score=0.39)
    t.planned = await w.patient(client, t)
    await w.risk(client, t.planned, "moderate", score=0.3)
    today = datetime.now(UTC).date()
    await w.care_plan(client, t.planned, t.cm_role, today - timedelta(days=3))
    t.gp = await r.gp(client, t.org)
    t.gp_token = await mint(app, sub=t.gp, fhir_user=t.gp, scope="user/*.rs")
    other = await r.practice(client, f"S{tag}")
    t.stranger = await r.gp(client, other)
    t.stranger_token = await mint(app, sub=t.stranger, fhir_user=t.stranger, scope="user/*.rs")
    return t


async def test_discovery(hooks: httpx.AsyncClient) -> None:
    got = await hooks.get("/cds-services")
    assert got.status_code == 200
    [found] = got.json()["services"]
    assert (found["hook"], found["id"]) == ("patient-view", SERVICE_ID)
    assert found["description"]


async def test_cards_for_a_clinician_of_the_practice(hooks: httpx.AsyncClient,
                                                     clinic: Any) -> None:
    got = await hooks.post(URL, json=hook(clinic.frail, clinic.gp, clinic.gp_token))
    assert got.status_code == 200, got.text
    [card] = got.json()["cards"]
    assert card["summary"] == "severe frailty (0.39), no anticipatory care plan: draft one"
    assert card["indicator"] == "warning" and card["source"]["label"]
    [link] = card["links"]
    assert link["type"] == "smart" and link["url"].startswith("http://test/")
    assert clinic.frail in link["appContext"]
    uuid.UUID(card["uuid"])
    got = await hooks.post(URL, json=hook(clinic.planned, clinic.gp, clinic.gp_token))
    [card] = got.json()["cards"]
    assert card["summary"].startswith("Anticipatory care plan review overdue (since ")


async def test_no_relationship_no_cards(hooks: httpx.AsyncClient, clinic: Any) -> None:
    for patient in (clinic.frail, "no-such-patient"):
        got = await hooks.post(URL, json=hook(patient, clinic.stranger,
                                               clinic.stranger_token))
        assert got.status_code == 200, got.text
        assert got.json() == {"cards": []}


async def test_the_hook_must_carry_the_users_valid_token(hooks: httpx.AsyncClient,
                                                         clinic: Any) -> None:
    outcome(await hooks.post(URL, json=hook(clinic.frail, clinic.gp, None)), 401,
            "fhirAuthorization")
    outcome(await hooks.post(URL, json=hook(clinic.frail, clinic.gp, "not.a.token")), 401)
    outcome(await hooks.post(URL, json=hook(clinic.frail, clinic.gp, clinic.stranger_token)),
            403, "not")
    other = hook(clinic.frail, clinic.gp, clinic.gp_token)
    other["fhirServer"] = "https://elsewhere.example/fhir"
    outcome(await hooks.post(URL, json=other), 400, "its own FHIR server")
    outcome(await hooks.post("/cds-services/unknown", json=other), 404)
