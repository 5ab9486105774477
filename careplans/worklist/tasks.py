"""The FHIR Task of a worklist item (https://hl7.org/fhir/R4/task.html).

| element | value |
|---|---|
| identifier | `https://carenet.invalid/fhir/Id/worklist-item` = "rule|patient|period" |
| status | requested (new), then the state machine (states.py) |
| intent | order; `code` = the rule (`https://carenet.invalid/fhir/CodeSystem/worklist-rule`) |
| for / focus | the Patient / what it is about (CarePlan, Encounter, ServiceRequest, ...) |
| owner | the plan's coordinator (PractitionerRole) when there is one; else unassigned |
| performerType | the SDS job role who does it (case manager, pharmacist) |
| restriction.recipient | the patient's practice (the team whose queue it is in) |
| restriction.period.end | the due date |
| businessStatus | new / claimed / in progress / deferred / escalated / done / closed |
| reasonCode | the rule's code and the reason a person reads |
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from careplans.worklist.rules import RULE_SYSTEM, SDS_JOB_ROLE, rules
from careplans.worklist.triggers import Wanted

IDENTIFIER = "https://carenet.invalid/fhir/Id/worklist-item"
BUSINESS = "https://carenet.invalid/fhir/CodeSystem/worklist-step"
CLOSED = frozenset({"completed", "cancelled", "failed", "rejected", "entered-in-error"})


def key(rule: str, patient_id: str, period: str) -> str:
    return f"{rule}|{patient_id}|{period}"


def business(step: str) -> dict[str, Any]:
    return {"coding": [{"system": BUSINESS, "code": step}], "text": step}


def now_instant() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def body(item: Wanted, task_id: str, team: str | None) -> dict[str, Any]:
    rule = rules()[item.rule]
    task: dict[str, Any] = {
        "resourceType": "Task", "id": task_id,
        "identifier": [{"system": IDENTIFIER,
                        "value": key(item.rule, item.patient_id, item.period)}],
        "status": "requested", "intent": "order", "priority": rule.priority,
        "code": {"coding": [{"system": RULE_SYSTEM, "code": item.rule,
                             "display": rule.title}], "text": rule.title},
        "description": item.reason,
        "businessStatus": business("new"),
        "for": {"reference": f"Patient/{item.patient_id}"},
        "authoredOn": now_instant(), "lastModified": now_instant(),
        "requester": {"display": "carenet worklist"},
        "performerType": [{"coding": [{"system": SDS_JOB_ROLE,
                                       "code": rule.performer_role}]}],
        "reasonCode": {"coding": [{"system": RULE_SYSTEM, "code": item.rule,
                                   "display": rule.title}], "text": item.reason},
        "restriction": {"period": {"end": item.due.isoformat()}},
    }
    if item.focus:
        task["focus"] = {"reference": item.focus}
    if item.owner:
        task["owner"] = {"reference": item.owner}
    if team:
        task["restriction"]["recipient"] = [{"reference": f"Organization/{team}"}]
    return task


def close(task: dict[str, Any], status: str, reason: str) -> dict[str, Any]:
    """`task` closed by the build: completed or cancelled, with the reason it ended."""
    out = dict(task)
    out["status"] = status
    out["statusReason"] = {"text": reason}
    out["businessStatus"] = business("closed" if status == "cancelled" else "done")
    out["lastModified"] = now_instant()
    return out


def item_key(task: dict[str, Any]) -> tuple[str, str, str] | None:
    """(rule, patient, period) of a worklist Task, or None for any other Task."""
    for ident in task.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("system") == IDENTIFIER:
            rule, _, rest = str(ident.get("value", "")).partition("|")
            patient, _, period = rest.partition("|")
            if rule and patient and period:
                return rule, patient, period
    return None


def due_of(task: dict[str, Any]) -> date | None:
    end = ((task.get("restriction") or {}).get("period") or {}).get("end")
    try:
        return date.fromisoformat(end[:10]) if isinstance(end, str) else None
    except ValueError:
        return None
