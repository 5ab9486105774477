"""Quality indicators as MeasureReports, against a small practice counted by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from careplans.worklist.build import build
from careplans.worklist.calendar import add_working_days
from tests.api.support import outcome
from tests.careplans import records as r
from tests.careplans import worklist_support as w
from tests.careplans.worklist_support import ADMISSION
from tests.tokens import bearer, mint


def by_code(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["resource"]["measure"].rsplit("/", 1)[1]: e["resource"]
            for e in bundle["entry"]}


def counts(rep: dict[str, Any]) -> tuple[int, int, float | None]:
    pops = {p["code"]["coding"][0]["code"]: p["count"] for p in rep["group"][0]["population"]}
    score = rep["group"][0].get("measureScore", {}).get("value")
    return pops["initial-population"], pops["numerator"], score


def listed(rep: dict[str, Any], name: str) -> set[str]:
    [found] = [c for c in rep["contained"] if c["id"] == name]
    return {e["item"]["reference"] for e in found.get("entry", ())}


async def test_indicators_of_a_practice(app: Any, client: httpx.AsyncClient, tag: str) -> None:
    today = datetime.now(UTC).date()
    on = add_working_days(today - timedelta(days=1), 2)  # when the follow-ups fall due
    t = await w.team(client, tag)

    async def person(age: int) -> str:
        return await r.patient(client, t.org, age, on)

    h1, h2, h3, p4 = await person(82), await person(82), await person(70), await person(70)
    o1, o2, y1 = await person(80), await person(76), await person(60)
    await w.risk(client, h1, "severe")
    await w.risk(client, h2, "severe")
    await w.risk(client, h3, "high", method=ADMISSION)
    await w.risk(client, p4, "mild", score=0.2)
    await w.care_plan(client, h2, t.cm_role, on - timedelta(days=5))  # overdue on `on`
    await w.care_plan(client, h3, t.cm_role, on + timedelta(days=100))
    for pid, days in ((h1, None), (h2, None), (o1, 100), (o1, 200), (o1, 400), (y1, 10)):
        day = today - timedelta(days=1) if days is None else on - timedelta(days=days)
        await w.encounter(client, pid, "EMER", day)
    await build(app.state.db, as_of=today, patients=[h1, h2, h3, p4, o1, o2, y1])
    rows = await w.item_rows(app, h1, h2)
    [done] = rows[("ae-follow-up", h1)]
    [left] = rows[("ae-follow-up", h2)]
    got = await client.post(f"/Task/{done.task_id}/$complete", json={
        "resourceType": "Parameters", "parameter": [{"name": "outcome",
                                                     "valueString": "Visited at home"}]})
    assert got.status_code == 200, got.text

    got = await client.get(f"/MeasureReport/$worklist-indicators?practice={t.org}"
                           f"&date={on.isoformat()}")
    assert got.status_code == 200, got.text
    found = by_code(got.json())
    plan = found["high-risk-with-plan"]
    assert counts(plan) == (3, 2, round(2 / 3, 4))
    assert listed(plan, "population") == {f"Patient/{p}" for p in (h1, h2, h3)}
    assert listed(plan, "numerator") == {f"Patient/{h2}", f"Patient/{h3}"}
    assert counts(found["plan-review-overdue"]) == (2, 1, 0.5)
    assert listed(found["plan-review-overdue"], "numerator") == {f"Patient/{h2}"}
    follow = found["follow-up-in-2-days"]
    assert counts(follow) == (2, 1, 0.5)
    assert listed(follow, "numerator") == {f"Task/{done.task_id}"}
    assert listed(follow, "population") == {f"Task/{done.task_id}", f"Task/{left.task_id}"}
    # over-75s: h1, h2, o1, o2; attendances in 12 months: h1 1, h2 1, o1 2 (not the 3rd)
    ae = found["ae-per-1000-over-75"]
    assert counts(ae) == (4, 4, 1000.0)
    assert listed(ae, "numerator") == {f"Patient/{p}" for p in (h1, h2, o1)}
    assert plan["reporter"] == {"reference": f"Organization/{t.org}"}
    assert plan["type"] == "subject-list"

    # the network's report holds the practice's patients too (and others of the network)
    network = by_code((await client.get(
        f"/MeasureReport/$worklist-indicators?date={on.isoformat()}")).json())
    whole = network["high-risk-with-plan"]
    assert "reporter" not in whole and counts(whole)[0] >= 3
    assert {f"Patient/{p}" for p in (h1, h2, h3)} <= listed(whole, "population")
    assert f"Patient/{h1}" not in listed(whole, "numerator")

    # a GP elsewhere sees the counts, not who is in them; a patient gets none
    other = await r.practice(client, f"I{tag}")
    gp = await r.gp(client, other)
    as_gp = bearer(await mint(app, sub=gp, fhir_user=gp, scope="user/*.cruds"))
    theirs = by_code((await client.get(
        f"/MeasureReport/$worklist-indicators?practice={t.org}&date={on.isoformat()}",
        headers=as_gp)).json())
    assert counts(theirs["high-risk-with-plan"]) == (3, 2, round(2 / 3, 4))
    assert listed(theirs["high-risk-with-plan"], "population") == set()
    as_patient = bearer(await mint(app, sub=f"Patient/{h1}", fhir_user=f"Patient/{h1}",
                                   scope="patient/*.rs", patient=h1))
    outcome(await client.get("/MeasureReport/$worklist-indicators", headers=as_patient), 403)
