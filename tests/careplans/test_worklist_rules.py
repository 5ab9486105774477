"""Each worklist rule fires, does not fire on near misses, and closes when its cause goes
(builds on SQLite and PostgreSQL, over records written through the API)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from careplans.worklist.build import build
from careplans.worklist.calendar import add_working_days
from tests.careplans import worklist_support as w
from tests.careplans.worklist_support import ADMISSION, AS_OF, ago


@pytest.fixture
async def t(client: httpx.AsyncClient, tag: str) -> Any:
    return await w.team(client, tag)


async def run(app: Any, *pids: str, as_of: Any = AS_OF) -> dict[tuple[str, str], Any]:
    await build(app.state.db, as_of=as_of, patients=list(pids))
    return await w.item_rows(app, *pids)


async def test_high_risk_without_a_plan(app: Any, client: httpx.AsyncClient, t: Any) -> None:
    severe, mild, planned, admission = [await w.patient(client, t) for _ in range(4)]
    await w.risk(client, severe, "severe", score=0.39)
    await w.risk(client, mild, "mild", score=0.2)
    await w.risk(client, planned, "moderate", score=0.3)
    await w.care_plan(client, planned, t.cm_role, AS_OF.replace(year=2027))
    ra = await w.risk(client, admission, "high", method=ADMISSION)
    found = await run(app, severe, mild, planned, admission)
    assert set(found) == {("no-plan", severe), ("no-plan", admission)}
    [row] = found[("no-plan", severe)]
    assert (row.period, row.status, row.open, row.team) == ("2026-Q3", "requested", True, t.org)
    item = await w.task(client, row.task_id)
    assert item["for"] == {"reference": f"Patient/{severe}"}
    assert item["reasonCode"]["coding"][0]["code"] == "no-plan"
    assert item["reasonCode"]["text"] == ("severe frailty (0.39), no anticipatory care plan: "
                                          "draft one")
    assert item["restriction"]["period"]["end"] == add_working_days(AS_OF, 10).isoformat()
    assert item["restriction"]["recipient"] == [{"reference": f"Organization/{t.org}"}]
    assert item["performerType"][0]["coding"][0]["code"] == "R0600"
    # the cause goes: a plan for one (completed), a lower tier for the other (cancelled)
    await w.care_plan(client, severe, t.cm_role, AS_OF.replace(year=2027))
    await w.rerisk(client, admission, ra, "moderate", method=ADMISSION)
    found = await run(app, severe, admission)
    [done] = found[("no-plan", severe)]
    [gone] = found[("no-plan", admission)]
    assert (done.status, done.open, gone.status, gone.open) == (
        "completed", False, "cancelled", False)
    closed = await w.task(client, gone.task_id)
    assert closed["status"] == "cancelled"
    assert closed["statusReason"]["text"] == "The patient is no longer high risk."
    assert (await w.task(client, done.task_id))["statusReason"]["text"] == (
        "An anticipatory care plan is now active.")


async def test_plan_review_due_or_overdue(app: Any, client: httpx.AsyncClient,
                                          t: Any) -> None:
    soon, late, later = [await w.patient(client, t) for _ in range(3)]
    soon_plan = await w.care_plan(client, soon, t.cm_role, AS_OF.replace(day=11))
    await w.care_plan(client, late, t.cm_role, ago(5))
    await w.care_plan(client, later, t.cm_role, AS_OF.replace(month=10, day=1))
    found = await run(app, soon, late, later)
    assert set(found) == {("review-due", soon), ("review-due", late)}
    [row] = found[("review-due", soon)]
    assert row.owner == f"PractitionerRole/{t.cm_role}"
    item = await w.task(client, row.task_id)
    assert item["focus"] == {"reference": f"CarePlan/{soon_plan}"}
    assert item["description"] == "Care plan review due (2026-09-11)"
    late_item = await w.task(client, found[("review-due", late)][0].task_id)
    assert late_item["description"] == f"Care plan review overdue ({ago(5).isoformat()})"
    # the review date moves on: completed
    current = (await client.get(f"/CarePlan/{soon_plan}")).json()
    current["activity"][-1]["detail"]["scheduledPeriod"]["start"] = "2027-03-01"
    assert (await client.put(f"/CarePlan/{soon_plan}", json=current)).status_code == 200
    [row] = (await run(app, soon))[("review-due", soon)]
    assert (row.status, row.open) == ("completed", False)


async def test_follow_up_after_an_emergency(app: Any, client: httpx.AsyncClient,
                                            t: Any) -> None:
    frail, fit, old = [await w.patient(client, t) for _ in range(3)]
    for pid, band in ((frail, "severe"), (fit, "fit"), (old, "severe")):
        await w.risk(client, pid, band)
    friday = AS_OF.replace(day=4)  # Friday: +2 working days is Tuesday
    ae = await w.encounter(client, frail, "EMER", friday)
    await w.encounter(client, fit, "EMER", friday)
    await w.encounter(client, old, "EMER", ago(20))  # too long ago to start a follow-up
    found = await run(app, frail, fit, old, as_of=friday)
    assert ("ae-follow-up", frail) in found
    assert ("ae-follow-up", fit) not in found and ("ae-follow-up", old) not in found
    [row] = found[("ae-follow-up", frail)]
    assert row.period == ae and row.due == "2026-09-08"
    item = await w.task(client, row.task_id)
    assert item["focus"] == {"reference": f"Encounter/{ae}"}
    assert item["priority"] == "urgent"
    assert item["description"].startswith("A&E attendance on 2026-09-04")
    # a follow-up contact at home closes it as done
    await w.encounter(client, frail, "HH", friday.replace(day=7))
    [row] = (await run(app, frail, as_of=friday.replace(day=7)))[("ae-follow-up", frail)]
    assert (row.status, row.open) == ("completed", False)


async def test_emergency_entered_in_error_cancels_the_follow_up(
        app: Any, client: httpx.AsyncClient, t: Any) -> None:
    pid = await w.patient(client, t)
    await w.risk(client, pid, "moderate", score=0.3)
    ae = await w.encounter(client, pid, "EMER", ago(1))
    [row] = (await run(app, pid))[("ae-follow-up", pid)]
    body = (await client.get(f"/Encounter/{ae}")).json()
    body["status"] = "entered-in-error"
    assert (await client.put(f"/Encounter/{ae}", json=body)).status_code == 200
    [row] = (await run(app, pid))[("ae-follow-up", pid)]
    assert (row.status, row.open) == ("cancelled", False)


async def test_medication_review_for_polypharmacy(app: Any, client: httpx.AsyncClient,
                                                  t: Any) -> None:
    many, nine, reviewed = [await w.patient(client, t) for _ in range(3)]
    await w.medicines(client, many, 10)
    await w.medicines(client, nine, 9)
    await w.medicines(client, reviewed, 12)
    await w.med_review(client, reviewed, ago(100))
    found = await run(app, many, nine, reviewed)
    assert set(found) == {("med-review", many)}
    [row] = found[("med-review", many)]
    item = await w.task(client, row.task_id)
    assert item["performerType"][0]["coding"][0]["code"] == "R1290"  # a pharmacist's item
    assert "owner" not in item and row.period == "2026"
    await w.med_review(client, many, AS_OF)
    [row] = (await run(app, many))[("med-review", many)]
    assert (row.status, row.open) == ("completed", False)


async def test_social_care_referral_unacknowledged(app: Any, client: httpx.AsyncClient,
                                                   t: Any) -> None:
    waiting, recent, acked = [await w.patient(client, t) for _ in range(3)]
    sr = await w.referral(client, waiting, ago(10))
    # Saturday 29 August: 5 working days (the bank holiday Monday does not count) end on
    # Monday 7 September, so on 1 September it is not late yet.
    await w.referral(client, recent, ago(3))
    acked_sr = await w.referral(client, acked, ago(10))
    await w.acknowledge(client, acked, acked_sr)
    found = await run(app, waiting, recent, acked)
    assert set(found) == {("social-referral", waiting)}
    assert found[("social-referral", waiting)][0].period == sr
    await w.acknowledge(client, waiting, sr)
    [row] = (await run(app, waiting))[("social-referral", waiting)]
    assert (row.status, row.open) == ("completed", False)


async def test_message_unanswered(app: Any, client: httpx.AsyncClient, t: Any) -> None:
    waiting, recent, answered = [await w.patient(client, t) for _ in range(3)]
    comm = await w.message(client, waiting, f"Patient/{waiting}", ago(7))
    await w.message(client, recent, f"Patient/{recent}", ago(1))
    await w.message(client, answered, f"Patient/{answered}", ago(7))
    await w.message(client, answered, f"PractitionerRole/{t.cm_role}", ago(6))
    found = await run(app, waiting, recent, answered)
    assert set(found) == {("unanswered-message", waiting)}
    [row] = found[("unanswered-message", waiting)]
    assert row.period == comm
    await w.message(client, waiting, f"PractitionerRole/{t.cm_role}", AS_OF)
    [row] = (await run(app, waiting))[("unanswered-message", waiting)]
    assert (row.status, row.open) == ("completed", False)


async def test_risk_band_rose(app: Any, client: httpx.AsyncClient, t: Any) -> None:
    rose, fell = [await w.patient(client, t, age=70) for _ in range(2)]
    up = await w.risk(client, rose, "fit", score=0.1)
    down = await w.risk(client, fell, "mild", score=0.2)
    assert await run(app, rose, fell) == {}
    await w.rerisk(client, rose, up, "mild")
    await w.rerisk(client, fell, down, "fit")
    found = await run(app, rose, fell)
    assert set(found) == {("risk-rose", rose)}
    [row] = found[("risk-rose", rose)]
    assert row.period == f"RiskAssessment/{up}|2"
    assert (await w.task(client, row.task_id))["description"] == "frailty rose from fit to mild"
    await w.rerisk(client, rose, up, "fit")  # a newer version replaces the one that rose
    [row] = (await run(app, rose))[("risk-rose", rose)]
    assert (row.status, row.open) == ("cancelled", False)
