"""Legitimate relationships: which patients' records a principal may see at all.

A member of staff (or a member practice's system) has one with a patient when
- REGISTERED: the patient is registered at their practice: `Patient.generalPractitioner`
  (search parameter `general-practitioner`) is their Organization (or them);
- CARE_TEAM: they are a member of an active CareTeam of the patient: `CareTeam.participant
  .member` (`participant`) is their Practitioner, PractitionerRole or Organization;
- REFERRAL: there is an open referral to them: a Task whose `owner` is them or their
  organisation (status requested ... on-hold), or a ServiceRequest whose `performer` is
  (status active or on-hold);
- SELF_CLAIMED: they claimed one, with a reason: a `Basic` (code `self-claimed-relationship`)
  whose `author` is them and `subject` the patient, written through `self_claim` so that the
  claim itself is stored, audited and alerted on; deleting it ends the relationship.
A patient has SELF with their own record; a carer PROXY with the patient of each active
RelatedPerson they are (what the proxy grant opens is consent/consents.py).

Each relationship is a SELECT of patient ids over the resource table and the reference index,
driven by the (param, target) lookup index of `sp_reference`, so its cost follows the number
of resources that point at the principal, not the size of the database (100k patients are
about 8k per practice). `condition` tests `row.patient_id IN (...)`: an uncorrelated
semi-join (a hashed subplan on PostgreSQL, one materialised list on SQLite), as
fhir/search/compartment.py does. `resolve` asks the same SELECTs about given patients.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from consent.principals import Kind, Principal, Relationship
from fhir.schema import INDEX_TABLES, resource

# A local code system: a self-claimed relationship has no HL7 or NHS code.
ACCESS_SYSTEM = "https://carenet.invalid/fhir/CodeSystem/access-relationship"
SELF_CLAIM = "self-claimed-relationship"
REASON_EXTENSION = "https://carenet.invalid/fhir/StructureDefinition/access-reason"
# Open states (https://hl7.org/fhir/R4/valueset-task-status.html, request-status, care-team-status).
CARE_TEAM_OPEN = ("active",)
TASK_OPEN = ("requested", "received", "accepted", "ready", "in-progress", "on-hold")
SERVICE_REQUEST_OPEN = ("active", "on-hold")


def _targets(ref: Any, refs: Iterable[str]) -> Any:
    """SQL: the reference index row `ref` points at one of `refs` ("Type/id")."""
    by_type: dict[str, list[str]] = {}
    for r in refs:
        kind, _, id_ = r.partition("/")
        if kind and id_:
            by_type.setdefault(kind, []).append(id_)
    if not by_type:
        return sa.false()
    return sa.or_(*(sa.and_(ref.c.target_type == kind, ref.c.target_id.in_(sorted(ids)))
                    for kind, ids in sorted(by_type.items())))


def _pointing(source_type: str, param: str, refs: Iterable[str], patients: Sequence[str] | None,
              *conditions: Any, statuses: tuple[str, ...] = ()) -> sa.Select:
    """Patient ids of current `source_type` resources whose `param` points at one of `refs`."""
    src = resource.alias()
    ref = INDEX_TABLES["reference"].alias()
    where = [ref.c.param == param, _targets(ref, refs), src.c.type == source_type,
             src.c.deleted.is_(False), src.c.patient_id.is_not(None)]
    if statuses:
        token = INDEX_TABLES["token"].alias()
        where.append(sa.exists().where(token.c.rid == src.c.rid, token.c.param == "status",
                                       token.c.code.in_(statuses)))
    if patients is not None:
        where.append(src.c.patient_id.in_(patients))
    return (sa.select(src.c.patient_id.label("pid"))
            .select_from(ref.join(src, src.c.rid == ref.c.rid))
            .where(*where, *(c(src) for c in conditions)))


def registered(principal: Principal, patients: Sequence[str] | None = None) -> sa.Select:
    """Patients whose generalPractitioner is the principal's organisation (or them)."""
    src = resource.alias()
    ref = INDEX_TABLES["reference"].alias()
    where = [ref.c.param == "general-practitioner", _targets(ref, principal.references),
             src.c.type == "Patient", src.c.deleted.is_(False)]
    if patients is not None:
        where.append(src.c.id.in_(patients))
    return (sa.select(src.c.id.label("pid"))
            .select_from(ref.join(src, src.c.rid == ref.c.rid)).where(*where))


