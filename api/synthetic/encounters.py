"""Contacts over the last year and booked ones ahead: Encounter and Appointment.

Rates per person per year (see data/SOURCES.md): GP practice contacts from NHS Digital
*Appointments in General Practice*; A&E attendances and emergency admissions from *Hospital
Accident & Emergency Activity* and *Admitted Patient Care Activity* 2022-23. All rise with
age and are scaled by the person's latent frailty, so the frail have more of each.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from api.synthetic.clinical import coding
from api.synthetic.record import Record, at, instant, stamp
from careplans.codes import common

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ADMIT_SOURCE = "http://terminology.hl7.org/CodeSystem/admit-source"
DISCHARGE = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
APPOINTMENT_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0276"
HOME_VISIT = "439708006"  # Home visit (procedure), from the eFI housebound list

# (lowest age, GP-practice contacts, A&E attendances, emergency admissions) per year.
RATES = ((0, 3.0, 0.40, 0.06), (5, 1.5, 0.25, 0.03), (16, 2.5, 0.32, 0.05),
         (45, 3.5, 0.30, 0.07), (65, 5.0, 0.35, 0.12), (75, 6.5, 0.55, 0.25),
         (85, 7.5, 0.90, 0.45))


def _rates(age: int) -> tuple[float, float, float]:
    row = RATES[0]
    for candidate in RATES:
        if age >= candidate[0]:
            row = candidate
    return row[1], row[2], row[3]


def _encounter(rec: Record, *, klass: tuple[str, str], type_: dict[str, Any], start: str,
               end: str, provider: str, who: str | None = None,
               **extra: Any) -> str:
    enc: dict[str, Any] = {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": ACT_CODE, "code": klass[0], "display": klass[1]},
        "type": [type_], "subject": rec.subject,
        "period": {"start": start, "end": end},
        "serviceProvider": {"reference": provider},
    }
    if who:
        enc["participant"] = [{"individual": {"reference": who}}]
    enc.update(extra)
    return rec.add(enc)


def encounters(rec: Record) -> None:
    gp_rate, ae_rate, admit_rate = _rates(rec.age)
    burden = 1 + 0.12 * len(rec.conditions)
    for _ in range(min(30, rec.poisson(gp_rate * rec.frailty_half * burden))):
        day = rec.days_ago(1, 365)
        hour, minute = rec.working_time()
        by_nurse = rec.chance(0.3)
        who = rec.nurse() if by_nurse else rec.gp
        reason = rec.rng.choice(list(rec.conditions.values())) if rec.conditions and \
            rec.chance(0.5) else None
        start = at(day, hour, minute)
        _encounter(rec, klass=("AMB", "ambulatory"),
                   type_={"text": "Practice nurse appointment" if by_nurse
                          else "General practice consultation"},
                   start=stamp(start), end=stamp(start + timedelta(minutes=10)),
                   provider=rec.practice.ref, who=who.practitioner_role,
                   **({"reasonReference": [{"reference": reason}]} if reason else {}))
    if rec.has("housebound", "requiring-care") and rec.age >= 65:
        visit = coding(HOME_VISIT) if rec.has("housebound") else {"text": "Community nursing visit"}
        for _ in range(rec.poisson(10 * rec.frailty_full)):
            day = rec.days_ago(1, 365)
            hour, minute = rec.working_time()
            start = at(day, hour, minute)
            _encounter(rec, klass=("HH", "home health"), type_=visit,
                       start=stamp(start), end=stamp(start + timedelta(minutes=40)),
                       provider=rec.network.community_nursing,
                       who=rec.staff("community-nurse").practitioner_role)
    for _ in range(rec.poisson(ae_rate * rec.frailty_full)):
        _emergency(rec, admit=False)
    for _ in range(rec.poisson(admit_rate * rec.frailty_full)):
        _emergency(rec, admit=True)


def _emergency(rec: Record, *, admit: bool) -> None:
    """An A&E attendance at the hospital; an emergency admission comes in through A&E."""
    day = rec.days_ago(2, 365)
    arrive = at(day, rec.rng.randint(0, 23), rec.rng.randint(0, 59))
    leave = arrive + timedelta(minutes=rec.rng.randint(50, 300))
    ae_code, ae_term = common("A&E attendance")
    _encounter(rec, klass=("EMER", "emergency"), type_=coding(ae_code, ae_term),
               start=stamp(arrive), end=stamp(leave), provider=rec.network.hospital)
    if not admit:
        return
    stay = 1 + int(rec.rng.expovariate(1 / (3 + 0.08 * max(0, rec.age - 60))))
    home = max(min(day + timedelta(days=stay), rec.as_of), leave.date() + timedelta(days=1))
    admit_code, admit_term = common("emergency hospital admission")
    _encounter(rec, klass=("IMP", "inpatient encounter"), type_=coding(admit_code, admit_term),
               start=stamp(leave), end=instant(home, 11, 0), provider=rec.network.hospital,
               hospitalization={
                   "admitSource": coding("emd", "From accident/emergency department",
                                         ADMIT_SOURCE),
                   "dischargeDisposition": coding("home", "Home", DISCHARGE)})


def appointments(rec: Record) -> None:
    """Booked appointments in the next eight weeks: long-term condition reviews, home visits."""
    long_term = rec.has("hypertension", "diabetes", "copd", "asthma", "heart-failure", "ckd",
                        "atrial-fibrillation", "chd", "stroke")
    if long_term and rec.chance(0.35):
        _appointment(rec, rec.nurse().practitioner_role, "Long-term condition review",
                     "ROUTINE", "Routine appointment")
    if rec.chance(0.04 + 0.002 * rec.age):
        _appointment(rec, rec.gp.practitioner_role, "GP appointment", "FOLLOWUP",
                     "A follow up visit from a previous appointment")
    if rec.has("housebound") and rec.chance(0.6):
        _appointment(rec, rec.staff("community-nurse").practitioner_role,
                     "Community nursing home visit", "FOLLOWUP",
                     "A follow up visit from a previous appointment")


def _appointment(rec: Record, who: str, what: str, type_code: str, type_display: str) -> str:
    day = rec.days_ahead(1, 56)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    start = at(day, *rec.working_time())
    return rec.add({
        "resourceType": "Appointment", "status": "booked",
        "serviceType": [{"text": what}],
        "appointmentType": coding(type_code, type_display, APPOINTMENT_TYPE),
        "description": what,
        "start": stamp(start), "end": stamp(start + timedelta(minutes=15)),
        "participant": [
            {"actor": {"reference": rec.patient_ref}, "required": "required",
             "status": "accepted"},
            {"actor": {"reference": who}, "required": "required", "status": "accepted"},
        ],
    })
