"""The rules of rules.csv as pure decisions over one patient's Facts (facts.py).

`evaluate` answers, for one patient, the items the record calls for now (`Wanted`: rule,
period, focus, the reason a person reads, due date, suggested owner) and, for the open items
it does not call for any more, whether their purpose was met (closed as completed) rather
than their cause gone (cancelled): `Closing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from careplans.risk.assessment import ADMISSION, FRAILTY
from careplans.worklist.calendar import add_working_days
from careplans.worklist.facts import Facts, day_of
from careplans.worklist.rules import rules

# Bands in order of risk (careplans/risk/README.md).
ORDER = {FRAILTY: ("fit", "mild", "moderate", "severe"), ADMISSION: ("low", "moderate", "high")}
HIGH = {FRAILTY: ("moderate", "severe"), ADMISSION: ("high",)}
# The rules `evaluate` implements: rules.csv must list exactly these (checked at import, so a
# row without code, or code without a row, fails at start-up rather than going unnoticed).
IMPLEMENTED = frozenset({"no-plan", "review-due", "ae-follow-up", "med-review",
                         "social-referral", "unanswered-message", "risk-rose"})
if set(rules()) != IMPLEMENTED:
    raise RuntimeError(f"rules.csv lists {sorted(set(rules()))}; the code implements "
                       f"{sorted(IMPLEMENTED)}")
POLYPHARMACY = 10  # distinct medicines in 12 months (rules.csv: med-review)
REVIEW_NOTICE_DAYS = 14


@dataclass(frozen=True, slots=True)
class Wanted:
    rule: str
    patient_id: str
    period: str
    focus: str | None
    reason: str
    due: date
    owner: str | None = None  # a PractitionerRole reference, when one is named


@dataclass(frozen=True, slots=True)
class Closing:
    """How an open item that is no longer wanted ends."""

    status: str  # completed or cancelled
    reason: str


def quarter(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def high_risk(facts: Facts) -> str | None:
    """The words for why the patient counts as high risk ("severe frailty (0.39)"), or None."""
    found = []
    for risk in facts.risks:
        if risk.band in HIGH.get(risk.method, ()):
            if risk.method == FRAILTY:
                score = f" ({risk.score:.2f})" if risk.score is not None else ""
                found.append(f"{risk.band} frailty{score}")
            else:
                found.append(f"{risk.band} admission risk")
    return ", ".join(found) or None


def _coordinator(facts: Facts) -> str | None:
    for _, author, _ in facts.plans:
        if author and author.startswith(("PractitionerRole/", "CareTeam/")):
            return author
    return None


def evaluate(pid: str, facts: Facts, as_of: date,
             open_items: dict[tuple[str, str], str]) -> tuple[list[Wanted], dict[str, Closing]]:
    """The items patient `pid` needs now, and how each of its open items that is not among
    them closes (keyed by "rule|period"). `open_items`: (rule, period) -> "" of its open
    items (a time-based period is kept while its item is open)."""
    table = rules()
    wanted: list[Wanted] = []
    closing: dict[str, Closing] = {}
    coordinator = _coordinator(facts)

    def due(rule: str, start: date) -> date:
        return add_working_days(start, table[rule].due_working_days)

    def held(rule: str, default: str) -> str:
        # While an item of a time-based period is open, it is the item (no new one per term).
        for (r, period) in open_items:
            if r == rule:
                return period
        return default

    risky = high_risk(facts)
    # 1. high risk, no active anticipatory plan
    if risky and not facts.plans:
        wanted.append(Wanted("no-plan", pid, held("no-plan", quarter(as_of)), None,
                             f"{risky}, no anticipatory care plan: draft one",
                             due("no-plan", as_of), coordinator))
    elif facts.plans:
        closing["no-plan"] = Closing("completed", "An anticipatory care plan is now active.")
    else:
        closing["no-plan"] = Closing("cancelled", "The patient is no longer high risk.")
    # 2. review due in the next 14 days, or overdue
    closing["review-due"] = Closing("cancelled", "The care plan is no longer active.")
    for plan_id, author, review in facts.plans:
        if not review:
            continue
        on = date.fromisoformat(review[:10])
        if on <= as_of + timedelta(days=REVIEW_NOTICE_DAYS):
            late = "overdue" if on < as_of else "due"
            wanted.append(Wanted("review-due", pid, f"{plan_id}|{on.isoformat()}",
                                 f"CarePlan/{plan_id}",
                                 f"Care plan review {late} ({on.isoformat()})", on,
                                 author if author and author.startswith(
                                     ("PractitionerRole/", "CareTeam/")) else None))
        closing["review-due"] = Closing("completed", "The plan's review date was moved on.")
    # 3. follow-up after an A&E attendance or emergency discharge
    for e in facts.emergencies:
        period = e.ref.partition("/")[2]
        followed = any(day >= e.day for day in facts.contacts)
        if e.void:
            closing[f"ae-follow-up|{period}"] = Closing(
                "cancelled", "The emergency encounter was entered in error or cancelled.")
        elif followed:
            closing[f"ae-follow-up|{period}"] = Closing(
                "completed", "A follow-up contact was recorded.")
        elif risky and e.day >= as_of - timedelta(days=14) or ("ae-follow-up", period) in \
                open_items:
            what = "A&E attendance" if e.kind == "ae" else "emergency discharge"
            wanted.append(Wanted("ae-follow-up", pid, period, e.ref,
                                 f"{what} on {e.day.isoformat()} ({risky or 'high risk'}): "
                                 "follow up within 2 working days",
                                 due("ae-follow-up", e.day), coordinator))
    # 4. medication review for polypharmacy
    if facts.medicines >= POLYPHARMACY and not facts.reviewed:
        wanted.append(Wanted("med-review", pid, held("med-review", str(as_of.year)), None,
                             f"{facts.medicines} medicines in 12 months, no medication "
                             "review in 12 months", due("med-review", as_of)))
    elif facts.reviewed:
        closing["med-review"] = Closing("completed", "A medication review was recorded.")
    else:
        closing["med-review"] = Closing("cancelled", "Fewer than 10 medicines now.")
    # 5. social care referral not acknowledged within 5 working days
    for sr_id, authored, acked in facts.referrals:
        if acked:
            closing[f"social-referral|{sr_id}"] = Closing(
                "completed", "Social care acknowledged the referral.")
        elif authored is not None and add_working_days(authored, 5) < as_of:
            wanted.append(Wanted("social-referral", pid, sr_id, f"ServiceRequest/{sr_id}",
                                 f"Social care referral of {authored.isoformat()} not "
                                 "acknowledged after 5 working days", as_of))
    # 6. a message from the patient or carer unanswered for more than 2 working days
    for comm_id, sent in facts.messages:
        day = day_of(sent)
        assert day is not None
        if facts.replied is not None and facts.replied >= sent:
            closing[f"unanswered-message|{comm_id}"] = Closing(
                "completed", "Staff answered the message.")
        elif add_working_days(day, 2) < as_of:
            wanted.append(Wanted("unanswered-message", pid, comm_id,
                                 f"Communication/{comm_id}",
                                 f"Message of {day.isoformat()} unanswered for more than 2 "
                                 "working days", as_of, coordinator))
    # 7. risk band rose since the last stratification
    for risk in facts.risks:
        order = ORDER.get(risk.method, ())
        if (risk.previous_band in order and risk.band in order
                and order.index(risk.band) > order.index(risk.previous_band)):
            what = "frailty" if risk.method == FRAILTY else "admission risk"
            wanted.append(Wanted("risk-rose", pid, f"{risk.ref}|{risk.version}", risk.ref,
                                 f"{what} rose from {risk.previous_band} to {risk.band}",
                                 due("risk-rose", as_of), coordinator))
    return wanted, closing


def closing_for(rule: str, period: str, closing: dict[str, Closing]) -> Closing:
    """How the open item (rule, period) that is no longer wanted closes."""
    found = closing.get(f"{rule}|{period}") or closing.get(rule)
    if found is not None:
        return found
    if rule == "risk-rose":
        return Closing("cancelled", "A newer assessment replaced the one whose band rose.")
    if rule == "review-due":
        return Closing("cancelled", "The care plan is no longer active.")
    return Closing("cancelled", "What caused this item is no longer in the record.")
