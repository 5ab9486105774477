"""Case management worklists over HTTP (careplans/worklist/; README "Worklists").

Working an item (each a new version of the Task through the normal write path, so access
control, the Task write rule (state machine, item row) and the audit all apply):
`POST Task/[id]/$claim`, `$assign` (owner), `$start`, `$complete` (outcome), `$defer` (due,
reason), `$escalate` (owner, reason), `$cancel` (reason); inputs as a FHIR `Parameters` body.

Views (searchset Bundles of Tasks in worklist order, filtered by what the caller may see,
`_count` (20) a page with a `next` link while more follow):
`GET Task/$my-worklist[?date=]`, `GET Task/$team-unassigned[?date=]`,
`GET Organization/[id]/$worklist[?date=]`; `GET Organization/[id]/$mdt-list?date=` (a List of
the patients due for discussion), `GET Organization/[id]/$caseload[?date=]` (a Parameters
per case manager and for the practice); `GET MeasureReport/$worklist-indicators[?practice=]
[&date=]` (the quality indicators, indicators.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from api.access import AccessDep
from api.deps import DbDep, SettingsDep
from api.http import (
    FHIR_PREFIX,
    base_url,
    check_accept,
    fhir_response,
    read_json,
    resource_response,
)
from careplans.worklist import events, indicators, states, tasks, views
from consent.principals import Kind
from fhir import capability, interactions
from fhir.errors import BadRequest, Forbidden, Unprocessable
from fhir.schema import resource

router = APIRouter()
OPERATION = "https://carenet.invalid/fhir/OperationDefinition/"
ACTIONS = ("claim", "assign", "start", "complete", "defer", "escalate", "cancel")


def install(app: FastAPI) -> None:
    """The worklist routes (before the generic [type]/[id] ones) and write rules."""
    events.register_rules()
    for action in ACTIONS:
        capability.add_operation("Task", action, OPERATION + f"worklist-{action}")
    app.include_router(router, prefix=FHIR_PREFIX, dependencies=[Depends(check_accept)])


def _param(body: Any, name: str) -> str | None:
    """The value of input `name` of a Parameters body (string, code, date or reference)."""
    if body is None:
        return None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("Send the inputs as a FHIR Parameters resource.")
    for p in body.get("parameter") or ():
        if isinstance(p, dict) and p.get("name") == name:
            for key in ("valueString", "valueCode", "valueDate", "valueMarkdown"):
                if isinstance(p.get(key), str):
                    return p[key]
            ref = p.get("valueReference")
            if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
                return ref["reference"]
            raise Unprocessable(f"Parameter '{name}' has no value this operation reads.")
    return None


def _me(access: Any) -> str | None:
    return next((r for r in access.principal.identities if r.startswith("PractitionerRole/")),
                None)


def _action(name: str, body: Any, me: str | None) -> Callable[[dict], dict]:
    if name in ("claim", "start") and me is None:
        raise Unprocessable(f"${name} is for a member of staff acting in a PractitionerRole.")
    reason = _param(body, "reason")
    return {
        "claim": lambda t: states.claim(t, str(me)),
        "assign": lambda t: states.assign(t, _param(body, "owner"), me),
        "start": lambda t: states.start(t, str(me)),
        "complete": lambda t: states.complete(t, _param(body, "outcome"), me),
        "defer": lambda t: states.defer(t, _param(body, "due"), reason, me),
        "escalate": lambda t: states.escalate(t, _param(body, "owner"), reason, me),
        "cancel": lambda t: states.cancel(t, reason, me),
    }[name]


@router.post("/Task/{id_}/${action}")
async def work(id_: str, action: str, request: Request, db: DbDep, settings: SettingsDep,
               access: AccessDep) -> Response:
    """Task/[id]/$claim ... $cancel: one step of the item's state machine."""
    if action not in ACTIONS:
        raise BadRequest(f"Task has no operation ${action}; the worklist operations are "
                         + ", ".join(f"${a}" for a in ACTIONS) + ".")
    raw = await request.body()
    body = await read_json(request, settings.max_body_bytes) if raw.strip() else None
    step = _action(action, body, _me(access))
    access.scope_context("Task", "update")
    async with db.write() as conn, access.guarding(conn, write=True):
        stored = await interactions.read(conn, "Task", id_)  # 404 unknown or unseen
        assert stored.content is not None
        task = orjson.loads(stored.content)
        if tasks.item_key(task) is None:
            raise Unprocessable(f"Task/{id_} is not a worklist item.")
        new = step(task)
        result = await interactions.update(conn, "Task", id_, new, stored.version)
    assert result.stored is not None
    return resource_response(request, result.stored, 200)


def _day(request: Request) -> date:
    text = request.query_params.get("date")
    if not text:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"date '{text}' is not a date; give it as YYYY-MM-DD.",
                         expression="date") from None


PAGE = 20  # items per page of a worklist view (`_count`, at most views.LIMIT)


def _paging(request: Request) -> tuple[int, int]:
    try:
        count = int(request.query_params.get("_count", PAGE))
        offset = int(request.query_params.get("_offset", 0))
    except ValueError:
        raise BadRequest("_count and _offset are whole numbers.") from None
    if not 1 <= count <= views.LIMIT or offset < 0:
        raise BadRequest(f"_count is 1 to {views.LIMIT}, and _offset 0 or more.")
    return count, offset


