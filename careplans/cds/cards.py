"""The cards of the `patient-view` hook (https://cds-hooks.hl7.org/2.0/#card-attributes):
what a clinician opening a patient in their own EHR should know of proactive care.

- high risk without an active anticipatory care plan (rule no-plan of the worklists):
  "severe frailty (0.39), no anticipatory care plan: draft one", warning, with a SMART app
  link to draft the plan;
- the plan's review overdue (or due within 14 days): warning (info when only due), with a
  SMART app link to the plan.
Built only from what the caller may read (the caller of `cards` passes the facts already
filtered by access); pure.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from careplans.worklist.facts import Facts
from careplans.worklist.triggers import REVIEW_NOTICE_DAYS, high_risk

SERVICE_ID = "carenet-proactive-care"
SOURCE = {"label": "carenet proactive care",
          "topic": {"system": "https://carenet.invalid/fhir/CodeSystem/cds-topic",
                    "code": "proactive-care", "display": "Proactive care"}}


def service() -> dict[str, Any]:
    """The discovery entry (https://cds-hooks.hl7.org/2.0/#discovery)."""
    return {"hook": "patient-view", "id": SERVICE_ID, "title": "Proactive care",
            "description": "Frailty and admission risk without an anticipatory care plan, and "
                           "care plan reviews due, for the patient being viewed.",
            "usageRequirements": "Send fhirAuthorization: an access token of this carenet "
                                 "server for the user (cards honour their access)."}


def _card(summary: str, indicator: str, detail: str, link: dict[str, Any]) -> dict[str, Any]:
    return {"uuid": str(uuid.uuid4()), "summary": summary[:140], "indicator": indicator,
            "detail": detail, "source": SOURCE, "links": [link]}


def cards(patient_id: str, facts: Facts, on: date, app_url: str,
          plans_readable: bool) -> list[dict[str, Any]]:
    """The cards for `patient_id` (`plans_readable`: the caller may read CarePlans, so the
    absence of a plan is known to them, not a guess)."""
    found = []
    risky = high_risk(facts)
    if risky and plans_readable and not facts.plans:
        found.append(_card(
            f"{risky}, no anticipatory care plan: draft one", "warning",
            "An anticipatory care plan records what matters to the person, who coordinates "
            "their care, what to do if things change and their treatment preferences.",
            {"label": "Draft an anticipatory care plan", "url": app_url, "type": "smart",
             "appContext": f'{{"patient":"{patient_id}","action":"draft-care-plan"}}'}))
    for plan_id, _, review in facts.plans:
        if not review:
            continue
        day = date.fromisoformat(review[:10])
        if day < on:
            summary, indicator = f"Anticipatory care plan review overdue (since {day})", \
                "warning"
        elif day <= on + timedelta(days=REVIEW_NOTICE_DAYS):
            summary, indicator = f"Anticipatory care plan review due on {day}", "info"
        else:
            continue
        found.append(_card(summary, indicator, "Review the plan with the person and their "
                           "care team, and set the next review date.",
                           {"label": "Review the care plan", "url": app_url, "type": "smart",
                            "appContext": f'{{"patient":"{patient_id}",'
                                          f'"carePlan":"CarePlan/{plan_id}"}}'}))
    return found
