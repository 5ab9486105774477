"""Patient/[id]/$stratify over HTTP, and who may read the assessments it stores."""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from careplans.risk.assessment import ADMISSION, FRAILTY, assessment_id
from tests.api.support import outcome
from tests.careplans import records as r
from tests.tokens import bearer, mint

AS_OF = date(2026, 9, 1)


@pytest.fixture
async def world(app: Any, client: httpx.AsyncClient, tag: str) -> SimpleNamespace:
    w = SimpleNamespace()
    org_a = await r.practice(client, f"A{tag}")
    org_b = await r.practice(client, f"B{tag}")
    w.gp_a, w.gp_b = await r.gp(client, org_a), await r.gp(client, org_b)
    w.pid = await r.patient(client, org_a, 84, AS_OF)
    w.fall = await r.condition(client, w.pid, "161898004", AS_OF - timedelta(days=40))
    w.hf = await r.condition(client, w.pid, "84114007", AS_OF - timedelta(days=900))
    w.frailty_id = assessment_id(FRAILTY, w.pid)

    async def staff(who: str) -> dict[str, str]:
        return bearer(await mint(app, sub=who, scope="user/*.cruds", fhir_user=who))

    w.as_gp_a, w.as_gp_b = await staff(w.gp_a), await staff(w.gp_b)
    w.as_patient = bearer(await mint(app, sub=f"Patient/{w.pid}", scope="patient/*.cruds",
                                     fhir_user=f"Patient/{w.pid}", patient=w.pid))
    return w


def stratify_path(pid: str) -> str:
    return f"/Patient/{pid}/$stratify?as-of={AS_OF.isoformat()}"


async def test_the_gp_stratifies_and_everyone_with_a_relationship_reads_it(
        client: httpx.AsyncClient, world: SimpleNamespace) -> None:
    got = await client.post(stratify_path(world.pid), headers=world.as_gp_a)
    assert got.status_code == 200, got.text
    bundle = got.json()
    assert bundle["type"] == "collection"
    methods = {e["resource"]["method"]["coding"][0]["code"] for e in bundle["entry"]}
    assert methods == {FRAILTY, ADMISSION}
    frail = next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] ==
                 world.frailty_id)
    assert {b["reference"] for b in frail["basis"]} == {world.fall, world.hf}
    assert frail["prediction"][0]["probabilityDecimal"] == round(2 / 36, 4)
    assert frail["meta"]["versionId"] == "1"

    again = await client.post(stratify_path(world.pid), headers=world.as_gp_a)
    assert again.status_code == 200
    assert {e["resource"]["meta"]["versionId"] for e in again.json()["entry"]} == {"1"}

    for headers in (world.as_gp_a, world.as_patient):
        read = await client.get(f"/RiskAssessment/{world.frailty_id}", headers=headers)
        assert read.status_code == 200, read.text
    found = await client.get("/RiskAssessment", params={"patient": world.pid},
                             headers=world.as_patient)
    assert {e["resource"]["id"] for e in found.json()["entry"]} == {
        world.frailty_id, assessment_id(ADMISSION, world.pid)}


async def test_a_gp_of_another_practice_sees_nothing(
        client: httpx.AsyncClient, world: SimpleNamespace) -> None:
    assert (await client.post(stratify_path(world.pid))).status_code == 200  # the service
    read = await client.get(f"/RiskAssessment/{world.frailty_id}", headers=world.as_gp_b)
    outcome(read, 404, "not known")
    found = await client.get("/RiskAssessment", params={"patient": world.pid},
                             headers=world.as_gp_b)
    assert found.status_code == 200 and not found.json().get("entry")
    run = await client.post(stratify_path(world.pid), headers=world.as_gp_b)
    outcome(run, 404, "not known")


async def test_the_patient_may_not_run_it(client: httpx.AsyncClient,
                                          world: SimpleNamespace) -> None:
    outcome(await client.post(stratify_path(world.pid), headers=world.as_patient), 403,
            "care team")
    assert (await client.get(f"/RiskAssessment/{world.frailty_id}")).status_code == 404


async def test_bad_input_is_refused_and_changes_nothing(client: httpx.AsyncClient,
                                                        world: SimpleNamespace) -> None:
    outcome(await client.post(f"/Patient/{world.pid}/$stratify?as-of=2026-02-30"), 400,
            "YYYY-MM-DD")
    outcome(await client.post("/Patient/no-such-patient/$stratify"), 404, "not known")
    assert (await client.get(f"/RiskAssessment/{world.frailty_id}")).status_code == 404


async def test_a_change_in_the_record_makes_a_new_version_that_says_why(
        client: httpx.AsyncClient, world: SimpleNamespace) -> None:
    assert (await client.post(stratify_path(world.pid))).status_code == 200
    for code in ("15188001", "49049000", "165232002"):  # deafness, Parkinson's, incontinence
        await r.condition(client, world.pid, code, AS_OF - timedelta(days=5))
    got = await client.post(stratify_path(world.pid), headers=world.as_gp_a)
    frail = next(e["resource"] for e in got.json()["entry"]
                 if e["resource"]["id"] == world.frailty_id)
    assert frail["meta"]["versionId"] == "2"
    assert frail["note"][0]["text"].startswith(
        f"Since {AS_OF.isoformat()}: fit → mild frailty (0.06 → 0.14); new: ")
    old = await client.get(f"/RiskAssessment/{world.frailty_id}/_history/1",
                           headers=world.as_gp_a)
    assert old.status_code == 200 and old.json()["prediction"][0]["probabilityDecimal"] == \
        round(2 / 36, 4)
