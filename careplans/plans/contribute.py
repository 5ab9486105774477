"""What a patient or their carer adds to their anticipatory care plan (`$contribute`).

They add, and change nothing else: what matters to them (a `Goal` they express, referenced
from the plan as `what-matters`) and comments (a `CarePlan.note` naming them). The result is
a new version of the plan; its Provenance names them (api/audit.py). The clinical content
(activities, clinicians' goals, coordinator, contingencies, preferences) is carried over
untouched, which `validation.clinical_changes` confirms before anything is stored.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from careplans.plans import model, validation
from fhir.errors import BadRequest, Forbidden, Issue, Unprocessable

MAX_TEXT = 2000
OPEN = frozenset({"draft", "active", "on-hold"})


@dataclass(frozen=True, slots=True)
class Addition:
    """What one request adds: words of what matters (each a Goal) and comments."""

    what_matters: tuple[str, ...] = ()
    comments: tuple[str, ...] = ()


def parse(parameters: Any) -> Addition:
    """The Addition of a `Parameters` body (parameters `whatMatters` and `comment`,
    valueString, each repeatable)."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise BadRequest("$contribute takes a Parameters resource with 'whatMatters' and/or "
                         "'comment' (valueString).")
    found: dict[str, list[str]] = {"whatMatters": [], "comment": []}
    for i, p in enumerate(parameters.get("parameter") or ()):
        name = p.get("name") if isinstance(p, dict) else None
        if name not in found:
            raise BadRequest(f"Parameter '{name}' is not known to $contribute (use 'whatMatters'"
                             " or 'comment').", expression=f"Parameters.parameter[{i}]")
        value = p.get("valueString")
        if not isinstance(value, str) or not value.strip():
            raise BadRequest(f"'{name}' needs some text in valueString.",
                             expression=f"Parameters.parameter[{i}].valueString")
        if len(value) > MAX_TEXT:
            raise Unprocessable(f"'{name}' is longer than {MAX_TEXT} characters; split it.",
                                expression=f"Parameters.parameter[{i}].valueString")
        found[name].append(value.strip())
    if not found["whatMatters"] and not found["comment"]:
        raise BadRequest("Nothing to add: give at least one 'whatMatters' or 'comment'.")
    return Addition(tuple(found["whatMatters"]), tuple(found["comment"]))


def goal(patient_id: str, author: str, text: str, today: str) -> dict[str, Any]:
    """The Goal that records one thing that matters to the person, in their words."""
    return {"resourceType": "Goal", "lifecycleStatus": "active",
            "description": {"text": text}, "subject": {"reference": f"Patient/{patient_id}"},
            "startDate": today, "expressedBy": {"reference": author}}


def apply(plan: dict[str, Any], addition: Addition, *, author: str, goal_ids: list[str],
          now: str) -> dict[str, Any]:
    """The next version of `plan` with `addition` by `author` (a Patient or RelatedPerson
    reference); `goal_ids`: the ids of the Goals made for `addition.what_matters`."""
    if plan.get("status") not in OPEN:
        raise Unprocessable(f"This care plan is {plan.get('status')}: it is closed, so "
                            "nothing can be added to it. Ask your care coordinator about "
                            "the current plan.", expression="CarePlan.status")
    new = copy.deepcopy(plan)
    new.pop("text", None)  # regenerated on write
    goals = list(new.get("goal") or [])
    for goal_id, text in zip(goal_ids, addition.what_matters, strict=True):
        goals.append(model.goal_ref(goal_id, text, what_matters=True))
    if goals:
        new["goal"] = goals
    notes = list(new.get("note") or [])
    notes += [{"authorReference": {"reference": author}, "time": now, "text": text}
              for text in addition.comments]
    notes += [{"authorReference": {"reference": author}, "time": now,
               "text": f"What matters to me: {text}"} for text in addition.what_matters]
    new["note"] = notes
    contributors = list(new.get("contributor") or [])
    if {"reference": author} not in contributors:
        contributors.append({"reference": author})
    new["contributor"] = contributors
    changed = validation.clinical_changes(plan, new)
    if changed:  # a bug here must never reach the record
        raise Forbidden(issues=[Issue("forbidden", "A patient's addition would change the "
                                      f"plan's clinical content ({', '.join(changed)}).")])
    return new