def care_team(principal: Principal, patients: Sequence[str] | None = None) -> sa.Select:
    return _pointing("CareTeam", "participant", principal.references, patients,
                     statuses=CARE_TEAM_OPEN)


def referral(principal: Principal, patients: Sequence[str] | None = None) -> list[sa.Select]:
    """Two SELECTs: open Tasks they own, open ServiceRequests they perform."""
    return [_pointing("Task", "owner", principal.references, patients, statuses=TASK_OPEN),
            _pointing("ServiceRequest", "performer", principal.references, patients,
                      statuses=SERVICE_REQUEST_OPEN)]


def _is_self_claim(row: Any) -> Any:
    token = INDEX_TABLES["token"].alias()
    return sa.exists().where(token.c.rid == row.c.rid, token.c.param == "code",
                             token.c.system == ACCESS_SYSTEM, token.c.code == SELF_CLAIM)


def self_claimed(principal: Principal, patients: Sequence[str] | None = None) -> sa.Select:
    """Patients the principal (the person, not their organisation) claimed a relationship to."""
    return _pointing("Basic", "author", principal.persons, patients, _is_self_claim)


def proxy(principal: Principal, patients: Sequence[str] | None = None) -> sa.Select:
    """Patients of the active RelatedPersons a carer is."""
    rp = resource.alias()
    token = INDEX_TABLES["token"].alias()
    where = [rp.c.type == "RelatedPerson", rp.c.id.in_(principal.related_persons),
             rp.c.deleted.is_(False), rp.c.patient_id.is_not(None),
             sa.not_(sa.exists().where(token.c.rid == rp.c.rid, token.c.param == "active",
                                       token.c.code == "false"))]
    if patients is not None:
        where.append(rp.c.patient_id.in_(patients))
    return sa.select(rp.c.patient_id.label("pid")).where(*where)


def paths(principal: Principal, patients: Sequence[str] | None = None
          ) -> dict[Relationship, list[sa.Select]]:
    """The relationship SELECTs that apply to the principal's kind (none for network-wide
    principals and patients, whose reach is not a list of patients). Kept as lists of plain
    SELECTs: SQLite refuses a compound SELECT nested in another."""
    if principal.kind is Kind.STAFF:
        return {Relationship.REGISTERED: [registered(principal, patients)],
                Relationship.CARE_TEAM: [care_team(principal, patients)],
                Relationship.REFERRAL: referral(principal, patients),
                Relationship.SELF_CLAIMED: [self_claimed(principal, patients)]}
    if principal.kind is Kind.SYSTEM and principal.organizations:
        return {Relationship.REGISTERED: [registered(principal, patients)],
                Relationship.CARE_TEAM: [care_team(principal, patients)],
                Relationship.REFERRAL: referral(principal, patients)}
    if principal.kind is Kind.CARER:
        return {Relationship.PROXY: [proxy(principal, patients)]}
    return {}


def network_wide(principal: Principal) -> bool:
    """A principal whose reach is every patient: a privacy officer, a network system job."""
    return principal.kind is Kind.PRIVACY_OFFICER or (
        principal.kind is Kind.SYSTEM and not principal.organizations)


def patients_of(principal: Principal, kinds: Iterable[Relationship] | None = None
                ) -> sa.CompoundSelect | sa.Select | None:
    """One SELECT of the ids of the patients the principal has (one of `kinds` of) a
    relationship with; None when there is no such list (no path applies)."""
    wanted = None if kinds is None else set(kinds)
    chosen = [s for k, found in paths(principal).items() if wanted is None or k in wanted
              for s in found]
    if not chosen:
        return None
    return chosen[0] if len(chosen) == 1 else sa.union_all(*chosen)


_subqueries: dict[tuple[Any, ...], list[tuple[Relationship, Any]]] = {}


def _path_subqueries(principal: Principal) -> list[tuple[Relationship, Any]]:
    """The principal's relationship SELECTs as subqueries, built once per principal: they
    depend on who it is, not on the data, and building them costs more than running them."""
    key = (principal.kind, principal.user, principal.organizations, principal.identities)
    found = _subqueries.get(key)
    if found is None:
        if len(_subqueries) >= 1024:
            _subqueries.clear()
        found = _subqueries[key] = [(kind, select.subquery())
                                    for kind, selects in paths(principal).items()
                                    for select in selects]
    return found


