"""What a draft care plan is built from: the parts of a patient's record the caller may see.

Reads go through the search machinery with the caller's visibility (`visible`, the request's
access guard), so a draft never shows what its requester could not read one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from careplans.plans import model
from fhir import pending
from fhir.schema import resource
from fhir.search import execute, parse
from fhir.visibility import Visibility

LIMIT = 500  # per type: a record with more active problems than this needs a human anyway


@dataclass(slots=True)
class Record:
    """The parts of one patient's record a draft plan starts from."""

    patient: dict[str, Any]
    conditions: list[dict[str, Any]] = field(default_factory=list)
    medicines: list[dict[str, Any]] = field(default_factory=list)
    risks: list[dict[str, Any]] = field(default_factory=list)
    care_teams: list[dict[str, Any]] = field(default_factory=list)
    plans: list[dict[str, Any]] = field(default_factory=list)
    goals: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → Goal
    # "Type/id" → the people and organisations the plan names (to write who they are)
    people: dict[str, dict[str, Any]] = field(default_factory=dict)


async def find(conn: AsyncConnection, type_: str, params: list[tuple[str, str]],
               visible: Visibility | None) -> list[dict[str, Any]]:
    """The current resources of `type_` matching `params` that `visible` shows."""
    query = parse(type_, params, visible=visible)
    await pending.settle(conn)
    stmt = (sa.select(resource.c.content).where(*execute.where(query))
            .order_by(resource.c.rid).limit(LIMIT))
    return [orjson.loads(c) if isinstance(c, (str, bytes)) else c
            for c in (await conn.execute(stmt)).scalars()]


async def gather(conn: AsyncConnection, patient: dict[str, Any],
                 visible: Visibility | None) -> Record:
    """The record of `patient` (already read, so seen by the caller) for a draft."""
    who = f"Patient/{patient['id']}"
    rec = Record(patient)
    rec.conditions = await find(conn, "Condition", [("patient", who),
                                                    ("clinical-status", "active")], visible)
    rec.medicines = (await find(conn, "MedicationRequest",
                                [("patient", who), ("status", "active")], visible)
                     + await find(conn, "MedicationStatement",
                                  [("patient", who), ("status", "active")], visible))
    # RiskAssessment has no status search parameter in R4: final ones are picked in draft.py.
    rec.risks = await find(conn, "RiskAssessment", [("patient", who)], visible)
    rec.care_teams = await find(conn, "CareTeam", [("patient", who), ("status", "active")],
                                visible)
    wanted = model.codes()["category"]
    rec.plans = await find(conn, "CarePlan", [("patient", who),
                                              ("category", f"{wanted.system}|{wanted.code}")],
                           visible)
    rec.goals = {g["id"]: g for g in await find(conn, "Goal", [("patient", who)], visible)}
    await _people(conn, rec, visible)
    return rec


PEOPLE = ("PractitionerRole", "Practitioner", "RelatedPerson", "Organization")


def _named(rec: Record) -> set[str]:
    """The references to people and organisations the care teams and earlier plans hold."""
    refs: list[Any] = []
    for team in rec.care_teams:
        refs += [p.get("member") for p in team.get("participant") or ()]
    for plan in rec.plans:
        refs.append(plan.get("author"))
        for activity in plan.get("activity") or ():
            refs += ((activity or {}).get("detail") or {}).get("performer") or []
    return {r["reference"] for r in refs if model.ref_type(r) in PEOPLE}


async def _people(conn: AsyncConnection, rec: Record, visible: Visibility | None) -> None:
    """Read whom the plan names, and a PractitionerRole's practitioner and organisation."""
    wanted = _named(rec)
    for type_ in PEOPLE:  # roles first: they name practitioners and organisations
        ids = sorted({r.partition("/")[2] for r in wanted if r.startswith(type_ + "/")}
                     - {k.partition("/")[2] for k in rec.people if k.startswith(type_ + "/")})
        for start in range(0, len(ids), 100):
            for found in await find(conn, type_, [("_id", ",".join(ids[start:start + 100]))],
                                    visible):
                rec.people[f"{type_}/{found['id']}"] = found
                for key in ("practitioner", "organization"):
                    if model.ref_type(found.get(key)) in PEOPLE:
                        wanted.add(found[key]["reference"])
