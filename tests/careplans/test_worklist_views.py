"""The case manager's views: my worklist, the team's unassigned items, a practice's items,
the MDT meeting list and caseloads, in worklist order (overdue, priority, due date)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from careplans.worklist.build import build
from consent import context
from tests.api.support import create, outcome
from tests.careplans import records as r
from tests.careplans import worklist_support as w
from tests.careplans.worklist_support import AS_OF
from tests.tokens import bearer, mint

MEETING = "2026-09-20"  # the built items are due 2026-09-15 (10 working days after AS_OF)


def params(**values: Any) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": k, ("valueReference" if k == "owner" else "valueString" if k != "due"
                     else "valueDate"): v} for k, v in values.items()]}


@pytest.fixture
async def team(app: Any, client: httpx.AsyncClient, tag: str) -> Any:
    """Four unplanned severely frail patients of one practice: items A, B, C, D."""
    t = await w.team(client, tag)
    t.patients = [await w.patient(client, t) for _ in range(4)]
    for pid in t.patients:
        await w.risk(client, pid, "severe")
    await build(app.state.db, as_of=AS_OF, patients=t.patients)
    rows = await w.item_rows(app, *t.patients)
    t.tasks = [rows[("no-plan", pid)][0].task_id for pid in t.patients]
    t.as_cm = bearer(await mint(app, sub=f"Practitioner/{t.cm_prac}",
                                fhir_user=f"Practitioner/{t.cm_prac}", scope="user/*.cruds"))
    other = await r.practice(client, f"O{tag}")
    gp = await r.gp(client, other)
    t.as_stranger = bearer(await mint(app, sub=gp, fhir_user=gp, scope="user/*.cruds"))
    return t


async def work(client: httpx.AsyncClient, t: Any, i: int, name: str, **values: Any) -> None:
    got = await client.post(f"/Task/{t.tasks[i]}/${name}", headers=t.as_cm,
                            json=params(**values) if values else None)
    assert got.status_code == 200, got.text


async def ids(client: httpx.AsyncClient, path: str, headers: Any) -> list[str]:
    got = await client.get(path, headers=headers)
    assert got.status_code == 200, got.text
    assert got.json()["resourceType"] == "Bundle"
    return [e["resource"]["id"] for e in got.json().get("entry", ())]


async def test_my_worklist_puts_overdue_first_then_priority_then_due(
        client: httpx.AsyncClient, team: Any) -> None:
    t, me = team, f"PractitionerRole/{team.cm_role}"
    for i in range(4):
        await work(client, t, i, "claim")
    await work(client, t, 1, "escalate", owner={"reference": me})  # B urgent
    await work(client, t, 2, "defer", due="2026-10-01")  # C routine, later
    await work(client, t, 3, "escalate", owner={"reference": me})  # D asap, latest
    await work(client, t, 3, "escalate", owner={"reference": me})
    await work(client, t, 3, "defer", due="2026-10-20")
    a, b, c, d = t.tasks
    mine = await ids(client, f"/Task/$my-worklist?date={MEETING}", t.as_cm)
    assert mine == [b, a, d, c]
    # before anything is overdue, priority decides first
    assert await ids(client, "/Task/$my-worklist?date=2026-09-02", t.as_cm) == [d, b, a, c]
    assert await ids(client, f"/Task/$my-worklist?date={MEETING}", t.as_stranger) == []
    # a page at a time, in the same order
    first = (await client.get(f"/Task/$my-worklist?date={MEETING}&_count=3",
                              headers=t.as_cm)).json()
    assert [e["resource"]["id"] for e in first["entry"]] == [b, a, d]
    [nxt] = [link["url"] for link in first["link"] if link["relation"] == "next"]
    rest = (await client.get(nxt, headers=t.as_cm)).json()
    assert [e["resource"]["id"] for e in rest["entry"]] == [c]
    assert [link["relation"] for link in rest["link"]] == ["self"]
    outcome(await client.get("/Task/$my-worklist?_count=0", headers=t.as_cm), 400, "_count")


async def test_team_unassigned_and_practice_lists(client: httpx.AsyncClient,
                                                  team: Any) -> None:
    t = team
    a, b, c, d = t.tasks
    assert sorted(await ids(client, "/Task/$team-unassigned", t.as_cm)) == sorted(t.tasks)
    await work(client, t, 0, "claim")
    assert sorted(await ids(client, "/Task/$team-unassigned", t.as_cm)) == sorted([b, c, d])
    assert await ids(client, "/Task/$team-unassigned", t.as_stranger) == []
    await work(client, t, 2, "escalate", owner={"reference": f"PractitionerRole/{t.cm2_role}"})
    practice = await ids(client, f"/Organization/{t.org}/$worklist?date=2026-09-02", t.as_cm)
    assert practice[0] == c and sorted(practice) == sorted(t.tasks)  # urgent first
    assert await ids(client, f"/Organization/{t.org}/$worklist", t.as_stranger) == []


async def test_mdt_list_for_a_date(client: httpx.AsyncClient, team: Any) -> None:
    t = team
    await work(client, t, 0, "claim")
    await work(client, t, 1, "escalate", owner={"reference": f"PractitionerRole/{t.cm_role}"})
    await work(client, t, 2, "defer", due="2026-10-01")
    await work(client, t, 3, "defer", due="2026-09-30")
    got = await client.get(f"/Organization/{t.org}/$mdt-list?date={MEETING}", headers=t.as_cm)
    assert got.status_code == 200, got.text
    listed = got.json()
    assert (listed["resourceType"], listed["mode"], listed["date"]) == ("List", "snapshot",
                                                                        MEETING)
    assert [e["item"]["reference"] for e in listed["entry"]] == [
        f"Patient/{t.patients[1]}", f"Patient/{t.patients[0]}"]
    assert "no anticipatory care plan" in listed["entry"][0]["flag"]["text"]
    empty = (await client.get(f"/Organization/{t.org}/$mdt-list?date=2026-09-01",
                              headers=t.as_cm)).json()
    assert "entry" not in empty and empty["emptyReason"]["text"]


async def test_caseload_per_case_manager_and_practice(client: httpx.AsyncClient,
                                                      team: Any) -> None:
    t = team
    today = datetime.now(UTC).date().isoformat()
    for i in range(3):
        await work(client, t, i, "claim")
    await work(client, t, 2, "defer", due="2099-01-01")
    await work(client, t, 0, "complete", outcome="Plan drafted with the patient")
    got = await client.get(f"/Organization/{t.org}/$caseload?date={today}", headers=t.as_cm)
    assert got.status_code == 200, got.text

    def counts(part: dict) -> tuple[int, ...]:
        values = {p["name"]: p.get("valueInteger") for p in part["part"]}
        return values["open"], values["overdue"], values["completedThisWeek"]

    parts = got.json()["parameter"]
    assert parts[0]["name"] == "practice" and counts(parts[0]) == (3, 2, 1)
    [mine] = [p for p in parts if p["name"] == "caseManager"]
    assert mine["part"][0]["valueReference"]["reference"] == f"PractitionerRole/{t.cm_role}"
    assert counts(mine) == (2, 1, 1)


async def test_a_network_case_manager_sees_its_practices_unassigned_items(
        app: Any, client: httpx.AsyncClient, team: Any, tag: str) -> None:
    t = team
    network = await create(client, {"resourceType": "Organization", "name": f"Net {tag}"})
    practice = (await client.get(f"/Organization/{t.org}")).json()
    practice["partOf"] = {"reference": f"Organization/{network['id']}"}
    assert (await client.put(f"/Organization/{t.org}", json=practice)).status_code == 200
    prac, _ = await w.staff(client, network["id"], "R0600")
    as_network = bearer(await mint(app, sub=f"Practitioner/{prac}",
                                   fhir_user=f"Practitioner/{prac}", scope="user/*.cruds"))
    # the practice's queue is theirs to see only where they reach the patient (access
    # control, as everywhere): none yet; then they join one patient's care team
    assert await ids(client, "/Task/$team-unassigned", as_network) == []
    await create(client, {"resourceType": "CareTeam", "status": "active",
                          "subject": {"reference": f"Patient/{t.patients[2]}"},
                          "participant": [{"member": {"reference": f"Practitioner/{prac}"}}]})
    context.forget_reaches()  # their list of patients is cached for a few seconds
    assert await ids(client, "/Task/$team-unassigned", as_network) == [t.tasks[2]]
