"""CarePlan.text of an anticipatory care plan, generated from its structured content.

Written for whoever opens the plan in a hurry (an ambulance crew, an out-of-hours GP at
3 a.m.): first what to do if things change and the person's treatment preferences, then whom
to call, then what matters to the person, the goals, the planned activities, the problems and
the notes. Regenerated on every write, so it never disagrees with the structure
(https://hl7.org/fhir/R4/narrative.html: status `generated`, an XHTML div in the XHTML
namespace, only the elements FHIR allows). It reads the plan alone (the displays of its
references), so it says what was agreed, the same wherever it is read.
"""

from __future__ import annotations

from html import escape
from typing import Any

from careplans.plans import model

XHTML = "http://www.w3.org/1999/xhtml"


def _who(reference: Any) -> str:
    if not isinstance(reference, dict):
        return "not recorded"
    return str(reference.get("display") or reference.get("reference") or "not recorded")


def _when(detail: dict[str, Any]) -> str:
    period = detail.get("scheduledPeriod") or {}
    if period.get("start"):
        return str(period["start"])
    return str(detail.get("scheduledString") or "")


def _section(title: str, items: list[str], empty: str | None = None) -> str:
    if not items and empty is None:
        return ""
    body = "".join(f"<li>{i}</li>" for i in items) if items else f"<li>{escape(empty or '')}</li>"
    return f"<h3>{escape(title)}</h3><ul>{body}</ul>"


def _contingencies(plan: dict[str, Any]) -> list[str]:
    out = []
    for activity in plan.get("activity") or ():
        if not isinstance(activity, dict) or not model.is_contingency(activity):
            continue
        found = model.ext(activity, model.CONTINGENCY)
        detail = activity.get("detail") or {}
        action = str(detail.get("description") or "no action recorded").rstrip(". ") + "."
        line = (f"<b>If {escape(str(model.sub(found, 'trigger') or 'not stated'))}:</b> "
                f"{escape(action)}")
        performers = [escape(_who(p)) for p in detail.get("performer") or ()]
        if performers:
            line += f" Call {', '.join(performers)} (in hours)."
        out_of_hours = model.sub(found, "outOfHours")
        if out_of_hours:
            line += f" <b>Out of hours:</b> {escape(str(out_of_hours))}"
        out.append(line)
    return out


def _preferences(plan: dict[str, Any]) -> list[str]:
    prefs = model.respect(plan)
    out = []
    cpr = model.text_of(prefs.get("cpr"))
    out.append(f"<b>CPR: {escape(cpr)}</b>" if cpr else
               "<b>CPR: no recommendation recorded in this plan</b> (check for a ReSPECT "
               "or DNACPR form)")
    balance = model.text_of(prefs.get("balance"))
    if balance:
        out.append(f"Balance of care: {escape(balance)}")
    if prefs.get("recommendations"):
        out.append(f"Recommended care and treatment: {escape(str(prefs['recommendations']))}")
    for key, label in (("preferredPlaceOfCare", "Preferred place of care"),
                       ("preferredPlaceOfDeath", "Preferred place of death")):
        if prefs.get(key):
            out.append(f"{label}: {escape(str(prefs[key]))}")
    if prefs.get("agreedWith"):
        out.append(f"Agreed with: {escape(str(prefs['agreedWith']))}")
    return out


def _contacts(plan: dict[str, Any]) -> list[str]:
    out = [f"<b>Care coordinator:</b> {escape(_who(plan.get('author')))}"]
    out += [f"Care team: {escape(_who(t))}" for t in plan.get("careTeam") or ()]
    seen = {_who(plan.get("author"))}
    for activity in plan.get("activity") or ():
        for performer in ((activity or {}).get("detail") or {}).get("performer") or ():
            name = _who(performer)
            if name not in seen:
                seen.add(name)
                out.append(escape(name))
    return out


def _activities(plan: dict[str, Any]) -> list[str]:
    out = []
    for activity in plan.get("activity") or ():
        if not isinstance(activity, dict) or model.is_contingency(activity):
            continue
        detail = activity.get("detail") or {}
        what = (detail.get("description") or model.text_of(detail.get("code"))
                or _who(activity.get("reference")))
        line = escape(str(what))
        when = _when(detail)
        if when:
            line += f" ({escape(when)})"
        if detail.get("status"):
            line += f" [{escape(str(detail['status']))}]"
        performers = [escape(_who(p)) for p in detail.get("performer") or ()]
        if performers:
            line += f": {', '.join(performers)}"
        out.append(line)
    return out


def _notes(plan: dict[str, Any]) -> list[str]:
    out = []
    for note in plan.get("note") or ():
        if not isinstance(note, dict):
            continue
        who = _who(note.get("authorReference")) if note.get("authorReference") else (
            note.get("authorString") or "")
        head = " ".join(x for x in (str(note.get("time") or ""), str(who)) if x)
        out.append((f"<i>{escape(head)}:</i> " if head else "") + escape(str(note.get("text"))))
    return out


def render(plan: dict[str, Any]) -> str:
    """The XHTML div of `plan`."""
    review = model.review_date(plan) or "NOT SET"
    head = (f"<p><b>{escape(str(plan.get('title') or 'Anticipatory care plan'))}</b> for "
            f"{escape(_who(plan.get('subject')))}. Status: {escape(str(plan.get('status')))}. "
            f"Review by: {escape(review)}.</p>")
    parts = [
        head,
        _section("If things change (contingency and escalation plan)", _contingencies(plan),
                 "No contingency plan recorded."),
        _section("Treatment preferences (ReSPECT)", _preferences(plan)),
        _section("Contacts", _contacts(plan)),
        _section("What matters to me", [escape(_who(g)) for g in model.what_matters_goals(plan)],
                 "Not recorded yet."),
        _section("Goals", [escape(_who(g)) for g in model.clinical_goals(plan)]),
        _section("Planned activities", _activities(plan)),
        _section("Problems this plan addresses",
                 [escape(_who(a)) for a in plan.get("addresses") or ()]),
        _section("Notes", _notes(plan)),
    ]
    if plan.get("description"):
        parts.append(f"<p>{escape(str(plan['description']))}</p>")
    return f'<div xmlns="{XHTML}">{"".join(parts)}</div>'


def narrative(plan: dict[str, Any]) -> dict[str, str]:
    """CarePlan.text for `plan`."""
    return {"status": "generated", "div": render(plan)}
