"""The lifecycle and the rules of an anticipatory care plan, as pure functions of its versions.

Lifecycle (CarePlan.status, https://hl7.org/fhir/R4/valueset-request-status.html):
draft → active → (revised: a new version of the active plan; every version stays readable by
vread and _history) → completed or revoked. `on-hold` pauses an active plan. A completed or
revoked plan is closed: the next plan is a new one (`$draft-care-plan` carries its goals
over). `entered-in-error` is always allowed, and final.

An active (or on-hold) plan must name its care coordinator (`author`) and a review date (the
'Review of care plan' activity), so nobody acts on a plan that nobody owns or that is never
looked at again. What patients and carers wrote in the plan (their notes) stays in every
later version: a revision by staff may add to it, not remove it.
"""

from __future__ import annotations

from typing import Any

from careplans.plans import model
from fhir.errors import Issue, Unprocessable

ANY = frozenset({"draft", "active", "on-hold", "revoked", "completed", "entered-in-error",
                 "unknown"})
# status now → the statuses its next version may have.
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"draft", "active", "revoked", "entered-in-error"}),
    "active": frozenset({"active", "on-hold", "completed", "revoked", "entered-in-error"}),
    "on-hold": frozenset({"on-hold", "active", "completed", "revoked", "entered-in-error"}),
    "completed": frozenset({"entered-in-error"}),
    "revoked": frozenset({"entered-in-error"}),
    "entered-in-error": frozenset(),
    "unknown": ANY,
}
LIVE = frozenset({"active", "on-hold"})
# What patients and carers may change in a plan ($contribute): their notes, the goals they
# express (what matters to them) and the list of contributors. Everything else is clinical.
PERSONAL = frozenset({"note", "goal", "contributor", "meta", "text"})


def _why_not(old: str, new: str) -> str:
    if old in ("completed", "revoked"):
        return (f"This anticipatory care plan is {old}, so it is closed and cannot be changed "
                "(only marked entered-in-error). To plan again, start a new draft "
                "(Patient/[id]/$draft-care-plan carries the goals over).")
    if old == "entered-in-error":
        return "This care plan was marked entered-in-error; it cannot be changed any more."
    if old == "active" and new == "draft":
        return ("An active anticipatory care plan cannot go back to draft. Revise it while "
                "it stays active (each change is a new version), or put it on hold.")
    return f"An anticipatory care plan cannot go from {old} to {new}."


def check_transition(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """422 unless `new` may follow `old` (None: a new plan) in the lifecycle."""
    if old is None:
        return
    before, after = str(old.get("status")), str(new.get("status"))
    if after not in TRANSITIONS.get(before, ANY):
        raise Unprocessable(_why_not(before, after), expression="CarePlan.status")


def live_issues(plan: dict[str, Any]) -> list[Issue]:
    """What an active or on-hold anticipatory care plan lacks, in words a clinician acts on."""
    issues: list[Issue] = []
    status = plan.get("status")
    if model.ref_type(plan.get("subject")) != "Patient":
        issues.append(Issue("required", "An anticipatory care plan is for one patient: "
                            "CarePlan.subject must be a Patient reference.",
                            expression="CarePlan.subject"))
    if model.ref_type(plan.get("author")) not in model.STAFF_TYPES:
        issues.append(Issue("required", f"This care plan cannot be {status}: it has no named "
                            "care coordinator. Put the coordinator's PractitionerRole (or "
                            "Practitioner) in CarePlan.author, then save it again.",
                            expression="CarePlan.author"))
    if model.review_date(plan) is None:
        issues.append(Issue("required", f"This care plan cannot be {status}: it has no review "
                            "date. Add an activity coded SNOMED CT 425268008 'Review of care "
                            "plan' with the date in detail.scheduledPeriod.start.",
                            expression="CarePlan.activity"))
    for i, activity in enumerate(plan.get("activity") or ()):
        found = model.ext(activity, model.CONTINGENCY) if isinstance(activity, dict) else None
        if found is not None and not model.sub(found, "trigger"):
            issues.append(Issue("required", "A contingency needs its trigger (what would "
                                "happen) in the 'trigger' part of its extension.",
                                expression=f"CarePlan.activity[{i}].extension"))
        if found is not None and not (activity.get("detail") or {}).get("description"):
            issues.append(Issue("required", "A contingency needs what to do "
                                "(activity.detail.description).",
                                expression=f"CarePlan.activity[{i}].detail.description"))
    return issues


def person_notes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The notes patients and carers wrote."""
    return [n for n in plan.get("note") or () if isinstance(n, dict)
            and model.ref_type(n.get("authorReference")) in model.PERSON_TYPES]


def check_person_notes_kept(old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """422 if a new version drops or rewrites a note a patient or carer wrote."""
    if old is None:
        return
    kept = [n for n in new.get("note") or () if isinstance(n, dict)]
    for note in person_notes(old):
        if note not in kept:
            who = note["authorReference"]["reference"]
            raise Unprocessable(
                f"This version leaves out (or changes) a note {who} wrote in the plan "
                f"(\"{str(note.get('text', ''))[:60]}\"). What the person and their carer "
                "add stays in every version; add a note of your own to answer it.",
                expression="CarePlan.note")


def check(old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
    """Every rule of a write of an anticipatory care plan (`new` None: a delete)."""
    if new is None:
        return
    check_transition(old, new)
    if new.get("status") in LIVE:
        issues = live_issues(new)
        if issues:
            raise Unprocessable(issues=issues)
    check_person_notes_kept(old, new)


def clinical_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The elements other than the personal ones (PERSONAL) that differ between two versions,
    and clinician goals removed or changed: what a patient's addition must never touch."""
    changed = sorted(k for k in set(old) | set(new)
                     if k not in PERSONAL and old.get(k) != new.get(k))
    new_goals = new.get("goal") or []
    if any(g not in new_goals for g in old.get("goal") or ()):
        changed.append("goal")
    return changed
