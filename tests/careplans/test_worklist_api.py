"""Working the list over the FHIR API: the Task state machine as operations and as PUT,
with access control and clear refusals."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from careplans.worklist.build import build
from tests.api.support import create, outcome
from tests.careplans import records as r
from tests.careplans import worklist_support as w
from tests.careplans.worklist_support import AS_OF
from tests.tokens import bearer, mint


def params(**values: str) -> dict[str, Any]:
    out = []
    for name, value in values.items():
        key = "valueReference" if name == "owner" else (
            "valueDate" if name == "due" else "valueString")
        out.append({"name": name, key: {"reference": value} if key == "valueReference"
                    else value})
    return {"resourceType": "Parameters", "parameter": out}


@pytest.fixture
async def item(app: Any, client: httpx.AsyncClient, tag: str) -> Any:
    t = await w.team(client, tag)
    t.patient = await w.patient(client, t)
    await w.risk(client, t.patient, "severe")
    await build(app.state.db, as_of=AS_OF, patients=[t.patient])
    [row] = (await w.item_rows(app, t.patient))[("no-plan", t.patient)]
    t.task = row.task_id
    t.as_cm = bearer(await mint(app, sub=f"Practitioner/{t.cm_prac}",
                                fhir_user=f"Practitioner/{t.cm_prac}", scope="user/*.cruds"))
    other = await r.practice(client, f"X{tag}")
    gp = await r.gp(client, other)
    t.as_other_gp = bearer(await mint(app, sub=gp, fhir_user=gp, scope="user/*.cruds"))
    return t


async def op(client: httpx.AsyncClient, t: Any, name: str, body: Any = None,
             headers: Any = None) -> httpx.Response:
    return await client.post(f"/Task/{t.task}/${name}", json=body,
                             headers=headers if headers is not None else t.as_cm)


async def test_claim_start_complete(app: Any, client: httpx.AsyncClient, item: Any) -> None:
    got = await op(client, item, "claim")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["status"] == "accepted"
    assert body["owner"] == {"reference": f"PractitionerRole/{item.cm_role}"}
    assert body["businessStatus"]["text"] == "claimed"
    [row] = (await w.item_rows(app, item.patient))[("no-plan", item.patient)]
    assert (row.owner, row.status) == (f"PractitionerRole/{item.cm_role}", "accepted")
    assert (await op(client, item, "start")).json()["status"] == "in-progress"
    outcome(await op(client, item, "complete", params()), 422, "say what was done")
    done = await op(client, item, "complete", params(outcome="Phoned; plan meeting booked"))
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    assert done.json()["output"][0]["valueString"] == "Phoned; plan meeting booked"
    [row] = (await w.item_rows(app, item.patient))[("no-plan", item.patient)]
    assert (row.open, row.status, row.done_on is not None) == (False, "completed", True)
    outcome(await op(client, item, "start"), 409, "already completed")
    outcome(await op(client, item, "cancel", params(reason="duplicate")), 409,
            "already completed")


async def test_start_needs_a_claim(client: httpx.AsyncClient, item: Any) -> None:
    outcome(await op(client, item, "start"), 409, "cannot become in progress",
            "claim it first")


async def test_defer_escalate_assign_cancel(app: Any, client: httpx.AsyncClient,
                                            item: Any) -> None:
    outcome(await op(client, item, "defer", params(due="2026-09-02")), 422, "later than")
    outcome(await op(client, item, "defer", params(due="next week")), 422, "YYYY-MM-DD")
    deferred = await op(client, item, "defer", params(due="2026-10-30", reason="in hospital"))
    assert deferred.status_code == 200, deferred.text
    assert deferred.json()["restriction"]["period"]["end"] == "2026-10-30"
    assert deferred.json()["businessStatus"]["text"] == "deferred"
    [row] = (await w.item_rows(app, item.patient))[("no-plan", item.patient)]
    assert row.due == "2026-10-30"
    up = await op(client, item, "escalate",
                  params(owner=f"PractitionerRole/{item.cm2_role}", reason="needs a lead"))
    assert up.status_code == 200, up.text
    assert (up.json()["priority"], up.json()["status"]) == ("urgent", "requested")
    assert up.json()["owner"] == {"reference": f"PractitionerRole/{item.cm2_role}"}
    outcome(await op(client, item, "assign", params(owner="Patient/x")), 422, "PractitionerRole")
    back = await op(client, item, "assign", params(owner=f"PractitionerRole/{item.cm_role}"))
    assert back.json()["owner"] == {"reference": f"PractitionerRole/{item.cm_role}"}
    outcome(await op(client, item, "cancel", params()), 422, "say why")
    gone = await op(client, item, "cancel", params(reason="Patient moved away"))
    assert (gone.json()["status"], gone.json()["statusReason"]["text"]) == (
        "cancelled", "Patient moved away")
    [row] = (await w.item_rows(app, item.patient))[("no-plan", item.patient)]
    assert (row.open, row.status) == (False, "cancelled")


async def test_put_and_delete_follow_the_same_rules(client: httpx.AsyncClient,
                                                    item: Any) -> None:
    task = await w.task(client, item.task)
    outcome(await client.put(f"/Task/{item.task}", json={**task, "status": "in-progress"},
                             headers=item.as_cm), 409, "claim it first")
    moved = {**task, "identifier": [{"system": task["identifier"][0]["system"],
                                     "value": "no-plan|someone-else|2026-Q3"}]}
    outcome(await client.put(f"/Task/{item.task}", json=moved, headers=item.as_cm), 422,
            "identifier")
    outcome(await client.delete(f"/Task/{item.task}", headers=item.as_cm), 409,
            "cancel it with a reason")
    accepted = await client.put(f"/Task/{item.task}", json={**task, "status": "accepted"},
                                headers=item.as_cm)
    assert accepted.status_code == 200, accepted.text
    outcome(await create_worklist_task(client, task), 422, "worklist build")


async def create_worklist_task(client: httpx.AsyncClient, task: dict) -> httpx.Response:
    copy = {k: v for k, v in task.items() if k not in ("id", "meta")}
    return await client.post("/Task", json=copy)


async def test_a_stranger_cannot_work_the_item(client: httpx.AsyncClient, item: Any) -> None:
    outcome(await op(client, item, "claim", headers=item.as_other_gp), 404)
    assert (await w.task(client, item.task))["status"] == "requested"


async def test_only_worklist_tasks_and_known_operations(client: httpx.AsyncClient,
                                                        item: Any) -> None:
    other = await create(client, {"resourceType": "Task", "status": "requested",
                                  "intent": "order",
                                  "for": {"reference": f"Patient/{item.patient}"}})
    outcome(await client.post(f"/Task/{other['id']}/$claim", headers=item.as_cm), 422,
            "not a worklist item")
    outcome(await op(client, item, "snooze"), 400, "$claim")
