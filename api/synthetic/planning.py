"""Proactive care already under way, and what patients add themselves.

Some frail patients already have an anticipatory care plan (CarePlan) with a care team and
goals; many do not yet, which is what the network's worklists are for. Some patients record
home blood pressure readings and their own goals (performer / expressedBy = the Patient).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from api.synthetic import people, portal
from api.synthetic.clinical import blood_pressure, efi_band
from api.synthetic.record import Record
from careplans.plans import model as plan_model

GOALS = ("Stay living in my own home", "Walk to the shops twice a week",
         "Keep going to the Tuesday lunch club", "Be well enough for my grandson's wedding",
         "Fewer trips to hospital", "Manage my breathing so I can garden",
         "Not to fall again", "Sleep through the night")
MATTERS = ("My wife and our dog", "Staying independent", "Seeing my grandchildren",
           "My garden", "My church community", "Being at home, not in hospital")


def carers(rec: Record) -> None:
    """An unpaid carer for some older people with care needs (RelatedPerson)."""
    needs = rec.has("dementia", "housebound", "requiring-care", "parkinsons") or \
        efi_band(rec.efi) in ("moderate", "severe")
    if rec.age >= 60 and needs and rec.chance(0.55):
        resource = next(r for r in rec.resources if r["resourceType"] == "Patient")
        rec.carer_ref = rec.add(people.carer(
            rng=rec.rng, patient_ref=rec.patient_ref, patient_resource=resource,
            spouse_possible=not rec.has("social-isolation")))
        rec.add(portal.proxy_grant(rec.patient_ref, rec.carer_ref, rec.as_of.isoformat()))


def _participant(role: str, ref: str) -> dict[str, Any]:
    return {"role": [{"text": role}], "member": {"reference": ref}}


def care_plans(rec: Record) -> None:
    """For about half the moderately or severely frail: a care team, goals and a plan."""
    band = efi_band(rec.efi)
    if rec.age < 65 or band not in ("moderate", "severe"):
        return
    if not rec.chance(0.6 if band == "severe" else 0.35):
        return
    coordinator = rec.staff("case-manager")
    members = [_participant("Care coordinator", coordinator.practitioner_role),
               _participant("Named GP", rec.gp.practitioner_role),
               _participant("Patient", rec.patient_ref)]
    if rec.has("housebound", "requiring-care"):
        members.append(_participant("Community nurse",
                                    rec.staff("community-nurse").practitioner_role))
    if rec.has("requiring-care", "social-isolation"):
        members.append(_participant("Social worker",
                                    rec.staff("social-worker").practitioner_role))
    if rec.carer_ref:
        members.append(_participant("Carer", rec.carer_ref))
    start = rec.days_ago(20, 400)
    team = rec.add({
        "resourceType": "CareTeam", "status": "active", "name": "Anticipatory care team",
        "subject": rec.subject, "period": {"start": start.isoformat()},
        "participant": members,
        "managingOrganization": [{"reference": rec.network.network}],
    })
    goal_texts = rec.rng.sample(GOALS, 2)
    goals = [_goal(rec, text, start) for text in goal_texts]
    review = start + timedelta(days=rec.rng.choice((180, 365)))
    coordinator_ref = {"reference": coordinator.practitioner_role,
                       "display": f"{coordinator.name} (care coordinator)"}
    gp_ref = {"reference": rec.gp.practitioner_role, "display": f"{rec.gp.name} (GP)"}
    # The shape of careplans/plans/model.py: coordinator = author, review date = the
    # 'Review of care plan' activity, what matters = goals the patient expressed.
    rec.add({
        "resourceType": "CarePlan", "status": "active", "intent": "plan",
        "category": [plan_model.category()],
        "title": "Anticipatory care plan",
        "description": "Proactive plan agreed with the patient: what matters to them, goals, "
                       "who to call, and what to do if they become unwell.",
        "subject": rec.subject,
        "period": {"start": start.isoformat()},
        "created": start.isoformat(),
        "author": coordinator_ref,
        "careTeam": [{"reference": team, "display": "Anticipatory care team"}],
        "addresses": [{"reference": ref} for key, ref in rec.conditions.items()
                      if key in ("frailty", "dementia", "heart-failure", "copd", "falls",
                                 "parkinsons", "diabetes")][:5],
        "goal": [plan_model.goal_ref(g.partition("/")[2], text, what_matters=True)
                 for g, text in zip(goals, goal_texts, strict=True)],
        "activity": [
            plan_model.contingency(
                "I become more unwell, breathless or confused, or I fall",
                "Call the care coordinator or the GP practice the same day",
                out_of_hours="NHS 111; 999 in an emergency. I would prefer to be treated at "
                             "home if that is safe.",
                performer=coordinator_ref),
            {"detail": {"kind": "Appointment", "status": "scheduled",
                        "description": "Structured medication review with the practice "
                                       "pharmacist",
                        "performer": [gp_ref]}},
            {"detail": {"kind": "Task", "status": "in-progress",
                        "description": "Care coordinator telephone check every month",
                        "performer": [coordinator_ref]}},
            plan_model.review_activity(review, coordinator_ref),
        ],
        "note": [
            {"text": f"What matters to me: {rec.rng.choice(MATTERS)}."},
        ],
    })


def _goal(rec: Record, text: str, start: Any) -> str:
    return rec.add({
        "resourceType": "Goal", "lifecycleStatus": "active",
        "description": {"text": text}, "subject": rec.subject,
        "startDate": start.isoformat(),
        "expressedBy": {"reference": rec.patient_ref},
    })


def patient_entered(rec: Record) -> None:
    """Home blood pressure readings and personal goals entered through the patient portal."""
    if rec.has("hypertension") and rec.chance(0.15):
        first = rec.days_ago(3, 40)
        for n in range(3):
            blood_pressure(rec, first + timedelta(days=n), rec.rng.gauss(138, 12),
                           rec.rng.gauss(84, 8), performer=rec.patient_ref,
                           method={"text": "Home blood pressure monitor"})
    if 18 <= rec.age and rec.chance(0.03):
        _goal(rec, rec.rng.choice(GOALS), rec.days_ago(1, 120))