def condition(principal: Principal, row: Any,
              kinds: Iterable[Relationship] | None = None) -> Any:
    """SQL: `row` (a resource row) belongs to a patient the principal has a relationship with.
    Rows of no patient are not matched here; network-wide principals match every row."""
    if network_wide(principal):
        return sa.true()
    if principal.kind is Kind.PATIENT:
        return row.c.patient_id == principal.patient_id if principal.patient_id else sa.false()
    wanted = None if kinds is None else set(kinds)
    # Correlated: the database checks the row's one patient through the indexes, where
    # `patient_id IN (SELECT ...)` would build the whole list (a practice's ten thousand
    # patients) on every query.
    clauses = [sa.exists().where(sub.c.pid == row.c.patient_id)
               for kind, sub in _path_subqueries(principal)
               if wanted is None or kind in wanted]
    return sa.or_(*clauses) if clauses else sa.false()


def member_of(column: Any, ids: Iterable[str], dialect: str) -> Any:
    """SQL: `column` is one of `ids`, with the ids as ONE bound value however many they are
    (a PostgreSQL text array; a JSON array read by SQLite's json_each), so a GP's thousands
    of patients neither swell the statement nor count against the bound-value limits."""
    values = sorted(ids)
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(sa.Text)))
    table = sa.func.json_each(sa.bindparam(None, orjson.dumps(values).decode(),
                                           type_=sa.Text)).table_valued("value")
    return column.in_(sa.select(table.c.value))


async def listed(conn: AsyncConnection, principal: Principal, kinds: Iterable[Relationship],
                 limit: int) -> frozenset[str] | None:
    """The ids of the patients the principal reaches through `kinds`, or None when there are
    more than `limit` (then the SELECT itself is the better filter)."""
    select = patients_of(principal, kinds)
    if select is None:
        return frozenset()
    # No DISTINCT: the rows stream and the query stops at limit + 1 (a patient can come more
    # than once, so a list just under the limit may be refused; the SELECT then serves).
    sub = select.subquery()
    found = list((await conn.execute(sa.select(sub.c.pid).limit(limit + 1))).scalars())
    return frozenset(found) if len(found) <= limit else None


async def resolve(conn: AsyncConnection, principal: Principal, patient_ids: Iterable[str]
                  ) -> dict[str, frozenset[Relationship]]:
    """The relationships the principal has with each of `patient_ids` (for reads and writes)."""
    ids = sorted(set(patient_ids))
    found: dict[str, set[Relationship]] = {p: set() for p in ids}
    if not ids:
        return {}
    if network_wide(principal):
        return {p: frozenset({Relationship.NETWORK}) for p in ids}
    if principal.kind is Kind.PATIENT:
        return {p: frozenset({Relationship.SELF}) if p == principal.patient_id else frozenset()
                for p in ids}
    selects = []
    for kind, kind_selects in paths(principal, ids).items():
        for select in kind_selects:
            sub = select.subquery()
            selects.append(sa.select(sa.literal(kind.value).label("kind"), sub.c.pid))
    if selects:
        for kind, pid in (await conn.execute(sa.union_all(*selects))).all():
            found[pid].add(Relationship(kind))
    return {p: frozenset(r) for p, r in found.items()}


def self_claim(principal: Principal, patient_id: str, reason: str, when: str
               ) -> dict[str, Any]:
    """The `Basic` that records a self-claimed relationship of a member of staff to a patient,
    made at FHIR dateTime `when`. The caller stores it (stamped with meta.source as any
    write) and writes the AuditEvent and the privacy-officer alert in the same transaction."""
    if principal.kind is not Kind.STAFF:
        raise ValueError("Only a member of staff can claim a relationship to a patient.")
    if not reason.strip():
        raise ValueError("A self-claimed relationship needs a reason.")
    return {
        "resourceType": "Basic",
        "code": {"coding": [{"system": ACCESS_SYSTEM, "code": SELF_CLAIM,
                             "display": "Self-claimed legitimate relationship"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "author": {"reference": principal.user},
        "created": when[:10],
        "extension": [{"url": REASON_EXTENSION, "valueString": reason.strip()}],
    }
