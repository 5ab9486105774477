"""What the worklist rules read of the record, set-based from the search index.

A handful of queries for the whole list (or for the patients of an event), each over one
resource type's index rows (fhir/schema.py: sp_token, sp_date, sp_reference, sp_number),
none per patient; only active anticipatory CarePlans (their review date and coordinator
are not indexed) and the previous versions of RiskAssessments (history is not indexed) are
parsed. The same SQL runs on SQLite and PostgreSQL. The decisions are pure (triggers.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from careplans.plans import model
from careplans.risk.admission import ADMISSION_CODES, AE_CODES
from careplans.risk.assessment import METHOD_SYSTEM
from careplans.risk.evidence import MEDICATION_NOT_ISSUED
from fhir.schema import history, resource, sp_date, sp_number, sp_reference, sp_token

REFERRAL_CATEGORY = ("https://carenet.invalid/fhir/CodeSystem/referral-category", "social-care")
# Procedure codes that record a medication review (careplans/data/codes/snomed-common.csv).
MEDICATION_REVIEW = ("182836005", "314530002", "1239511000000100")
ACKNOWLEDGED = ("accepted", "in-progress", "on-hold", "completed")
CONTACT_CLASSES = ("AMB", "HH", "VR")  # a follow-up: in clinic, at home, or by phone/video
ENCOUNTER_VOID = ("entered-in-error", "cancelled")
PATIENT_SENDERS = ("Patient", "RelatedPerson")
STAFF_SENDERS = ("Practitioner", "PractitionerRole", "Organization", "CareTeam")
WINDOW_DAYS = 14  # emergencies older than this do not start a follow-up


def epoch(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def day_of(value: float | None) -> date | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).date()


@dataclass(slots=True)
class Risk:
    ref: str  # RiskAssessment/id
    version: int
    method: str
    band: str | None  # efi-band or risk-probability code
    score: float | None = None
    previous_band: str | None = None


@dataclass(slots=True)
class Emergency:
    ref: str
    kind: str  # "ae" or "discharge"
    day: date
    void: bool


@dataclass(slots=True)
class Facts:
    """All the rules need of one patient."""

    risks: list[Risk] = field(default_factory=list)
    # (plan id, coordinator reference, review date) of each active anticipatory plan
    plans: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    emergencies: list[Emergency] = field(default_factory=list)
    contacts: list[date] = field(default_factory=list)
    medicines: int = 0
    reviewed: bool = False
    referrals: list[tuple[str, date | None, bool]] = field(default_factory=list)  # id, day, ack
    messages: list[tuple[str, float]] = field(default_factory=list)  # id, sent
    replied: float | None = None  # newest staff message sent to the patient


def _live(type_: str, scope: Sequence[str] | None) -> list[sa.ColumnElement]:
    found = [resource.c.type == type_, resource.c.deleted.is_(False),
             resource.c.patient_id.is_not(None)]
    if scope is not None:
        found.append(resource.c.patient_id.in_(scope))
    return found


def _token(param: str, *, system: str | None = None) -> sa.ScalarSelect:
    t = sp_token.alias()
    where = [t.c.rid == resource.c.rid, t.c.param == param]
    if system is not None:
        where.append(t.c.system == system)
    return sa.select(sa.func.max(t.c.code)).where(*where).scalar_subquery()


def _has_token(param: str, codes: Sequence[str], system: str | None = None) -> sa.Exists:
    t = sp_token.alias()
    where = [t.c.rid == resource.c.rid, t.c.param == param, t.c.code.in_(codes)]
    if system is not None:
        where.append(t.c.system == system)
    return sa.exists().where(*where)


def _date(param: str, column: str = "lo") -> sa.ScalarSelect:
    d = sp_date.alias()
    agg = sa.func.min if column == "lo" else sa.func.max
    return (sa.select(agg(d.c[column])).where(d.c.rid == resource.c.rid, d.c.param == param)
            .scalar_subquery())


async def load(conn: AsyncConnection, as_of: date, scope: Sequence[str] | None,
               follow: Sequence[str] = ()) -> dict[str, Facts]:
    """The Facts of every patient with anything a rule looks at (of `scope` only, when
    given). `follow`: Encounter ids of open follow-up items, read whatever their date."""
    facts: dict[str, Facts] = defaultdict(Facts)
    await _risks(conn, scope, facts)
    await _plans(conn, scope, facts)
    await _encounters(conn, as_of, scope, follow, facts)
    await _medicines(conn, as_of, scope, facts)
    await _referrals(conn, scope, facts)
    await _messages(conn, scope, facts)
    return facts


async def _risks(conn: AsyncConnection, scope: Sequence[str] | None,
                 facts: dict[str, Facts]) -> None:
    n = sp_number.alias()
    score = (sa.select(sa.func.max(n.c.value))
             .where(n.c.rid == resource.c.rid, n.c.param == "probability").scalar_subquery())
    rows = await conn.execute(
        sa.select(resource.c.patient_id, resource.c.rid, resource.c.id, resource.c.version,
                  _token("method", system=METHOD_SYSTEM), sp_token.c.code, score)
        .join_from(resource, sp_token, sp_token.c.rid == resource.c.rid)
        .where(*_live("RiskAssessment", scope), sp_token.c.param == "risk",
               sp_token.c.system.in_(_BAND_SYSTEMS)))
    later: dict[int, Risk] = {}
    for pid, rid, id_, version, method, band, value in rows:
        risk = Risk(f"RiskAssessment/{id_}", version, method or "", band, value)
        facts[pid].risks.append(risk)
        if version > 1:
            later[rid] = risk
    if not later:
        return
    rids = list(later)
    for start in range(0, len(rids), 5000):
        part = rids[start:start + 5000]
        found = await conn.execute(
            sa.select(history.c.rid, history.c.version, sa.cast(history.c.content, sa.Text))
            .where(history.c.rid.in_(part)))
        for rid, version, content in found:
            risk = later[rid]
            if version == risk.version - 1 and content:
                risk.previous_band = band_of(orjson.loads(content))


_BAND_SYSTEMS = ("https://carenet.invalid/fhir/CodeSystem/efi-band",
                 "http://terminology.hl7.org/CodeSystem/risk-probability")


def band_of(assessment: dict) -> str | None:
    for prediction in assessment.get("prediction") or ():
        for coding in (prediction.get("qualitativeRisk") or {}).get("coding") or ():
            if coding.get("system") in _BAND_SYSTEMS:
                return coding.get("code")
    return None


async def _plans(conn: AsyncConnection, scope: Sequence[str] | None,
                 facts: dict[str, Facts]) -> None:
    category = model.codes()["category"]
    rows = await conn.execute(
        sa.select(resource.c.patient_id, resource.c.id, sa.cast(resource.c.content, sa.Text))
        .where(*_live("CarePlan", scope), _has_token("status", ("active",)),
               _has_token("category", (category.code,), category.system)))
    for pid, id_, content in rows:
        plan = orjson.loads(content)
        author = (plan.get("author") or {}).get("reference")
        facts[pid].plans.append((id_, author if isinstance(author, str) else None,
                                 model.review_date(plan)))


async def _encounters(conn: AsyncConnection, as_of: date, scope: Sequence[str] | None,
                      follow: Sequence[str], facts: dict[str, Facts]) -> None:
    start, end = epoch(as_of - timedelta(days=WINDOW_DAYS)), epoch(as_of + timedelta(days=1))
    lo, hi = _date("date", "lo"), _date("date", "hi")
    in_window = sa.and_(hi >= start, lo < end)
    where = in_window if not follow else sa.or_(in_window, resource.c.id.in_(list(follow)))
    ae = _has_token("type", tuple(AE_CODES))
    admitted = _has_token("type", tuple(ADMISSION_CODES))
    rows = await conn.execute(
        sa.select(resource.c.patient_id, resource.c.id, _token("status"), _token("class"),
                  ae, admitted, lo, hi)
        .where(*_live("Encounter", scope), where))
    for pid, id_, status, klass, is_ae, is_admission, first, last in rows:
        void = status in ENCOUNTER_VOID
        if klass == "EMER" or is_ae:
            if first is not None:
                facts[pid].emergencies.append(Emergency(f"Encounter/{id_}", "ae",
                                                        day_of(first), void))
        elif is_admission:
            if last is not None and status == "finished":  # discharged: the period ended
                facts[pid].emergencies.append(Emergency(f"Encounter/{id_}", "discharge",
                                                        day_of(last), void))
        elif klass in CONTACT_CLASSES and status == "finished" and first is not None:
            facts[pid].contacts.append(day_of(first))


async def _medicines(conn: AsyncConnection, as_of: date, scope: Sequence[str] | None,
                     facts: dict[str, Facts]) -> None:
    since, end = epoch(as_of) - 365 * 86400, epoch(as_of + timedelta(days=1))
    issued = sp_date.alias()
    rows = await conn.execute(
        sa.select(resource.c.patient_id, sa.func.count(sp_token.c.code.distinct()))
        .join_from(resource, sp_token, sp_token.c.rid == resource.c.rid)
        .join(issued, sa.and_(issued.c.rid == resource.c.rid, issued.c.param == "authoredon"))
        .where(*_live("MedicationRequest", scope), sp_token.c.param == "code",
               issued.c.hi > since, issued.c.lo < end,
               ~_has_token("status", tuple(MEDICATION_NOT_ISSUED)))
        .group_by(resource.c.patient_id))
    for pid, count in rows:
        facts[pid].medicines = count
    reviews = await conn.execute(
        sa.select(resource.c.patient_id).distinct()
        .where(*_live("Procedure", scope), _has_token("code", MEDICATION_REVIEW),
               _has_token("status", ("completed",)), _date("date", "hi") > since))
    for (pid,) in reviews:
        facts[pid].reviewed = True


async def _referrals(conn: AsyncConnection, scope: Sequence[str] | None,
                     facts: dict[str, Facts]) -> None:
    system, code = REFERRAL_CATEGORY
    rows = (await conn.execute(
        sa.select(resource.c.patient_id, resource.c.id, _date("authored"))
        .where(*_live("ServiceRequest", scope), _has_token("status", ("active",)),
               _has_token("category", (code,), system)))).all()
    if not rows:
        return
    ids = [r[1] for r in rows]
    ref = sp_reference
    acked = set((await conn.execute(
        sa.select(ref.c.target_id).join_from(resource, ref, ref.c.rid == resource.c.rid)
        .where(resource.c.type == "Task", resource.c.deleted.is_(False),
               ref.c.param == "based-on", ref.c.target_type == "ServiceRequest",
               ref.c.target_id.in_(ids), _has_token("status", ACKNOWLEDGED)))).scalars())
    for pid, id_, authored in rows:
        facts[pid].referrals.append((id_, day_of(authored), id_ in acked))


async def _messages(conn: AsyncConnection, scope: Sequence[str] | None,
                    facts: dict[str, Facts]) -> None:
    ref = sp_reference
    sent = _date("sent")
    rows = await conn.execute(
        sa.select(resource.c.patient_id, resource.c.id, ref.c.target_type, sent)
        .join_from(resource, ref, ref.c.rid == resource.c.rid)
        .where(*_live("Communication", scope), ref.c.param == "sender",
               ref.c.target_type.in_(PATIENT_SENDERS + STAFF_SENDERS),
               _has_token("status", ("completed",))))
    for pid, id_, sender, when in rows:
        if when is None:
            continue
        if sender in PATIENT_SENDERS:
            facts[pid].messages.append((id_, when))
        else:
            prior = facts[pid].replied
            facts[pid].replied = when if prior is None else max(prior, when)


async def practices(conn: AsyncConnection, patient_ids: Sequence[str]) -> dict[str, str]:
    """The registered practice (Organization id) of each patient that has one."""
    found: dict[str, str] = {}
    ids = sorted(set(patient_ids))
    for start in range(0, len(ids), 5000):
        rows = await conn.execute(
            sa.select(resource.c.id, sa.func.min(sp_reference.c.target_id))
            .join_from(resource, sp_reference, sp_reference.c.rid == resource.c.rid)
            .where(resource.c.type == "Patient", resource.c.id.in_(ids[start:start + 5000]),
                   sp_reference.c.param == "general-practitioner",
                   sp_reference.c.target_type == "Organization")
            .group_by(resource.c.id))
        found.update(dict(rows.all()))
    return found
