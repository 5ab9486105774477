"""Event-driven worklist items: an outbox written with the change, a worker behind the request.

DESIGN.md "Events": an emergency Encounter (A&E attendance, emergency admission) is staged
in `worklist_outbox` by the Encounter write rule (`EncounterEvents`, fhir/writerules.py), in
the transaction of the write itself: one small INSERT, and nothing else on the request's
path. The worker (`Worker`, started with the application) takes staged events, rebuilds the
worklist of their patients (build.py, restricted to them) and deletes the events in the same
transaction as the items it writes. So:
- a crash after the write commits and before the worker acts loses nothing: the event is
  committed with the write, and handled when a worker (or `python -m careplans worklist
  build`) next drains the outbox;
- a crash while the worker acts rolls its transaction back: the events stay, and the item
  is created exactly once when they are handled again (the unique key of build.py decides);
- several workers at once (several server processes): each deletes the events it handles
  (DELETE ... RETURNING); an event another took comes back empty.
The write rule only looks at the body; whether the patient is high risk is the worker's
question, so the write never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from careplans.risk.admission import ADMISSION_CODES, AE_CODES
from careplans.worklist import build as builder
from careplans.worklist import facts as record
from careplans.worklist.models import WorklistOutbox
from fhir.db import Database
from fhir.store import Stored

log = logging.getLogger(__name__)
outbox = WorklistOutbox.__table__
_INSERT = outbox.insert()
BATCH = 200  # events handled per transaction
POLL_SECONDS = 0.5
_wake: set[asyncio.Event] = set()


def emergency(body: dict[str, Any]) -> bool:
    """An A&E attendance (class EMER or type 4525004) or an emergency admission (type
    183452005): the Encounters that can start a follow-up (rules.csv, ae-follow-up)."""
    if (body.get("class") or {}).get("code") == "EMER":
        return True
    wanted = AE_CODES | ADMISSION_CODES
    return any(c.get("code") in wanted for t in body.get("type") or () if isinstance(t, dict)
               for c in t.get("coding") or () if isinstance(c, dict))


class EncounterEvents:
    """The Encounter write rule: stage an outbox row for an emergency Encounter."""

    def prepare(self, body: dict[str, Any]) -> None:
        return None

    async def check(self, conn: Any, interaction: str, body: dict[str, Any] | None,
                    patient_id: str | None, current: Stored | None) -> None:
        if body is None or patient_id is None or not emergency(body):
            return
        await conn.execute(_INSERT, {"patient_id": patient_id, "created": time.time(),
                                     "reason": f"Encounter/{body.get('id', '')} {interaction}"})
        loop = asyncio.get_running_loop()
        for event in _wake:  # after the write's commit, most likely; else the next poll
            loop.call_later(0.02, event.set)


RULE = EncounterEvents()


def register_rules() -> None:
    """Plug the worklist's write rules into the store (fhir/writerules.py): the Task state
    machine and item sync, and the Encounter outbox. The server does it at start-up; so must
    any other process that writes Tasks or Encounters (the command line, benchmarks)."""
    from careplans.worklist import sync
    from fhir import writerules

    writerules.register("Task", sync.RULE)
    writerules.register("Encounter", RULE)


def today() -> date:
    return datetime.now(UTC).date()


async def drain(db: Database, *, as_of: date | None = None, limit: int = BATCH) -> int:
    """Handle every staged event (in batches); how many were handled by this call."""
    handled = 0
    while True:
        async with db.read() as conn:
            staged = (await conn.execute(sa.select(outbox.c.id, outbox.c.patient_id)
                                         .order_by(outbox.c.id).limit(limit))).all()
        if not staged:
            return handled
        day = as_of or today()
        patients = sorted({p for _, p in staged})
        wanted, closing, _ = await builder.plan(db, day, patients)
        async with db.read() as conn:
            teams = await record.practices(conn, patients)
        async with db.write() as conn:
            taken = (await conn.execute(outbox.delete().where(
                outbox.c.id.in_([i for i, _ in staged])).returning(outbox.c.patient_id)
            )).scalars().all()
            mine = set(taken)
            await builder.create_items(conn, [w for w in wanted if w.patient_id in mine], teams)
            await builder.close_items(conn, [c for c in closing if c[1] in mine])
        handled += len(taken)


class Worker:
    """Drains the outbox behind the requests: woken by the write rule, and every
    POLL_SECONDS in case a wake-up came before the write committed (or from another
    process)."""

    def __init__(self, db: Database, poll: float = POLL_SECONDS) -> None:
        self.db, self.poll = db, poll
        self.event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.failures = 0

    def start(self) -> None:
        if self.task is None:
            _wake.add(self.event)
            self.task = asyncio.create_task(self._run(), name="worklist-outbox")

    async def stop(self) -> None:
        _wake.discard(self.event)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), self.poll)
            self.event.clear()
            try:
                await drain(self.db)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the events stay staged; retried next poll
                self.failures += 1
                log.exception("worklist outbox: handling events failed (%d in a row); they "
                              "stay staged and are retried", self.failures)
                await asyncio.sleep(min(30.0, self.poll * 2 ** min(self.failures, 6)))
            else:
                self.failures = 0
