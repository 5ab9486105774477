"""The one enforcement point: may this principal do this to this resource? Default deny.

Two faces of one rule (DESIGN.md, STYLE.md rule 6):
- `decide(ctx, interaction, resource_type, meta)`: pure, for one resource (read, vread,
  every write, each entry of a transaction, the target of a history or $everything);
- `search_filter(ctx, row, resource_type)`: the same rule as a SQL condition on a resource
  row, added to the matches of a search and to every row a search joins or returns (chains,
  _has, _include/_revinclude, $everything, history via the current row), so nothing the
  caller may not see is counted, paged or hinted at.

The rule, in order; the first that fails denies:
1. the role (or kind) may read / write the type (`roles`, data/role-access.csv);
2. the patient: their own record (patient), a proxied patient (carer), a legitimate
   relationship (staff, a member practice's system: `relationships`), or anyone (privacy
   officer, the network's own jobs); a resource of no patient needs only 1 and 4 (patients
   and carers see only the directory types of those);
3. the patient's Consents (`consents`), outside the registered practice, except to create;
   for a carer, the proxy grant. Consents govern disclosure to people: they do not bind the
   network's own backend services (a network-wide system principal, like a privacy officer),
   whose results reach people only through staff principals, to whom they apply;
4. the security labels (`labels`);
5. for a patient or carer writing: only what they entered themselves (meta.source), except
   the patient's own Consents (their sharing choices).
Break-glass: a member of staff with an open `BreakGlass` for a patient passes 2 and 3 for that
patient, and 4 for every label the table lets break-glass open (not SDV, not V); the decision
then says `break_glass=True`, and the caller writes the AuditEvent with purpose of use ETREAT
and raises the privacy-officer alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from consent import consents, labels, relationships, roles
from consent.principals import AccessContext, Kind, PatientFacts, Relationship
from consent.scope_rules import DIRECTORY_WHEN_UNOWNED, record_type
from fhir.registry import registry

READS = frozenset({"read", "vread", "search", "history"})
WRITES = frozenset({"create", "update", "patch", "delete"})
# Types a patient may change whoever recorded them: their own sharing choices.
PATIENT_OWNED = frozenset({"Consent"})
_OUTSIDE = (Relationship.CARE_TEAM, Relationship.REFERRAL, Relationship.SELF_CLAIMED)


@dataclass(frozen=True, slots=True)
class ResourceMeta:
    """What a decision needs of one resource: its patient (the compartment key the store
    keeps, `resource.patient_id`), its security labels, and meta.source (who wrote it)."""

    patient_id: str | None
    labels: frozenset[str] = frozenset()
    source: str | None = None

    @classmethod
    def of(cls, resource: dict[str, Any], patient_id: str | None) -> ResourceMeta:
        return cls(patient_id, labels.of_resource(resource),
                   (resource.get("meta") or {}).get("source"))

    @classmethod
    def of_row(cls, patient_id: str | None, security: str | None,
               source: str | None) -> ResourceMeta:
        return cls(patient_id, labels.of_column(security), source)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    break_glass: bool = False

    def __bool__(self) -> bool:
        return self.allowed


def _deny(reason: str) -> Decision:
    return Decision(False, reason)


def _in_compartment(resource_type: str) -> bool:
    return record_type(resource_type)


def decide(ctx: AccessContext, interaction: str, resource_type: str,
           meta: ResourceMeta) -> Decision:
    """Whether `ctx.principal` may do `interaction` to a `resource_type` described by `meta`."""
    p = ctx.principal
    if interaction not in READS | WRITES:
        return _deny(f"'{interaction}' is not an interaction the policy knows")
    need = roles.WRITE if interaction in WRITES else roles.READ
    if not roles.may(p, resource_type, need):
        return _deny(f"the {p.access_role or 'unknown'} role may not {need} {resource_type}")
    pid = meta.patient_id
    if p.kind in (Kind.PATIENT, Kind.CARER):
        return _personal(ctx, need, resource_type, meta)
    if pid is None:
        if labels.visible(p, meta.labels, source=meta.source):
            return Decision(True, "not part of any patient's record")
        return _deny("a sealed entry")
    facts = ctx.facts.get(pid)
    normal = _staff(ctx, interaction, resource_type, meta, facts)
    if normal.allowed:
        return normal
    bg = ctx.break_glass_for(pid)
    if bg is not None:
        if labels.visible(p, meta.labels, source=meta.source, break_glass=True):
            return Decision(True, f"break-glass: {bg.reason}", break_glass=True)
        return _deny("a sealed entry that break-glass does not open")
    return normal


def _staff(ctx: AccessContext, interaction: str, resource_type: str, meta: ResourceMeta,
           facts: PatientFacts | None) -> Decision:
    p = ctx.principal
    if relationships.network_wide(p):
        rels = frozenset({Relationship.NETWORK})
    elif facts is None:
        return _deny(f"nothing is known of Patient/{meta.patient_id} for this request")
    else:
        rels = facts.relationships
    if not rels:
        return _deny(f"no legitimate relationship with Patient/{meta.patient_id}")
    if (Relationship.NETWORK not in rels and Relationship.REGISTERED not in rels
            and interaction != "create"):
        sharing = facts.sharing if facts is not None else consents.NOTHING
        if not sharing.permits(resource_type, meta.labels):
            return _deny("the patient's consent does not allow sharing this with you")
    if not labels.visible(p, meta.labels, source=meta.source):
        return _deny("a sealed entry")
    return Decision(True, "relationship: " + ", ".join(sorted(r.value for r in rels)))


def _personal(ctx: AccessContext, need: str, resource_type: str,
              meta: ResourceMeta) -> Decision:
    """Patients and carers."""
    p = ctx.principal
    if meta.patient_id is None:
        if _in_compartment(resource_type):
            return _deny("an entry that belongs to no patient")
        if need == roles.WRITE:
            return _deny("patients and carers write only to a patient's record")
        return Decision(True, "directory information")
    if p.kind is Kind.PATIENT:
        if meta.patient_id != p.patient_id:
            return _deny("another patient's record")
        reason = "the patient's own record"
    else:
        facts = ctx.facts.get(meta.patient_id)
        if facts is None or Relationship.PROXY not in facts.relationships:
            return _deny(f"not a carer of Patient/{meta.patient_id}")
        if not facts.sharing.permits(resource_type, meta.labels):
            return _deny("the proxy grant does not cover this")
        reason = "proxy grant"
    if not labels.visible(p, meta.labels, source=meta.source):
        return _deny("a sealed entry")
    if need == roles.WRITE and meta.source != p.user and not (
            p.kind is Kind.PATIENT and resource_type in PATIENT_OWNED):
        return _deny("patients and carers may change only what they entered")
    return Decision(True, reason)


def needs_break_glass(ctx: AccessContext, patient_id: str | None) -> bool:
    """Access to this patient's record now rests on break-glass: audit it as ETREAT."""
    if ctx.break_glass_for(patient_id) is None:
        return False
    facts = ctx.facts.get(patient_id or "")
    return facts is None or not facts.relationships or facts.sharing != consents.EVERYTHING


