"""Slot/$find: the free slots of a kind of service, in a date range, near a place, soonest
first, in one request (an operation of this server: the same question as the chained search
`Slot?status=free&start=..&schedule.actor:HealthcareService.service-type=..&schedule.actor:
Location.near=..&_sort=start`, answered in two index-driven steps).

Parameters (GET, each at most once but `service-type` and `specialty`, which OR their
comma-separated values as in search):
- `service-type`, `specialty`: tokens (system|code) of the diaries (`Schedule.serviceType`,
  `Schedule.specialty`);
- `near`: `lat|long[|distance[|units]]` of the diary's Location (fhir/search/near.py);
- `start`, `end`: the slot starts at or after `start` (default: now) and before `end`
  (default: 14 days after `start`; at most MAX_DAYS after it), dates or instants;
- `_count`: how many slots (default 10, at most 100).
The answer is a searchset Bundle: the free Slots (mode match) by start time, then their
Schedules and the Schedules' actors, the HealthcareService, PractitionerRole and Location
(mode include). There is no next page: ask again from the last slot's start.

Why an operation as well as the chained search: a general plan for the chain cannot know that
the diaries of a service type near a place are few, and on a network database it joins every
free slot of the network against them; here the diaries are found first (a search of
Schedule, through its own index), and then only their slots are read (by the reference
index), the free ones kept by the slot's own status.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir import pending
from fhir.dates import BadDate, date_range
from fhir.errors import BadRequest
from fhir.schema import INDEX_TABLES, resource
from fhir.search import execute, include, near, sql
from fhir.search.params import Include, SearchQuery
from fhir.visibility import Visibility, conditions

DEFAULT_COUNT = 10
MAX_COUNT = 100
DEFAULT_DAYS = 14
MAX_DAYS = 92
MAX_SCHEDULES = 500
PARAMS = ("service-type", "specialty", "near", "start", "end", "_count")


@dataclass(slots=True)
class FindQuery:
    schedule_params: list[tuple[str, str]]
    start: float
    end: float
    count: int = DEFAULT_COUNT
    accepted: list[tuple[str, str]] = field(default_factory=list)
    visible: Visibility | None = None

    def search_query(self) -> SearchQuery:
        """The query `fhir.bundles.searchset` writes the answer with (self link, includes)."""
        query = SearchQuery(type="Slot", count=self.count, accepted=list(self.accepted),
                            visible=self.visible, path="Slot/$find")
        query.include = [Include("Slot", "schedule", "Schedule", False),
                         Include("Schedule", "actor", None, True)]
        return query

    def link(self) -> str:
        return self.search_query().link()


def _instant(name: str, value: str, high: bool) -> float:
    try:
        lo, hi = date_range(value)
    except BadDate as exc:
        raise BadRequest(f"Slot/$find: '{name}' {exc}.") from None
    return hi if high else lo


def parse(params: list[tuple[str, str]], *, visible: Visibility | None) -> FindQuery:
    """The query of Slot/$find, or a 400 saying what it takes."""
    seen: dict[str, str] = {}
    schedule: list[tuple[str, str]] = []
    for name, value in params:
        if name in ("_format", "_pretty"):
            continue
        if name not in PARAMS:
            raise BadRequest(f"Slot/$find does not take '{name}'; it takes "
                             f"{', '.join(PARAMS)}.")
        if not value:
            raise BadRequest(f"Slot/$find: '{name}' is empty.")
        if name in seen and name not in ("service-type", "specialty"):
            raise BadRequest(f"Slot/$find takes '{name}' once.")
        seen[name] = value
        if name in ("service-type", "specialty"):
            schedule.append((name, value))
        elif name == "near":
            near.parse("near", value)  # the 400s of a bad position, now
            schedule.append(("actor:Location.near", value))
    start = _instant("start", seen["start"], False) if "start" in seen else time.time()
    end = (_instant("end", seen["end"], False) if "end" in seen
           else start + DEFAULT_DAYS * 86400)
    if end <= start:
        raise BadRequest("Slot/$find: 'end' must be after 'start'.")
    if end - start > MAX_DAYS * 86400:
        raise BadRequest(f"Slot/$find looks at most {MAX_DAYS} days ahead at a time; narrow "
                         "'start' and 'end'.")
    count = DEFAULT_COUNT
    if "_count" in seen:
        text = seen["_count"]
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_COUNT:
            raise BadRequest(f"Slot/$find: _count must be a whole number from 1 to {MAX_COUNT}.")
        count = int(text)
    accepted = [(k, v) for k, v in params if k in PARAMS and k != "_count"]
    return FindQuery(schedule, start, end, count, accepted, visible)


async def run(conn: AsyncConnection, query: FindQuery) -> execute.Page:
    """The free slots (and their diaries, services, roles and places) that `query` asks for,
    among what the caller may see."""
    await pending.settle(conn)
    schedules: list[str] | None = None
    if query.schedule_params:
        schedules = await execute.match_ids(conn, "Schedule", query.schedule_params,
                                            limit=MAX_SCHEDULES, visible=query.visible)
        if not schedules:
            return execute.Page([], [], 0, None)
    # Driven from the diaries' slots (the reference index) or, without diaries, from the
    # slots' start dates; the start of each slot is read by its row id (a correlated
    # sub-select), so no plan can join every start date against every slot (estimates of
    # freshly written rows are often far off).
    ref = INDEX_TABLES["reference"].alias("find_ref")
    dates = INDEX_TABLES["date"].alias("find_start")
    slot = resource
    start = (sa.select(sa.func.min(dates.c.lo))
             .where(dates.c.rid == slot.c.rid, dates.c.param == "start").scalar_subquery())
    where = [slot.c.type == "Slot", slot.c.deleted.is_(False),
             slot.c.content["status"].as_string() == "free",
             start >= query.start, start < query.end,
             *conditions(query.visible, slot, "Slot")]
    if schedules is not None:
        source: Any = ref.join(slot, slot.c.rid == ref.c.rid)
        where += [ref.c.param == "schedule", ref.c.target_type == "Schedule",
                  ref.c.target_id.in_(schedules)]
    else:
        source = slot
        where.append(slot.c.rid.in_(sa.select(dates.c.rid).where(
            dates.c.param == "start", dates.c.lo >= query.start, dates.c.lo < query.end)))
    stmt = (sa.select(slot.c.rid, slot.c.type, slot.c.id, slot.c.content)
            .select_from(source).where(*where)
            .order_by(start, slot.c.rid).limit(query.count))
    matches = [tuple(r) for r in await sql.fetch_all(conn, stmt)]
    included = await include.collect(conn, query.search_query(), matches)  # type: ignore[arg-type]
    return execute.Page(matches, included, None, None)  # type: ignore[arg-type]
