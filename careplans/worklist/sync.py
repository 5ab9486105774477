"""The write rule of Task (`fhir.writerules`): every write of a worklist Task, whatever the
route ($claim and the other operations, PUT, PATCH, a Bundle entry), follows the state
machine (states.py) and keeps its `worklist_item` row in step, in the write's transaction.

- create: a Task carrying the worklist identifier is refused (only the build makes items,
  so the unique key stays the one decision);
- update: the item's key (identifier) may not change; the status change must be one the
  state machine allows (409 otherwise); the row gets the Task's status, owner, priority and
  due date;
- delete: refused (cancel it with a reason instead: the item would otherwise come back).
Tasks without the worklist identifier are not touched.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from careplans.worklist import states, tasks
from careplans.worklist.models import WorklistItem
from careplans.worklist.rules import rank
from fhir.errors import Conflict, Unprocessable
from fhir.store import Stored

items = WorklistItem.__table__


class TaskRule:
    def prepare(self, body: dict[str, Any]) -> None:
        return None

    async def check(self, conn: Any, interaction: str, body: dict[str, Any] | None,
                    patient_id: str | None, current: Stored | None) -> None:
        old = orjson.loads(current.content) if current is not None and current.content \
            else None
        old_key = tasks.item_key(old) if old else None
        new_key = tasks.item_key(body) if body else None
        if old_key is None and new_key is None:
            return
        if interaction == "create" or old is None:
            raise Unprocessable("Worklist items are raised by the worklist build only; create "
                                "this Task without the worklist-item identifier.")
        if interaction == "delete" or body is None:
            raise Conflict("A worklist item is not deleted: cancel it with a reason "
                           "(POST Task/[id]/$cancel), or it would be raised again.")
        if new_key != old_key:
            raise Unprocessable("A worklist item's identifier (rule, patient, period) cannot "
                                "change.")
        status = str(body.get("status", ""))
        states.check_transition(str(old.get("status", "")), status)
        due = tasks.due_of(body) or tasks.due_of(old)
        closed = status in tasks.CLOSED
        rule, patient, period = old_key
        await conn.execute(items.update().where(
            items.c.rule == rule, items.c.patient_id == patient, items.c.period == period)
            .values(status=status, open=not closed,
                    owner=(body.get("owner") or {}).get("reference"),
                    priority_rank=rank(body.get("priority")),
                    due=due.isoformat() if due else "",
                    closed=time.time() if closed else None,
                    done_on=datetime.now(UTC).date().isoformat()
                    if status == "completed" else None))


RULE = TaskRule()