def may_self_claim(ctx: AccessContext, patient_id: str, reason: str) -> Decision:
    """Whether the principal may claim a relationship with `patient_id` (then stored with
    `relationships.self_claim`, audited and alerted on)."""
    p = ctx.principal
    if p.kind is not Kind.STAFF or p.role is None:
        return _deny("only a member of staff with a known role can claim a relationship")
    if len(reason.strip()) < 10:
        return _deny("a self-claimed relationship needs a reason (at least 10 characters)")
    if not roles.may(p, "Patient", roles.READ):
        return _deny(f"the {p.access_role} role may not read patients")
    return Decision(True, f"self-claimed relationship with Patient/{patient_id}: "
                          f"{reason.strip()}")


# ---- SQL ----------------------------------------------------------------------------------

def _directory(row: Any, resource_type: str | None) -> Any:
    """SQL: the row is of a type that is never part of a patient's record."""
    if resource_type is not None:
        return sa.false() if _in_compartment(resource_type) else sa.true()
    return row.c.type.not_in(sorted(set(registry().compartment) - DIRECTORY_WHEN_UNOWNED))


def _reached(ctx: AccessContext, row: Any, key: str, kinds: tuple[Relationship, ...]) -> Any:
    """SQL: the row's patient is one the principal reaches through `kinds` (the listed ids
    when the context has them, else the relationship SELECT)."""
    ids = ctx.reach.get(key)
    if ids is None:
        return relationships.condition(ctx.principal, row, kinds)
    return relationships.member_of(row.c.patient_id, ids, ctx.dialect) if ids else sa.false()


def _consent_ok(ctx: AccessContext, row: Any, resource_type: str | None) -> Any:
    unconsented = row.c.patient_id.not_in(consents.consented_patients())
    if not ctx.consented:
        return unconsented
    return sa.or_(unconsented, consents.sql_allowed(row, ctx.consented, resource_type))


def search_filter(ctx: AccessContext, row: Any, resource_type: str | None = None) -> Any:
    """SQL: the principal may read `row`, a row (alias) of the resource table, of type
    `resource_type` (None: any type, e.g. the rows of $everything or an _include)."""
    p = ctx.principal
    readable = roles.readable(p)
    if resource_type is not None:
        if resource_type not in readable:
            return sa.false()
        type_ok = sa.true()
    else:
        type_ok = row.c.type.in_(sorted(readable)) if readable else sa.false()
    orphan = row.c.patient_id.is_(None)
    label_ok = labels.sql_visible(p, row)
    if p.kind is Kind.PATIENT:
        own = row.c.patient_id == p.patient_id if p.patient_id else sa.false()
        return sa.and_(type_ok, sa.or_(own, sa.and_(orphan, _directory(row, resource_type))),
                       label_ok)
    if p.kind is Kind.CARER:
        granted = {pid: f.sharing for pid, f in ctx.facts.items()
                   if Relationship.PROXY in f.relationships}
        return sa.and_(type_ok, sa.or_(consents.sql_allowed(row, granted, resource_type),
                                       sa.and_(orphan, _directory(row, resource_type))),
                       label_ok)
    if relationships.network_wide(p):  # a privacy officer, a network job: every patient
        return sa.and_(type_ok, label_ok)
    else:
        reach = sa.or_(orphan, _reached(ctx, row, "registered", (Relationship.REGISTERED,)),
                       sa.and_(_reached(ctx, row, "outside", _OUTSIDE),
                               _consent_ok(ctx, row, resource_type)))
    allowed = sa.and_(reach, label_ok)
    bg = ctx.break_glass_for(p.break_glass.patient_id) if p.break_glass else None
    if bg is not None:
        allowed = sa.or_(allowed, sa.and_(row.c.patient_id == bg.patient_id,
                                          labels.sql_visible(p, row, break_glass=True)))
    return sa.and_(type_ok, allowed)
