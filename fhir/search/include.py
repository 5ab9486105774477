"""`_include` and `_revinclude` (with :iterate): the resources a page points at or is pointed at by.

https://hl7.org/fhir/R4/search.html#include. Bounded: at most MAX_ITERATE rounds and
MAX_INCLUDED resources, so `_include:iterate=*` over a cyclic graph ends. Only rows the
query's caller may see (`SearchQuery.visible`) are included, or iterated from.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir.registry import registry
from fhir.schema import INDEX_TABLES, resource
from fhir.search import sql
from fhir.search.params import Include, SearchQuery
from fhir.visibility import Visibility, conditions

MAX_ITERATE = 3
MAX_INCLUDED = 1000
Row = tuple[int, str, str, str]  # rid, type, id, content


def _ref_params(source: str, include: Include) -> list[str]:
    if include.param == "*":
        return [sp.key for sp in registry().for_type(source).values() if sp.type == "reference"]
    return [include.param]


async def _forward(conn: AsyncConnection, frontier: list[Row], include: Include,
                   limit: int, visible: Visibility | None) -> list[Row]:
    rids = [r[0] for r in frontier if include.param == "*" or r[1] == include.source]
    if not rids:
        return []
    source_type = include.source
    ref = INDEX_TABLES["reference"].alias()
    target = resource.alias()
    stmt = (sa.select(target.c.rid, target.c.type, target.c.id, target.c.content)
            .select_from(ref.join(target, sa.and_(target.c.type == ref.c.target_type,
                                                  target.c.id == ref.c.target_id)))
            .where(ref.c.rid.in_(rids), target.c.deleted.is_(False),
                   *conditions(visible, target, include.target, read=True))
            .distinct().limit(limit))
    if include.param != "*":
        stmt = stmt.where(ref.c.param == include.param)
    else:
        params = {p for t in {r[1] for r in frontier} for p in
                  _ref_params(t, include)} or {source_type}
        stmt = stmt.where(ref.c.param.in_(sorted(params)))
    if include.target:
        stmt = stmt.where(target.c.type == include.target)
    return await sql.fetch_all(conn, stmt)  # type: ignore[return-value]


async def _reverse(conn: AsyncConnection, frontier: list[Row], include: Include,
                   limit: int, visible: Visibility | None) -> list[Row]:
    pairs = [(r[1], r[2]) for r in frontier
             if include.target is None or r[1] == include.target]
    if not pairs:
        return []
    ref = INDEX_TABLES["reference"].alias()
    source = resource.alias()
    stmt = (sa.select(source.c.rid, source.c.type, source.c.id, source.c.content)
            .select_from(ref.join(source, source.c.rid == ref.c.rid))
            .where(source.c.type == include.source, source.c.deleted.is_(False),
                   ref.c.param.in_(_ref_params(include.source, include)),
                   sa.tuple_(ref.c.target_type, ref.c.target_id).in_(pairs),
                   *conditions(visible, source, include.source, read=True))
            .distinct().limit(limit))
    return await sql.fetch_all(conn, stmt)  # type: ignore[return-value]


async def collect(conn: AsyncConnection, query: SearchQuery, matches: list[Row]) -> list[Row]:
    """The included resources for a page of `matches`, each once and none of the matches."""
    if not (query.include or query.revinclude) or not matches:
        return []
    seen = {r[0] for r in matches}
    out: list[Row] = []
    frontier = matches
    for round_ in range(MAX_ITERATE + 1):
        found: list[Row] = []
        for include in query.include:
            if round_ == 0 or include.iterate:
                found += await _forward(conn, frontier, include, MAX_INCLUDED - len(out),
                                        query.visible)
        for include in query.revinclude:
            if round_ == 0 or include.iterate:
                found += await _reverse(conn, frontier, include, MAX_INCLUDED - len(out),
                                        query.visible)
        fresh = []
        for row in found:
            if row[0] not in seen and len(out) < MAX_INCLUDED:
                seen.add(row[0])
                fresh.append(row)
                out.append(row)
        frontier = fresh
        if not fresh or len(out) >= MAX_INCLUDED:
            break
    return out



