"""Working an item: the FHIR Task state machine and the case manager's actions (pure).

States and transitions after https://hl7.org/fhir/R4/task.html#statemachine: requested →
received/accepted → in-progress → completed, `on-hold` pauses, `cancelled`/`rejected`/
`failed` end it, `entered-in-error` from anywhere. One addition, documented in README.md: an
item handed to someone else (assign, escalate) goes back to `requested` for its new owner
to accept; and an item may be completed before it was started (the work was done, or the
build saw its purpose met). Closed items (completed, cancelled, failed, rejected,
entered-in-error) change no more.

Each action takes the current Task and returns the next one, or raises a FhirError with a
message a case manager understands (409 for a step the item's state does not allow, 422
for a missing or wrong input).
"""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

from careplans.worklist.rules import PRIORITIES
from careplans.worklist.tasks import CLOSED, business, due_of, now_instant
from fhir.errors import Conflict, Unprocessable

OPEN = ("requested", "received", "accepted", "ready", "in-progress", "on-hold")
NEXT: dict[str, frozenset[str]] = {
    "draft": frozenset({"requested", "cancelled"}),
    "requested": frozenset({"received", "accepted", "rejected", "ready", "completed",
                            "cancelled"}),
    "received": frozenset({"accepted", "rejected", "requested", "completed", "cancelled"}),
    "accepted": frozenset({"in-progress", "requested", "on-hold", "completed", "cancelled"}),
    "ready": frozenset({"in-progress", "requested", "completed", "cancelled"}),
    "in-progress": frozenset({"completed", "failed", "on-hold", "requested", "cancelled"}),
    "on-hold": frozenset({"in-progress", "accepted", "requested", "completed", "cancelled"}),
}
WORDS = {"requested": "new", "received": "received", "accepted": "claimed",
         "ready": "ready", "in-progress": "in progress", "on-hold": "on hold",
         "completed": "completed", "cancelled": "cancelled", "failed": "failed",
         "rejected": "rejected", "entered-in-error": "entered in error"}


def check_transition(old: str, new: str) -> None:
    """409 unless the state machine lets a Task go from `old` to `new`."""
    if old == new or new == "entered-in-error":
        return
    if old in CLOSED:
        raise Conflict(f"This item is already {WORDS.get(old, old)}: it cannot be changed "
                       "any more. If the need came back, the next worklist build raises a "
                       "new item.")
    if new not in NEXT.get(old, frozenset()):
        hint = " Claim it first ($claim)." if new == "in-progress" else ""
        raise Conflict(f"An item that is {WORDS.get(old, old)} cannot become "
                       f"{WORDS.get(new, new)}.{hint}")


def _next(task: dict[str, Any], status: str, step: str) -> dict[str, Any]:
    check_transition(task.get("status", ""), status)
    out = copy.deepcopy(task)
    out["status"] = status
    out["businessStatus"] = business(step)
    out["lastModified"] = now_instant()
    return out


def _note(task: dict[str, Any], text: str, author: str | None) -> None:
    note: dict[str, Any] = {"text": text, "time": now_instant()}
    if author:
        note["authorReference"] = {"reference": author}
    task.setdefault("note", []).append(note)


def _owner(reference: str | None) -> str:
    if not reference or not reference.startswith(("PractitionerRole/", "CareTeam/")):
        raise Unprocessable("Name the new owner as a PractitionerRole or CareTeam reference "
                            "(owner, e.g. PractitionerRole/123).")
    return reference


def claim(task: dict[str, Any], me: str) -> dict[str, Any]:
    if task.get("status") == "accepted" and (task.get("owner") or {}).get("reference") == me:
        return task
    if task.get("status") in ("accepted", "in-progress", "on-hold") and \
            (task.get("owner") or {}).get("reference") not in (None, me):
        raise Conflict(f"Someone else ({task['owner']['reference']}) is already working on "
                       "this item; ask them, or your team lead to reassign it.")
    out = _next(task, "accepted", "claimed")
    out["owner"] = {"reference": me}
    return out


def assign(task: dict[str, Any], owner: str | None, me: str | None) -> dict[str, Any]:
    out = _next(task, "requested", "assigned")
    out["owner"] = {"reference": _owner(owner)}
    _note(out, f"Assigned to {owner}.", me)
    return out


def start(task: dict[str, Any], me: str) -> dict[str, Any]:
    out = _next(task, "in-progress", "in progress")
    out.setdefault("owner", {"reference": me})
    out["executionPeriod"] = {**(out.get("executionPeriod") or {}), "start": now_instant()}
    return out


def complete(task: dict[str, Any], outcome: str | None, me: str | None) -> dict[str, Any]:
    if not outcome or not outcome.strip():
        raise Unprocessable("Say what was done (outcome), e.g. 'Phoned, plan agreed, visit "
                            "booked for Tuesday'.")
    out = _next(task, "completed", "done")
    out["output"] = [*(out.get("output") or ()), {
        "type": {"text": "outcome"}, "valueString": outcome.strip()}]
    out["executionPeriod"] = {**(out.get("executionPeriod") or {}), "end": now_instant()}
    _note(out, f"Completed: {outcome.strip()}", me)
    return out


def defer(task: dict[str, Any], until: str | None, reason: str | None,
          me: str | None) -> dict[str, Any]:
    try:
        day = date.fromisoformat(until or "")
    except ValueError:
        raise Unprocessable("Give the new due date as YYYY-MM-DD (due).") from None
    current = due_of(task)
    if current is not None and day <= current:
        raise Unprocessable(f"Deferring moves the due date later than {current.isoformat()}; "
                            f"{day.isoformat()} is not.")
    status = task.get("status", "")
    if status in CLOSED:
        check_transition(status, "requested")  # refused: a closed item changes no more
    out = _next(task, status, "deferred")
    restriction = dict(out.get("restriction") or {})
    restriction["period"] = {**(restriction.get("period") or {}), "end": day.isoformat()}
    out["restriction"] = restriction
    _note(out, f"Deferred to {day.isoformat()}" + (f": {reason}" if reason else "."), me)
    return out


def escalate(task: dict[str, Any], owner: str | None, reason: str | None,
             me: str | None) -> dict[str, Any]:
    out = _next(task, "requested", "escalated")
    out["owner"] = {"reference": _owner(owner)}
    level = PRIORITIES.index(task.get("priority", "routine")) \
        if task.get("priority") in PRIORITIES else len(PRIORITIES) - 1
    out["priority"] = PRIORITIES[max(0, level - 1)]
    _note(out, f"Escalated to {owner}" + (f": {reason}" if reason else "."), me)
    return out


def cancel(task: dict[str, Any], reason: str | None, me: str | None) -> dict[str, Any]:
    if not reason or not reason.strip():
        raise Unprocessable("Say why the item is cancelled (reason), e.g. 'patient moved "
                            "away'.")
    out = _next(task, "cancelled", "closed")
    out["statusReason"] = {"text": reason.strip()}
    _note(out, f"Cancelled: {reason.strip()}", me)
    return out
