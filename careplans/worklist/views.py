"""The case manager's views of the worklists: queries over `worklist_item` (what they sort
and filter on) joined to the Tasks themselves, filtered by the caller's access in SQL.

Ordering of every list: overdue first, then priority (stat, asap, urgent, routine), then due
date, then oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from careplans.worklist.models import WorklistItem
from fhir.schema import resource, sp_reference

items = WorklistItem.__table__
LIMIT = 500


def _ordered(query: sa.Select, on: date) -> sa.Select:
    overdue = sa.case((items.c.due < on.isoformat(), 0), else_=1)
    return query.order_by(overdue, items.c.priority_rank, items.c.due, items.c.created,
                          items.c.task_id)


async def tasks(conn: AsyncConnection, where: list[sa.ColumnElement], on: date,
                visible: Any, limit: int = LIMIT, offset: int = 0) -> list[tuple[str, str]]:
    """(patient id, Task JSON text) of the open items matching `where`, in worklist order
    (`limit` of them after the first `offset`)."""
    query = (sa.select(resource.c.patient_id, sa.cast(resource.c.content, sa.Text))
             .join_from(items, resource, sa.and_(resource.c.type == "Task",
                                                 resource.c.id == items.c.task_id))
             .where(items.c.open.is_(True), resource.c.deleted.is_(False), *where))
    if visible is not None:
        query = query.where(visible(resource, "Task"))
    return [(p, c) for p, c in await conn.execute(
        _ordered(query, on).limit(limit).offset(offset))]


def mine(references: frozenset[str]) -> list[sa.ColumnElement]:
    return [items.c.owner.in_(sorted(r for r in references
                                     if r.startswith(("PractitionerRole/", "CareTeam/"))))]


def unassigned(teams: list[str]) -> list[sa.ColumnElement]:
    return [items.c.owner.is_(None), items.c.team.in_(teams)]


async def member_practices(conn: AsyncConnection, orgs: list[str]) -> list[str]:
    """The Organizations that are part of any of `orgs` (a network's practices)."""
    if not orgs:
        return []
    rows = await conn.execute(
        sa.select(resource.c.id).join_from(resource, sp_reference,
                                           sp_reference.c.rid == resource.c.rid)
        .where(resource.c.type == "Organization", resource.c.deleted.is_(False),
               sp_reference.c.param == "partof", sp_reference.c.target_type == "Organization",
               sp_reference.c.target_id.in_(orgs)))
    return list(rows.scalars())


def practice(org_id: str) -> list[sa.ColumnElement]:
    return [items.c.team == org_id]


@dataclass(slots=True)
class Load:
    open: int = 0
    overdue: int = 0
    completed_this_week: int = 0


async def caseload(conn: AsyncConnection, on: date, by: str,
                   team: str | None = None) -> dict[str, Load]:
    """Per owner (`by` = "owner") or per practice (`by` = "team"): open items, overdue open
    items, and items completed this week (Monday to `on`)."""
    column = items.c.owner if by == "owner" else items.c.team
    monday = (on - timedelta(days=on.weekday())).isoformat()
    query = sa.select(
        column,
        sa.func.sum(sa.case((items.c.open.is_(True), 1), else_=0)),
        sa.func.sum(sa.case((sa.and_(items.c.open.is_(True), items.c.due < on.isoformat()),
                             1), else_=0)),
        sa.func.sum(sa.case((sa.and_(items.c.status == "completed",
                                     items.c.done_on >= monday,
                                     items.c.done_on <= on.isoformat()), 1), else_=0)),
    ).where(column.is_not(None)).group_by(column)
    if team is not None:
        query = query.where(items.c.team == team)
    return {key: Load(int(o or 0), int(d or 0), int(c or 0))
            for key, o, d, c in await conn.execute(query)}


async def mdt(conn: AsyncConnection, team: str, on: date, visible: Any
              ) -> list[tuple[str, list[str]]]:
    """The patients of practice `team` due for discussion at an MDT meeting on `on`: those
    with an open item due by then, most pressing first; with the reasons (item descriptions)."""
    found = await tasks(conn, [items.c.team == team, items.c.due <= on.isoformat()], on,
                        visible, limit=5000)
    order: list[str] = []
    reasons: dict[str, list[str]] = {}
    for pid, content in found:
        if pid not in reasons:
            order.append(pid)
            reasons[pid] = []
        reasons[pid].append(str(orjson.loads(content).get("description", "")))
    return [(pid, reasons[pid]) for pid in order]
