"""The event-driven path: an emergency Encounter of a high-risk patient becomes a follow-up
item within seconds, through an outbox written with the Encounter; a crash between the write
and the item loses nothing and duplicates nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from careplans.worklist import build as builder
from careplans.worklist import events
from careplans.worklist.models import WorklistOutbox
from tests.careplans import worklist_support as w

outbox = WorklistOutbox.__table__


def today() -> Any:
    return datetime.now(UTC).date()


async def staged(app: Any, pid: str) -> int:
    async with app.state.db.read() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(outbox)
                                   .where(outbox.c.patient_id == pid))).scalar_one()


async def follow_ups(app: Any, pid: str, wait: float = 0.0) -> list[Any]:
    """The follow-up items of `pid`, polling up to `wait` seconds for one to appear."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        found = (await w.item_rows(app, pid)).get(("ae-follow-up", pid), [])
        if found or asyncio.get_running_loop().time() >= deadline:
            return found
        await asyncio.sleep(0.1)


@pytest.fixture
async def frail(client: httpx.AsyncClient, tag: str) -> str:
    t = await w.team(client, tag)
    pid = await w.patient(client, t)
    await w.risk(client, pid, "severe")
    return pid


async def test_an_ae_attendance_raises_the_follow_up_without_a_build(
        app: Any, client: httpx.AsyncClient, frail: str) -> None:
    ae = await w.encounter(client, frail, "EMER", today(), status="in-progress")
    [row] = await follow_ups(app, frail, wait=5.0)
    assert row.period == ae and row.open
    task = await w.task(client, row.task_id)
    assert task["focus"] == {"reference": f"Encounter/{ae}"}
    assert await staged(app, frail) == 0  # handled, and gone from the outbox


async def test_other_encounters_stage_nothing(app: Any, client: httpx.AsyncClient,
                                              frail: str) -> None:
    await w.encounter(client, frail, "AMB", today())
    assert await staged(app, frail) == 0


async def test_a_crash_between_the_write_and_the_item(
        app: Any, client: httpx.AsyncClient, frail: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The server died after the write committed: no worker runs (every app's worker of
    # this test session drains through events.drain, so none may; the test calls the real
    # one itself, as a restarted worker would).
    drain = events.drain

    async def dead(*args: Any, **kwargs: Any) -> int:
        return 0

    monkeypatch.setattr(events, "drain", dead)
    ae = await w.encounter(client, frail, "EMER", today())
    assert await staged(app, frail) == 1  # committed with the Encounter
    assert await follow_ups(app, frail, wait=1.0) == []

    real = builder.create_items

    async def dies(*args: Any, **kwargs: Any) -> int:
        await real(*args, **kwargs)
        raise RuntimeError("killed while writing the item")

    monkeypatch.setattr(builder, "create_items", dies)
    with pytest.raises(RuntimeError):
        await drain(app.state.db)  # its transaction rolls back
    monkeypatch.setattr(builder, "create_items", real)
    assert await staged(app, frail) == 1
    assert await follow_ups(app, frail) == []
    # two workers restart at once (say, two server processes): one item, once
    await asyncio.gather(drain(app.state.db), drain(app.state.db))
    [row] = await follow_ups(app, frail)
    assert row.period == ae
    assert await staged(app, frail) == 0
    monkeypatch.setattr(events, "drain", drain)  # the workers are back
    await asyncio.sleep(0.6)  # a poll of theirs: nothing more happens
    assert len(await follow_ups(app, frail)) == 1
