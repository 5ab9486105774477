"""Stratification runs against the store (SQLite and PostgreSQL): what they write, when."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from careplans.risk.assessment import ADMISSION, FRAILTY, assessment_id
from careplans.risk.flows import stratify
from fhir.schema import resource
from tests.careplans import records as r

AS_OF = date(2026, 9, 1)


def ago(days: int) -> date:
    return AS_OF - timedelta(days=days)


async def assessment(client: httpx.AsyncClient, method: str, pid: str) -> dict[str, Any]:
    got = await client.get(f"/RiskAssessment/{assessment_id(method, pid)}")
    assert got.status_code == 200, got.text
    return got.json()


async def versions(app: Any, pid: str) -> dict[str, int]:
    async with app.state.db.read() as conn:
        rows = await conn.execute(sa.select(resource.c.id, resource.c.version).where(
            resource.c.type == "RiskAssessment", resource.c.patient_id == pid))
        return dict(rows.all())


@pytest.fixture
async def network(client: httpx.AsyncClient, tag: str) -> dict[str, Any]:
    org = await r.practice(client, tag)
    frail = await r.patient(client, org, 82, AS_OF)
    well = await r.patient(client, org, 70, AS_OF, gender="male")
    young = await r.patient(client, org, 40, AS_OF)
    counted = [
        await r.condition(client, frail, "84114007", ago(2000)),  # heart failure
        await r.condition(client, frail, "161898004", ago(30)),  # falls x2
        await r.condition(client, frail, "161898004", ago(200)),
        await r.observation(client, frail, "1011481000000105", ago(20),  # eGFR 41: CKD
                            valueQuantity={"value": 41, "unit": "mL/min/1.73m2"}),
        await r.observation(client, frail, "725594005", ago(40), valueInteger=12),  # Barthel
    ]
    meds = [await r.medicine(client, frail, c, ago(60)) for c in (
        "318902004", "319283006", "325278007", "317972000", "322236009")]
    admitted = await r.encounter(client, frail, "183452005", ago(90))
    near_misses = [
        await r.condition(client, frail, "161898004", ago(400)),  # a fall too long ago
        await r.condition(client, frail, "44054006", ago(100), verification="refuted"),
        await r.condition(client, frail, "49049000", ago(100), status="inactive"),
        await r.observation(client, frail, "1011481000000105", ago(300),  # older, superseded
                            valueQuantity={"value": 30, "unit": "mL/min/1.73m2"}),
        await r.medicine(client, frail, "42206511000001102", ago(400)),  # issued too long ago
    ]
    return {"ods": tag, "org": org, "frail": frail, "well": well, "young": young,
            "counted": counted, "meds": meds, "admitted": admitted, "near": near_misses}


async def test_a_run_writes_each_assessment_with_exactly_its_evidence(
        app: Any, client: httpx.AsyncClient, network: dict[str, Any]) -> None:
    run = await stratify(app.state.db, as_of=AS_OF, practice=network["ods"], full=True)
    assert (run.considered, run.created, run.updated, run.unchanged) == (3, 5, 0, 0)
    frail = await assessment(client, FRAILTY, network["frail"])
    basis = {b["reference"] for b in frail["basis"]}
    assert basis == set(network["counted"]) | set(network["meds"])
    assert not basis & set(network["near"])
    prediction = frail["prediction"][0]
    assert prediction["probabilityDecimal"] == round(5 / 36, 4)
    assert prediction["qualitativeRisk"]["coding"][0]["code"] == "mild"
    months = [ago(200).strftime("%Y-%m"), ago(30).strftime("%Y-%m")]
    assert frail["text"]["div"].count("falls ×2 (" + ", ".join(months) + ")") == 1
    assert "chronic kidney disease (eGFR 41" in frail["text"]["div"]
    admission = await assessment(client, ADMISSION, network["frail"])
    assert network["admitted"] in {b["reference"] for b in admission["basis"]}
    assert admission["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "moderate"
    assert set(await versions(app, network["young"])) == {
        assessment_id(ADMISSION, network["young"])}  # no frailty index under 65


async def test_incremental_runs_touch_only_changed_patients(
        app: Any, client: httpx.AsyncClient, network: dict[str, Any]) -> None:
    db = app.state.db
    await stratify(db, as_of=AS_OF, practice=network["ods"], full=True)
    before = {p: await versions(app, network[p]) for p in ("frail", "well", "young")}
    again = await stratify(db, as_of=AS_OF, practice=network["ods"], overlap=0)
    assert (again.considered, again.created, again.updated) == (0, 0, 0)
    full = await stratify(db, as_of=AS_OF, practice=network["ods"], full=True)
    assert (full.considered, full.created, full.updated, full.unchanged) == (3, 0, 0, 5)
    assert {p: await versions(app, network[p]) for p in before} == before  # nothing written

    deaf = await r.condition(client, network["well"], "15188001", ago(10))
    run = await stratify(db, as_of=AS_OF, practice=network["ods"], overlap=0)
    assert (run.considered, run.created, run.updated, run.unchanged) == (1, 0, 1, 1)
    now = await versions(app, network["well"])
    frailty_id = assessment_id(FRAILTY, network["well"])
    assert now[frailty_id] == before["well"][frailty_id] + 1
    changed = await assessment(client, FRAILTY, network["well"])
    assert deaf in {b["reference"] for b in changed["basis"]}
    assert changed["note"][0]["text"].startswith(
        f"Since {AS_OF.isoformat()}: fit frailty (0.00 → 0.03); new: hearing impairment")
    old = await client.get(f"/RiskAssessment/{frailty_id}/_history/1")
    assert old.status_code == 200 and "basis" not in old.json()
    for p in ("frail", "young"):
        assert await versions(app, network[p]) == before[p]


async def test_an_entry_entered_in_error_takes_its_deficit_away(
        app: Any, client: httpx.AsyncClient, network: dict[str, Any]) -> None:
    db = app.state.db
    await stratify(db, as_of=AS_OF, practice=network["ods"], full=True)
    hf = network["counted"][0]
    got = (await client.get(f"/{hf}")).json()
    got["verificationStatus"] = r.concept("entered-in-error", r.VERIFICATION)
    assert (await client.put(f"/{hf}", json=got)).status_code == 200
    run = await stratify(db, as_of=AS_OF, practice=network["ods"], overlap=0)
    assert (run.considered, run.updated, run.unchanged) == (1, 1, 1)  # admission: no change
    frail = await assessment(client, FRAILTY, network["frail"])
    assert hf not in {b["reference"] for b in frail["basis"]}
    assert "no longer: heart failure" in frail["note"][0]["text"]


async def test_an_unknown_practice_is_refused(app: Any) -> None:
    with pytest.raises(LookupError, match="ODS code 'NOPE99'"):
        await stratify(app.state.db, as_of=AS_OF, practice="NOPE99")


async def test_a_large_batch_read_by_id_range_keeps_to_its_patients(
        app: Any, client: httpx.AsyncClient, network: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from careplans.risk import queries

    other = await r.practice(client, network["ods"] + "X")  # patients between, elsewhere
    outsiders = [await r.patient(client, other, 90, AS_OF) for _ in range(3)]
    for pid in outsiders:
        await r.condition(client, pid, "84114007", ago(10))
    monkeypatch.setattr(queries, "RANGE_READ", 1)
    run = await stratify(app.state.db, as_of=AS_OF, practice=network["ods"], full=True)
    assert (run.considered, run.created) == (3, 5)
    frail = await assessment(client, FRAILTY, network["frail"])
    assert {b["reference"] for b in frail["basis"]} == set(network["counted"]) | set(
        network["meds"])
    for pid in outsiders:
        assert await versions(app, pid) == {}
