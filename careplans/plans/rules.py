"""The write rule of CarePlan (`fhir.writerules`): what every write of an anticipatory care
plan goes through, whichever route it takes (create, update, patch, a Bundle entry).

- prepare: a plan written by a patient or carer is refused (they add to a plan with
  `CarePlan/[id]/$contribute`, which never touches its clinical content); the narrative is
  regenerated from the structure (narrative.py);
- check (after access control, in the write's transaction): the lifecycle and the rules of
  validation.py, and one active anticipatory plan per patient.

One active plan per patient holds under concurrency: on PostgreSQL the check takes a
transaction-scoped advisory lock on the patient first
(https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS), so of two
transactions activating plans for the same patient the second waits for the first to commit
and then sees its plan; SQLite has one writer at a time (fhir/db.py) and needs no lock.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import sqlalchemy as sa

from careplans.plans import model, validation
from careplans.plans.narrative import narrative
from fhir import guard, pending, search
from fhir.errors import Conflict, Forbidden, Unprocessable
from fhir.schema import resource
from fhir.store import Stored

PATIENT_REFUSED = (
    "Patients and carers cannot change a care plan's clinical content (its activities, goals, "
    "care coordinator, contingency plan or treatment preferences). Add what matters to you, "
    "or a comment, with POST CarePlan/[id]/$contribute; your care coordinator changes the "
    "rest with you.")


def _lock_key(patient_id: str) -> int:
    """A signed 64-bit advisory lock key for 'the anticipatory plans of this patient'."""
    digest = hashlib.sha256(f"carenet:anticipatory-plan:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def other_active(conn: Any, patient_id: str, plan_id: str | None) -> list[str]:
    """Ids of the patient's active anticipatory plans other than `plan_id` (all of them,
    whoever may see them: the rule is about the record, not the caller)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(patient_id))))
    wanted = model.codes()["category"]
    with guard.guarding(None):
        ids = await search.match_ids(conn, "CarePlan", [
            ("patient", f"Patient/{patient_id}"), ("status", "active"),
            ("category", f"{wanted.system}|{wanted.code}")], limit=5)
    return [i for i in ids if i != plan_id]


async def check_what_matters(conn: Any, plan: dict[str, Any]) -> None:
    """422 if a goal marked as what matters to the person is a Goal someone else expressed
    (the mark says "the person's own words"; a Goal not stored yet is not judged here)."""
    marked = {ref["reference"].partition("/")[2]: i
              for i, ref in enumerate(plan.get("goal") or ())
              if ref in model.what_matters_goals(plan) and model.ref_type(ref) == "Goal"}
    if not marked:
        return
    await pending.settle(conn)
    rows = await conn.execute(sa.select(resource.c.id, resource.c.content).where(
        resource.c.type == "Goal", resource.c.id.in_(sorted(marked)),
        resource.c.deleted.is_(False)))
    for id_, content in rows:
        goal = orjson.loads(content) if isinstance(content, (str, bytes)) else content
        if model.ref_type(goal.get("expressedBy")) not in model.PERSON_TYPES:
            raise Unprocessable(
                f"Goal/{id_} is marked as what matters to the person, but the person did not "
                "express it (its Goal.expressedBy is not the patient or their carer). Mark "
                "only their own words; clinical goals go without the mark.",
                expression=f"CarePlan.goal[{marked[id_]}]")


class CarePlanRule:
    """fhir.writerules.WriteRule for CarePlan."""

    def prepare(self, body: dict[str, Any]) -> None:
        if not model.is_anticipatory(body):
            return
        source = str((body.get("meta") or {}).get("source") or "")
        if source.partition("/")[0] in model.PERSON_TYPES:
            raise Forbidden(PATIENT_REFUSED)
        body["text"] = narrative(body)

    async def check(self, conn: Any, interaction: str, body: dict[str, Any] | None,
                    patient_id: str | None, current: Stored | None) -> None:
        old = (orjson.loads(current.content)
               if current is not None and current.content and not current.deleted else None)
        if not (model.is_anticipatory(body) or model.is_anticipatory(old)):
            return
        validation.check(old, body)
        if body is not None:
            await check_what_matters(conn, body)
        if body is None or body.get("status") != "active" or patient_id is None:
            return
        others = await other_active(conn, patient_id, body.get("id"))
        if others:
            raise Conflict(
                f"Patient/{patient_id} already has an active anticipatory care plan "
                f"(CarePlan/{others[0]}). A patient has one active plan at a time: revise "
                "that plan (each change is a new version), or complete or revoke it before "
                "making this one active.", expression="CarePlan.status")


RULE = CarePlanRule()