async def _bundle(request: Request, db: Any, access: Any, where: Callable[[], list]) -> Response:
    """A page of worklist items as a searchset Bundle; `next` while more follow (offset
    paging: the list is a working view, re-read as it changes)."""
    on = _day(request)
    count, offset = _paging(request)
    access.scope_context("Task", "search")
    async with db.read() as conn, access.guarding(conn, search=True) as guard:
        found = await views.tasks(conn, where(), on, guard.visible, count + 1, offset)
    more, found = len(found) > count, found[:count]
    base = base_url(request)
    entries = []
    for pid, content in found:
        if pid:
            access.patients.add(pid)
        task = orjson.loads(content)
        entries.append({"fullUrl": f"{base}/Task/{task['id']}", "resource": task,
                        "search": {"mode": "match"}})
    links = [{"relation": "self", "url": str(request.url)}]
    if more:
        links.append({"relation": "next", "url": str(request.url.include_query_params(
            _count=count, _offset=offset + count))})
    bundle = {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}
    return fhir_response(orjson.dumps(bundle))


@router.get("/Task/$my-worklist")
async def my_worklist(request: Request, db: DbDep, access: AccessDep) -> Response:
    """The caller's open items (owner = their PractitionerRole), in worklist order."""
    return await _bundle(request, db, access, lambda: views.mine(access.principal.persons))


@router.get("/Task/$team-unassigned")
async def team_unassigned(request: Request, db: DbDep, access: AccessDep) -> Response:
    """Open items that nobody owns yet of the caller's practice, or of the practices of the
    caller's network (Organization.partOf: network case managers work for several)."""
    mine = [o.partition("/")[2] for o in access.principal.organizations]
    async with db.read() as conn:
        teams = mine + await views.member_practices(conn, mine)
    return await _bundle(request, db, access, lambda: views.unassigned(teams))


@router.get("/Organization/{id_}/$worklist")
async def practice_worklist(id_: str, request: Request, db: DbDep,
                            access: AccessDep) -> Response:
    """A practice's open items."""
    return await _bundle(request, db, access, lambda: views.practice(id_))


@router.get("/Organization/{id_}/$mdt-list")
async def mdt_list(id_: str, request: Request, db: DbDep, access: AccessDep) -> Response:
    """The List of the practice's patients due for discussion at the MDT meeting on `date`."""
    on = _day(request)
    access.scope_context("Task", "search")
    async with db.read() as conn, access.guarding(conn, search=True) as guard:
        await interactions.read(conn, "Organization", id_)
        found = await views.mdt(conn, id_, on, guard.visible)
    access.patients.update(pid for pid, _ in found if pid)
    listed = {
        "resourceType": "List", "status": "current", "mode": "snapshot",
        "title": f"MDT meeting {on.isoformat()}", "date": on.isoformat(),
        "code": {"text": "Patients due for discussion at the multidisciplinary team meeting"},
        "source": {"reference": f"Organization/{id_}"},
        "entry": [{"item": {"reference": f"Patient/{pid}"},
                   "flag": {"text": "; ".join(reasons)}} for pid, reasons in found],
    }
    if not found:
        listed["emptyReason"] = {"text": "No patient has an item due by this date."}
        del listed["entry"]
    return fhir_response(orjson.dumps(listed))


@router.get("/Organization/{id_}/$caseload")
async def caseload(id_: str, request: Request, db: DbDep, access: AccessDep) -> Response:
    """Open, overdue and completed-this-week items per case manager of the practice, and for
    the practice as a whole."""
    on = _day(request)
    access.scope_context("Task", "search")
    async with db.read() as conn, access.guarding(conn, search=True):
        await interactions.read(conn, "Organization", id_)
        people = await views.caseload(conn, on, "owner", team=id_)
        whole = await views.caseload(conn, on, "team", team=id_)

    def part(name: str, ref: str, load: views.Load) -> dict[str, Any]:
        return {"name": name, "part": [
            {"name": "owner" if name == "caseManager" else "practice",
             "valueReference": {"reference": ref}},
            {"name": "open", "valueInteger": load.open},
            {"name": "overdue", "valueInteger": load.overdue},
            {"name": "completedThisWeek", "valueInteger": load.completed_this_week}]}

    body = {"resourceType": "Parameters", "parameter": [
        part("practice", f"Organization/{id_}", whole.get(id_, views.Load())),
        *(part("caseManager", owner, load) for owner, load in sorted(people.items()))]}
    return fhir_response(orjson.dumps(body))


@router.get("/MeasureReport/$worklist-indicators")
async def worklist_indicators(request: Request, db: DbDep, access: AccessDep) -> Response:
    """The quality indicators (careplans/worklist/indicators.py) of the network, or of one
    practice (`practice` = Organization id), as of `date`: a collection of MeasureReports.
    Counts are aggregates; the drill-down Lists name only patients the caller may see."""
    on = _day(request)
    practice = request.query_params.get("practice")
    if practice is not None:
        practice = practice.removeprefix("Organization/")
    if access.principal.kind not in (Kind.STAFF, Kind.SYSTEM):
        raise Forbidden("Quality indicators are for the network's staff and services.")
    access.scope_context("Patient", "search")
    async with db.read() as conn, access.guarding(conn, search=True) as guard:
        if practice is not None:
            await interactions.read(conn, "Organization", practice)
        found = await indicators.compute(conn, practice, on)
        people = sorted({p for i in found if i.code != "follow-up-in-2-days"
                         for p in i.population})
        visible: set[str] = set()
        for start in range(0, len(people), 5000):
            rows = await conn.execute(sa.select(resource.c.id).where(
                resource.c.type == "Patient", resource.c.id.in_(people[start:start + 5000]),
                guard.visible(resource, "Patient")))
            visible.update(rows.scalars())
    reports = [indicators.report(i, practice, on, visible) for i in found]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": rep} for rep in reports]}
    return fhir_response(orjson.dumps(bundle))
