"""A draft anticipatory care plan pre-filled from the record (`Patient/[id]/$draft-care-plan`).

Pure: `build(record, today)` from what `record.gather` read. The draft is status `draft`,
has no id and is not stored: the clinician reviews it with the person and POSTs (or PUTs)
what they agree. It carries:
- the active problems (`addresses`), the current medicines and the latest final risk
  assessment of each method with the evidence it lists in `basis` (`supportingInfo`);
- the current care team(s) (`careTeam`) and the care coordinator (`author`): the previous
  plan's, else a care team member whose role names the coordinator;
- from the previous anticipatory plan: its goals still open, what matters to the person,
  its contingencies and treatment preferences (to be confirmed at the review), `replaces`;
  the person's own open goals recorded elsewhere join what matters;
- proposed activities where the record shows the need, and a review date.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import orjson

from careplans import codes as code_lists
from careplans.plans import model
from careplans.plans.record import Record

# A proposal the clinician changes at will; NICE NG56 (multimorbidity) asks for regular
# review without fixing an interval, and six months is common local practice.
REVIEW_AFTER = timedelta(days=182)
# NICE NG5 (medicines optimisation): a structured medication review for people taking
# several medicines; 5+ is the polypharmacy threshold of the eFI (Clegg 2016).
POLYPHARMACY = 5
CLOSED_GOALS = frozenset({"completed", "cancelled", "rejected", "entered-in-error"})


def person_name(patient: dict[str, Any]) -> str:
    """A person's name as written ("Ann Able"), else their reference."""
    for name in patient.get("name") or ():
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("given", ()), name.get("family", "")]
        if any(parts):
            return " ".join(p for p in parts if p)
    return f"{patient.get('resourceType', 'Patient')}/{patient.get('id')}"


def _ref(resource: dict[str, Any], display: str | None) -> dict[str, Any]:
    ref = {"reference": f"{resource['resourceType']}/{resource['id']}"}
    if display:
        ref["display"] = display
    return ref


def medicine_name(med: dict[str, Any]) -> str | None:
    return (model.text_of(med.get("medicationCodeableConcept"))
            or (med.get("medicationReference") or {}).get("display"))


def _updated(resource: dict[str, Any]) -> str:
    return str((resource.get("meta") or {}).get("lastUpdated") or "")


def _latest(risk: dict[str, Any]) -> tuple[str, str]:
    return str(risk.get("occurrenceDateTime") or ""), _updated(risk)


