"""Building the worklists: the record's state in, one Task per (rule, patient, period) out.

1. Read the facts set-based (facts.py) for the whole list or the patients of some events,
   and decide per patient (triggers.py) which items the record calls for.
2. New items: INSERT into `worklist_item` ... ON CONFLICT DO NOTHING RETURNING, sorted by
   key (so concurrent builds lock in the same order and cannot deadlock); only the rows this
   transaction inserted come back, and only for those it writes a Task (with the id the row
   names), in the same transaction. Of several builds at once, the database's unique key
   decides which creates an item; a closed item keeps its key, so it never comes back for
   the same period.
3. Open items the record no longer calls for: UPDATE ... WHERE open RETURNING (again, only
   one build wins each) and a new version of the Task, completed or cancelled with its
   `statusReason`.
Tasks are written through the store as the network's worklist service (`insert_many`,
`replace`: versioned, indexed) and audited in the same transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from careplans.worklist import facts as record
from careplans.worklist import tasks
from careplans.worklist.models import WorklistItem
from careplans.worklist.rules import rank, rules
from careplans.worklist.triggers import Closing, Wanted, closing_for, evaluate
from consent import audit
from consent.principals import Kind, Principal
from fhir import store
from fhir.db import Database
from fhir.guard import guarding
from fhir.index import compartment_patient, extract
from fhir.registry import registry

items = WorklistItem.__table__
WORKLIST = Principal(Kind.SYSTEM, user="Device/carenet-worklist",
                     scopes=frozenset({"system/*.rs", "system/Task.cu"}),
                     client_id="carenet-worklist")
CHUNK = 1000  # items written per transaction


@dataclass(slots=True)
class Built:
    considered: int = 0  # patients with anything a rule looks at
    created: int = 0
    closed: int = 0
    open: int = 0  # open items after the build (in its scope)


def _insert(dialect: str) -> sa.Insert:
    module = postgresql if dialect == "postgresql" else sqlite
    return (module.insert(items).on_conflict_do_nothing()
            .returning(items.c.rule, items.c.patient_id, items.c.period, items.c.task_id))


async def _open_items(conn: AsyncConnection, scope: Sequence[str] | None
                      ) -> dict[str, dict[tuple[str, str], str]]:
    query = sa.select(items.c.patient_id, items.c.rule, items.c.period,
                      items.c.task_id).where(items.c.open.is_(True))
    if scope is not None:
        query = query.where(items.c.patient_id.in_(scope))
    found: dict[str, dict[tuple[str, str], str]] = {}
    for pid, rule, period, task_id in await conn.execute(query):
        found.setdefault(pid, {})[(rule, period)] = task_id
    return found


async def plan(db: Database, as_of: date, scope: Sequence[str] | None
               ) -> tuple[list[Wanted], list[tuple[str, str, str, str, Closing]], int]:
    """What a build would do: the items wanted, the open items to close (rule, patient,
    period, task id, how), and how many patients it looked at."""
    async with db.read() as conn:
        held = await _open_items(conn, scope)
        follow = [period for open_ in held.values() for (rule, period) in open_
                  if rule == "ae-follow-up"]
        found = await record.load(conn, as_of, scope, follow)
    wanted: list[Wanted] = []
    closing: list[tuple[str, str, str, str, Closing]] = []
    for pid in sorted(set(found) | set(held)):
        mine = held.get(pid, {})
        want, ends = evaluate(pid, found[pid], as_of, mine) if pid in found else ([], {})
        wanted += want
        keep = {(w.rule, w.period) for w in want}
        for (rule, period), task_id in mine.items():
            if (rule, period) not in keep:
                closing.append((rule, pid, period, task_id, closing_for(rule, period, ends)))
    wanted = sorted({(w.rule, w.patient_id, w.period): w for w in wanted}.values(),
                    key=lambda w: (w.rule, w.patient_id, w.period))
    return wanted, closing, len(found)


async def create_items(conn: AsyncConnection, wanted: list[Wanted],
                       teams: dict[str, str]) -> int:
    """Insert the keys of `wanted` and write a Task for each key this transaction won."""
    if not wanted:
        return 0
    now = time.time()
    by_key = {(w.rule, w.patient_id, w.period): w for w in wanted}
    wanted = [by_key[k] for k in sorted(by_key)]  # one lock order for every build
    rows = [{"rule": w.rule, "patient_id": w.patient_id, "period": w.period,
             "task_id": str(uuid.uuid4()), "status": "requested", "open": True,
             "owner": w.owner, "team": teams.get(w.patient_id),
             "priority_rank": rank(rules()[w.rule].priority), "due": w.due.isoformat(),
             "created": now} for w in wanted]
    won = (await conn.execute(_insert(conn.dialect.name), rows)).all()
    if not won:
        return 0
    reg = registry()
    bodies = []
    for rule, pid, period, task_id in won:
        body = tasks.body(by_key[(rule, pid, period)], task_id, teams.get(pid))
        index = extract(body, reg)
        bodies.append((body, index, compartment_patient(body, reg, index["reference"])))
    with guarding(None):
        await store.insert_many(conn, bodies, method="POST")
    await audit.write(conn, [audit.AuditRecord(
        principal=WORKLIST, interaction="create", resource_type="Task",
        patient_ids=tuple(sorted({r[1] for r in won})), client_id=WORKLIST.client_id)])
    return len(won)


async def close_items(conn: AsyncConnection,
                      closing: list[tuple[str, str, str, str, Closing]]) -> int:
    """Close the open items of `closing` that are still open (another build may have)."""
    if not closing:
        return 0
    now = time.time()
    today = datetime.now(UTC).date().isoformat()
    done = 0
    patients: set[str] = set()
    for status in ("completed", "cancelled"):
        part = sorted(c for c in closing if c[4].status == status)
        if not part:
            continue
        won = set((await conn.execute(
            items.update().where(
                sa.tuple_(items.c.rule, items.c.patient_id, items.c.period).in_(
                    [(r, p, q) for r, p, q, _, _ in part]),
                items.c.open.is_(True))
            .values(open=False, status=status, closed=now,
                    done_on=today if status == "completed" else None)
            .returning(items.c.task_id))).scalars())
        for _rule, pid, _period, task_id, how in part:
            if task_id not in won:
                continue
            current = await store.read_current(conn, "Task", task_id, for_update=True)
            if current is None or current.deleted or current.content is None:
                continue
            with guarding(None):
                await store.replace(conn, current, tasks.close(
                    orjson.loads(current.content), how.status, how.reason), method="PUT")
            patients.add(pid)
            done += 1
    if patients:
        await audit.write(conn, [audit.AuditRecord(
            principal=WORKLIST, interaction="update", resource_type="Task",
            patient_ids=tuple(sorted(patients)), client_id=WORKLIST.client_id)])
    return done


async def build(db: Database, *, as_of: date, patients: Sequence[str] | None = None,
                progress: Callable[[int, int], None] | None = None) -> Built:
    """One build of the worklists (all patients, or only `patients`)."""
    scope = sorted(set(patients)) if patients is not None else None
    wanted, closing, considered = await plan(db, as_of, scope)
    result = Built(considered=considered)
    async with db.read() as conn:
        teams = await record.practices(conn, sorted({w.patient_id for w in wanted}))
    total = len(wanted) + len(closing)
    if progress:
        progress(0, total)
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start:start + CHUNK]
        async with db.write() as conn:
            result.created += await create_items(conn, part, teams)
        if progress:
            progress(len(part), total)
    for start in range(0, len(closing), CHUNK):
        part = closing[start:start + CHUNK]
        async with db.write() as conn:
            result.closed += await close_items(conn, part)
        if progress:
            progress(len(part), total)
    async with db.read() as conn:
        query = sa.select(sa.func.count()).select_from(items).where(items.c.open.is_(True))
        if scope is not None:
            query = query.where(items.c.patient_id.in_(scope))
        result.open = (await conn.execute(query)).scalar_one()
    return result
