"""Builds are idempotent: one item per (rule, patient, period), under repetition and under
concurrency (several builds at once, each on its own connections), and a closed item does not
come back for the same period."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from careplans.worklist.build import build
from fhir.schema import resource, sp_token
from tests.careplans import worklist_support as w
from tests.careplans.worklist_support import AS_OF


async def tasks_of(app: Any, pid: str) -> list[str]:
    """Ids of the worklist Tasks of `pid` in the resource table (not the key table)."""
    async with app.state.db.read() as conn:
        rows = await conn.execute(
            sa.select(resource.c.id).join_from(resource, sp_token,
                                               sp_token.c.rid == resource.c.rid)
            .where(resource.c.type == "Task", resource.c.patient_id == pid,
                   sp_token.c.param == "code", sp_token.c.code.in_(
                       ("no-plan", "med-review", "unanswered-message"))))
        return list(rows.scalars())


@pytest.fixture
async def patients(client: httpx.AsyncClient, tag: str) -> list[str]:
    t = await w.team(client, tag)
    found = []
    for _ in range(4):
        pid = await w.patient(client, t)
        await w.risk(client, pid, "severe")
        await w.message(client, pid, f"Patient/{pid}", w.ago(7))
        found.append(pid)
    return found


async def test_a_repeated_build_creates_nothing(app: Any, patients: list[str]) -> None:
    first = await build(app.state.db, as_of=AS_OF, patients=patients)
    again = await build(app.state.db, as_of=AS_OF, patients=patients)
    assert (first.created, again.created, again.closed) == (8, 0, 0)
    assert again.open == 8
    for pid in patients:
        assert len(await tasks_of(app, pid)) == 2


async def test_concurrent_builds_never_duplicate(app: Any, patients: list[str]) -> None:
    results = await asyncio.gather(*(build(app.state.db, as_of=AS_OF, patients=patients)
                                     for _ in range(6)))
    assert sum(r.created for r in results) == 8  # the unique key chose one creator each
    rows = await w.item_rows(app, *patients)
    assert all(len(found) == 1 for found in rows.values()) and len(rows) == 8
    for pid in patients:
        assert len(await tasks_of(app, pid)) == 2


async def test_a_closed_item_does_not_come_back_in_its_period(
        app: Any, client: httpx.AsyncClient, patients: list[str]) -> None:
    pid = patients[0]
    await build(app.state.db, as_of=AS_OF, patients=[pid])
    [row] = (await w.item_rows(app, pid))[("no-plan", pid)]
    done = await client.post(f"/Task/{row.task_id}/$complete", json={
        "resourceType": "Parameters",
        "parameter": [{"name": "outcome", "valueString": "Plan drafted, meeting booked"}]})
    assert done.status_code == 200, done.text
    again = await build(app.state.db, as_of=AS_OF, patients=[pid])
    assert again.created == 0
    assert [r.status for r in (await w.item_rows(app, pid))[("no-plan", pid)]] == ["completed"]
    # the next quarter is a new period: the still unplanned patient is raised again
    later = await build(app.state.db, as_of=AS_OF.replace(month=10), patients=[pid])
    assert later.created == 1
    periods = sorted(r.period for r in (await w.item_rows(app, pid))[("no-plan", pid)])
    assert periods == ["2026-Q3", "2026-Q4"]