def latest_risk(risks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest final RiskAssessment: by occurrenceDateTime, then last updated."""
    final = [r for r in risks if r.get("status") in ("final", "amended", "corrected")]
    return max(final, key=_latest, default=None)


def latest_risks(risks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest final RiskAssessment of each method (a frailty index, an admission-risk
    score...), latest first."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in risks:
        key = orjson.dumps((r.get("method") or {}).get("coding")
                           or model.text_of(r.get("method")) or "").decode()
        by_method.setdefault(key, []).append(r)
    found = [latest_risk(group) for group in by_method.values()]
    return sorted((r for r in found if r is not None), key=_latest, reverse=True)


def risk_summary(risk: dict[str, Any]) -> str:
    """What a clinician reads of a RiskAssessment: its note, else method and prediction."""
    notes = [str(n["text"]) for n in risk.get("note") or () if n.get("text")]
    if notes:
        return " ".join(notes)
    parts = [model.text_of(risk.get("method")) or "Risk assessment"]
    for p in risk.get("prediction") or ():
        outcome = model.text_of(p.get("outcome")) or model.text_of(p.get("qualitativeRisk"))
        score = p.get("probabilityDecimal")
        parts.append(" ".join(str(x) for x in (outcome, score) if x is not None))
    return ": ".join(x for x in parts if x)


def previous_plan(plans: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The plan a new one follows: the live one, else the latest not entered in error."""
    usable = [p for p in plans if p.get("status") != "entered-in-error"]
    live = [p for p in usable if p.get("status") in ("active", "on-hold")]
    return max(live or usable, key=_updated, default=None)


def _phone(resource: dict[str, Any] | None) -> str | None:
    for t in (resource or {}).get("telecom") or ():
        if t.get("system") == "phone" and t.get("value"):
            return str(t["value"])
    return None


def describe(ref: dict[str, Any] | None, rec: Record) -> dict[str, Any] | None:
    """`ref` with a display that says who it is and how to reach them ("Jane Smith (Network
    case manager), Oak Surgery, tel 01632 960709"), when the record has them."""
    if not isinstance(ref, dict):
        return ref
    found = rec.people.get(str(ref.get("reference")))
    if found is None:
        return dict(ref)
    kind = found["resourceType"]
    phone = _phone(found)
    if kind == "PractitionerRole":
        person = rec.people.get(str((found.get("practitioner") or {}).get("reference")))
        org = rec.people.get(str((found.get("organization") or {}).get("reference")))
        role = next((model.text_of(c) for c in found.get("code") or () if model.text_of(c)),
                    None)
        parts = [" ".join(x for x in (person_name(person) if person else None,
                                      f"({role})" if role else None) if x),
                 (org or {}).get("name")]
        phone = phone or _phone(person) or _phone(org)
    elif kind == "Organization":
        parts = [found.get("name")]
    else:
        relation = [model.text_of(r) for r in found.get("relationship") or ()
                    if model.text_of(r)]
        parts = [person_name(found) + (f" ({', '.join(relation)})" if relation else "")]
    text = ", ".join(str(p) for p in parts if p)
    if phone:
        text += f", tel {phone}"
    return {**ref, "display": text} if text else dict(ref)


def _performers(activity: dict[str, Any], rec: Record) -> dict[str, Any]:
    detail = activity.get("detail")
    if not isinstance(detail, dict) or not detail.get("performer"):
        return activity
    return {**activity, "detail": {**detail, "performer": [
        describe(p, rec) for p in detail["performer"]]}}


def _team_display(team: dict[str, Any], rec: Record) -> str:
    members = []
    for p in team.get("participant") or ():
        role = next((model.text_of(r) for r in p.get("role") or () if model.text_of(r)), None)
        member = describe(p.get("member"), rec) or {}
        who = member.get("display") or member.get("reference")
        if who:
            members.append(f"{role}: {who}" if role else str(who))
    name = team.get("name") or "Care team"
    return f"{name} ({'; '.join(members)})" if members else str(name)


def coordinator(rec: Record, previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """The named care coordinator: the previous plan's, else the care team's."""
    if previous and model.ref_type(previous.get("author")) in model.STAFF_TYPES:
        return dict(previous["author"])
    for team in rec.care_teams:
        for p in team.get("participant") or ():
            roles = " ".join(model.text_of(r) or "" for r in p.get("role") or ()).lower()
            if "coordinator" in roles and model.ref_type(p.get("member")) in model.STAFF_TYPES:
                return dict(p["member"])
    return None


def _goals(rec: Record, previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    out, seen = [], set()
    for ref in (previous or {}).get("goal") or ():
        goal = rec.goals.get(str(ref.get("reference", "")).partition("/")[2])
        if goal is not None and goal.get("lifecycleStatus") in CLOSED_GOALS:
            continue
        out.append(dict(ref))
        seen.add(ref.get("reference"))
    for goal in rec.goals.values():  # what the person said elsewhere (the portal, a visit)
        personal = model.ref_type(goal.get("expressedBy")) in model.PERSON_TYPES
        if (personal and goal.get("lifecycleStatus") not in CLOSED_GOALS
                and f"Goal/{goal['id']}" not in seen):
            out.append(model.goal_ref(goal["id"], model.text_of(goal.get("description"))
                                      or "a goal of the person's", what_matters=True))
    return out


def _codes_in(conditions: list[dict[str, Any]], deficit: str) -> list[dict[str, Any]]:
    wanted = {c for c, _ in code_lists.deficit_codes()[deficit]}
    return [c for c in conditions if any(
        k.get("system") == code_lists.SNOMED and k.get("code") in wanted
        for k in (c.get("code") or {}).get("coding") or ())]


def _proposed(rec: Record, who: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Activities the record shows a need for (each says why)."""
    out = []
    performer = [who] if who else []

    def activity(use: str, description: str) -> dict[str, Any]:
        code = model.codes()[use]
        concept: dict[str, Any] = ({"coding": [code.coding()]} if code.code
                                   else {"text": code.display})
        detail = {"code": concept, "status": "not-started", "description": description}
        if performer:
            detail["performer"] = performer
        return {"detail": detail}

    meds = len({medicine_name(m) for m in rec.medicines})
    if meds >= POLYPHARMACY:
        out.append(activity("medication-review", f"Structured medication review: {meds} "
                            "current medicines (NICE NG5)"))
    if _codes_in(rec.conditions, "falls"):
        out.append(activity("falls-assessment", "Multifactorial falls risk assessment after "
                            "falls (NICE CG161)"))
    if _codes_in(rec.conditions, "housebound"):
        out.append(activity("home-visit", "Home visit: housebound"))
    return out


def build(rec: Record, today: date) -> dict[str, Any]:
    """The draft plan for `rec` on `today`."""
    patient = rec.patient
    previous = previous_plan(rec.plans)
    who = describe(coordinator(rec, previous), rec)
    risks = latest_risks(rec.risks)
    plan: dict[str, Any] = {
        "resourceType": "CarePlan", "status": "draft", "intent": "plan",
        "category": [model.category()], "title": "Anticipatory care plan",
        "subject": _ref(patient, person_name(patient)), "created": today.isoformat(),
    }
    if who:
        plan["author"] = who
    if previous:
        plan["replaces"] = [_ref(previous, previous.get("title"))]
    if rec.care_teams:
        plan["careTeam"] = [_ref(t, _team_display(t, rec)) for t in rec.care_teams]
    if rec.conditions:
        plan["addresses"] = [_ref(c, model.text_of(c.get("code"))) for c in rec.conditions]
    support = [_ref(m, medicine_name(m)) for m in rec.medicines]
    for risk in risks:
        support.append(_ref(risk, f"Risk assessment: {risk_summary(risk)}"))
        support += [dict(b) for b in risk.get("basis") or ()
                    if isinstance(b, dict) and b not in support]
    if support:
        plan["supportingInfo"] = support
    goals = _goals(rec, previous)
    if goals:
        plan["goal"] = goals
    carried = [_performers(a, rec) for a in (previous or {}).get("activity") or ()
               if isinstance(a, dict) and model.is_contingency(a)]
    plan["activity"] = [*carried, *_proposed(rec, who),
                        model.review_activity(today + REVIEW_AFTER, who)]
    preferences = model.ext(previous or {}, model.RESPECT)
    if preferences:
        plan["extension"] = [preferences]
    summary = [f"Draft prepared on {today.isoformat()} from the record: "
               f"{len(rec.conditions)} active problem(s), {len(rec.medicines)} current "
               "medicine(s)."]
    summary += [f"Latest risk assessment: {risk_summary(risk)}" for risk in risks]
    if previous:
        summary.append(f"Carried over from CarePlan/{previous['id']} ({previous.get('status')}): "
                       "goals, what matters, contingencies and treatment preferences; confirm "
                       "them with the person.")
    plan["description"] = " ".join(summary)
    return plan
