"""Running a parsed search: one page of matches, its includes, the total and the next cursor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir import pending
from fhir.errors import BadRequest
from fhir.schema import resource
from fhir.search import include, paging, sql
from fhir.search.params import SearchQuery, parse
from fhir.visibility import Visibility, conditions

Row = tuple[int, str, str, str]  # rid, type, id, content


@dataclass(slots=True)
class Page:
    matches: list[Row]
    included: list[Row]
    total: int | None
    next: paging.Cursor | None
    previous: paging.Cursor | None = None  # the page before ends before this (a backward cursor)


def where(query: SearchQuery, extra: list[Any] | None = None) -> list[Any]:
    """The matches: of the type, current, meeting every condition, and visible to the caller
    (`query.visible`), so what is paged, counted and included from is what it may see."""
    return [resource.c.type == query.type, resource.c.deleted.is_(False), *query.conditions,
            *conditions(query.visible, resource, query.type), *(extra or [])]


async def count(conn: AsyncConnection, query: SearchQuery, extra: list[Any] | None = None) -> int:
    await pending.settle(conn)
    stmt = sa.select(sa.func.count()).select_from(resource).where(*where(query, extra))
    return int(await sql.scalar(conn, stmt))


async def run(conn: AsyncConnection, query: SearchQuery,
              extra: list[Any] | None = None) -> Page:
    """One page of `query` (plus `extra` conditions, e.g. a compartment)."""
    await pending.settle(conn)
    if query.summary == "count" or query.count == 0:
        return Page([], [], await count(conn, query, extra), None)
    exprs = [paging.key_expression(k, resource, i) for i, k in enumerate(query.sort)]
    # A previous page is read backwards from the cursor (rows before it, last first) and
    # turned round; like `next`, it stays right while other clients write.
    backward = query.backward and query.cursor is not None
    stmt = (sa.select(resource.c.rid, resource.c.type, resource.c.id, resource.c.content, *exprs)
            .where(*where(query, extra))
            .order_by(*paging.order_by(query.sort, exprs, resource, reverse=backward))
            .limit(query.count + 1))
    if query.cursor is not None:
        stmt = stmt.where(paging.after(query.sort, exprs, resource, query.cursor,
                                       reverse=backward))
    rows = list(await sql.fetch_all(conn, stmt))
    more = len(rows) > query.count
    rows = rows[: query.count]
    if backward:
        rows.reverse()

    def key(row: Any) -> paging.Cursor:
        return [*row[4:], row[0]]

    if backward:  # the page it came from follows this one
        cursor = key(rows[-1]) if rows else None
        previous = key(rows[0]) if more else None
    else:
        cursor = key(rows[-1]) if more else None
        previous = key(rows[0]) if query.cursor is not None and rows else None
    matches: list[Row] = [tuple(r[:4]) for r in rows]  # type: ignore[misc]
    if query.total in ("accurate", "estimate"):
        total: int | None = await count(conn, query, extra)
    elif query.total is None and query.cursor is None and cursor is None:
        total = len(matches)  # the whole result is this page: the total costs nothing
    else:
        total = None
    included = await include.collect(conn, query, matches)
    return Page(matches, included, total, cursor, previous)


async def match_ids(conn: AsyncConnection, type_: str, params: list[tuple[str, str]],
                    limit: int = 2, *, visible: Visibility | None = None) -> list[str]:
    """Ids of up to `limit` current resources matching a conditional query (strict parsing),
    among those `visible` lets the caller see."""
    if not params:
        raise BadRequest("A conditional request needs at least one search parameter.")
    query = parse(type_, params, visible=visible)
    await pending.settle(conn)
    if not query.conditions:
        raise BadRequest("A conditional request needs at least one search criterion.")
    stmt = sa.select(resource.c.id).where(*where(query)).order_by(resource.c.rid).limit(limit)
    return [row[0] for row in await sql.fetch_all(conn, stmt)]
