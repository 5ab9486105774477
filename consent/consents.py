"""Patient sharing choices: `Consent` resources of scope patient-privacy, evaluated.

https://hl7.org/fhir/R4/consent.html. A Consent counts when its scope is `patient-privacy`
(http://terminology.hl7.org/CodeSystem/consentscope) and its status is `active`. Its root
`provision` is the rule and nested provisions are exceptions to their parent; a provision
matches a principal by `actor.reference` (the user, the PractitionerRole they act in, or their
Organization), a resource by `class` (resource types, http://hl7.org/fhir/resource-types) and
`securityLabel`, and applies only within its `period`. `action` and `purpose` are not read:
every rule is about access.

Consents govern *sharing* beyond the patient's registered practice, which holds the record, so
they never restrict the registered practice, the patient, or a privacy officer. For staff and
systems elsewhere, the shapes understood are:
- deny sharing outside the registered practice: root `deny` and nothing else;
- deny sharing outside named organisations: root `deny` with nested `permit`s naming them
  (a `class` on such a permit opens only those types);
- deny categories: a `deny` (root, or nested under a root `permit`) with `class` and/or
  `securityLabel` (to everyone, or to the `actor`s it names).
A carer (RelatedPerson) sees nothing unless a provision naming them (a proxy grant) permits
it, only the types its `class` lists (all if none), less what a `deny` naming them excludes.

Anything else is read restrictively (fail closed): a `class` that is not a resource type makes
a `deny` deny everything and a `permit` open nothing; a `deny` with both `class` and
`securityLabel` denies the whole classes; exceptions below the second level are not opened.

Each principal's view of a patient's Consents compiles to one `Sharing` (allowed types,
denied types, denied labels), so the pure decision and the SQL filter read the same value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consent import labels
from fhir.dates import BadDate, date_range
from fhir.registry import registry
from fhir.schema import INDEX_TABLES, resource

SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
PATIENT_PRIVACY = "patient-privacy"
RESOURCE_TYPES_SYSTEM = "http://hl7.org/fhir/resource-types"


@dataclass(frozen=True, slots=True)
class Sharing:
    """What a patient's Consents let one principal see: types in `allowed_types` (None: any),
    not in `denied_types`, not carrying a label in `denied_labels`."""

    allowed_types: frozenset[str] | None = None
    denied_types: frozenset[str] = frozenset()
    denied_labels: frozenset[str] = frozenset()

    @property
    def nothing(self) -> bool:
        return self.allowed_types is not None and not (self.allowed_types - self.denied_types)

    def permits_type(self, resource_type: str) -> bool:
        return ((self.allowed_types is None or resource_type in self.allowed_types)
                and resource_type not in self.denied_types)

    def permits(self, resource_type: str, resource_labels: Iterable[str] = ()) -> bool:
        found = {labels.normalise(label) for label in resource_labels}
        return self.permits_type(resource_type) and not (found & self.denied_labels)

    def merge(self, other: Sharing) -> Sharing:
        """Both restrictions at once."""
        if self.allowed_types is None:
            allowed = other.allowed_types
        elif other.allowed_types is None:
            allowed = self.allowed_types
        else:
            allowed = self.allowed_types & other.allowed_types
        return Sharing(allowed, self.denied_types | other.denied_types,
                       self.denied_labels | other.denied_labels)


EVERYTHING = Sharing()
NOTHING = Sharing(allowed_types=frozenset())


@dataclass(frozen=True, slots=True)
class Provision:
    type: str  # "permit" | "deny" (missing reads as deny)
    actors: frozenset[str]
    classes: frozenset[str]  # resource types
    unknown_class: bool  # a class that is not a resource type was given
    labels: frozenset[str]  # normalised system|code
    start: float | None
    end: float | None
    nested: tuple[Provision, ...]

    def in_period(self, now: float) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)

    def names(self, refs: frozenset[str]) -> bool:
        return bool(self.actors & refs)


@dataclass(frozen=True, slots=True)
class PrivacyConsent:
    id: str
    patient_id: str | None
    active: bool
    root: Provision | None


def _provision(node: dict[str, Any]) -> Provision:
    types = registry().resource_types
    classes, unknown = set(), False
    for coding in node.get("class") or ():
        code = coding.get("code") if isinstance(coding, dict) else None
        system = coding.get("system") if isinstance(coding, dict) else None
        if code in types and system in (None, RESOURCE_TYPES_SYSTEM):
            classes.add(code)
        else:
            unknown = True
    actors = frozenset(
        ref for a in node.get("actor") or () if isinstance(a, dict)
        if isinstance(ref := (a.get("reference") or {}).get("reference"), str))
    found_labels = frozenset(labels.normalise(f"{c.get('system', '')}|{c.get('code', '')}")
                             for c in node.get("securityLabel") or () if isinstance(c, dict))
    period = node.get("period") or {}
    start = end = None
    try:
        if period.get("start"):
            start = date_range(period["start"])[0]
        if period.get("end"):
            end = date_range(period["end"])[1]
    except BadDate:
        start, end = None, float("-inf")  # an unreadable period: the provision never applies
    return Provision(
        type="permit" if node.get("type") == "permit" else "deny",
        actors=actors, classes=frozenset(classes), unknown_class=unknown,
        labels=found_labels, start=start, end=end,
        nested=tuple(_provision(n) for n in node.get("provision") or () if isinstance(n, dict)),
    )


def is_privacy(consent: dict[str, Any]) -> bool:
    """A Consent of scope patient-privacy (the scope's system may be left out)."""
    scope = consent.get("scope") or {}
    return any(c.get("code") == PATIENT_PRIVACY and c.get("system") in (None, SCOPE_SYSTEM)
               for c in scope.get("coding") or () if isinstance(c, dict))


def parse(consent: dict[str, Any]) -> PrivacyConsent | None:
    """A patient-privacy Consent in the form evaluation needs, or None for other Consents."""
    if consent.get("resourceType") != "Consent" or not is_privacy(consent):
        return None
    ref = (consent.get("patient") or {}).get("reference")
    patient_id = ref.partition("/")[2] if isinstance(ref, str) and ref.startswith(
        "Patient/") else None
    root = consent.get("provision")
    return PrivacyConsent(str(consent.get("id")), patient_id, consent.get("status") == "active",
                          _provision(root) if isinstance(root, dict) else None)


def _applies(node: Provision, refs: frozenset[str], now: float) -> bool:
    return (not node.actors or node.names(refs)) and node.in_period(now)


def _deny_alone(node: Provision) -> Sharing:
    """What one deny provision takes away, ignoring its exceptions."""
    if node.unknown_class:
        return NOTHING
    if node.classes:
        return Sharing(denied_types=node.classes)
    if node.labels:
        return Sharing(denied_labels=node.labels)
    return NOTHING


def _effect(node: Provision, refs: frozenset[str], now: float) -> Sharing:
    """The restriction an applying provision puts on a staff member or system."""
    if node.type == "permit":
        out = EVERYTHING
        for child in node.nested:
            if child.type == "deny" and _applies(child, refs, now):
                out = out.merge(_deny_alone(child))
        return out
    denied = _deny_alone(node)
    if denied is not NOTHING or node.unknown_class:
        return denied
    # A blanket deny: only its permits that apply to this principal open anything.
    permits = [c for c in node.nested if c.type == "permit" and _applies(c, refs, now)
               and not c.labels and (c.classes or not c.unknown_class)]
    if not permits:
        return NOTHING
    open_all = any(not c.classes for c in permits)
    out = Sharing(None if open_all else frozenset().union(*(c.classes for c in permits)))
    for permit in permits:
        out = out.merge(_effect(permit, refs, now))
    return out


def for_staff(consents: Iterable[PrivacyConsent], refs: frozenset[str], now: float) -> Sharing:
    """What the patient's active privacy Consents let a principal outside the registered
    practice (staff or a system), denoted by `refs`, see."""
    out = EVERYTHING
    for consent in consents:
        if consent.active and consent.root is not None and _applies(consent.root, refs, now):
            out = out.merge(_effect(consent.root, refs, now))
    return out


def for_carer(consents: Iterable[PrivacyConsent], refs: frozenset[str], now: float) -> Sharing:
    """What the patient's proxy grants let a carer, denoted by `refs` (RelatedPerson/...), see:
    nothing unless a permit names them."""
    grants: list[frozenset[str] | None] = []
    denials = EVERYTHING

    def walk(node: Provision, named: bool) -> None:
        nonlocal denials
        here = node.names(refs) if node.actors else named
        if not node.in_period(now):
            return
        if node.type == "permit" and here:
            if not node.labels and (node.classes or not node.unknown_class):
                grants.append(node.classes or None)
        elif node.type == "deny" and here:
            denials = denials.merge(_deny_alone(node))
        for child in node.nested:
            walk(child, here)

    for consent in consents:
        if consent.active and consent.root is not None:
            walk(consent.root, False)
    if not grants:
        return NOTHING
    allowed = None if any(g is None for g in grants) else frozenset().union(*grants)
    return Sharing(allowed).merge(denials)


# ---- SQL ----------------------------------------------------------------------------------

def _privacy_rows() -> tuple[Any, list[Any]]:
    """A Consent row alias and the conditions that make it a current patient-privacy Consent."""
    c = resource.alias()
    token = INDEX_TABLES["token"].alias()
    scoped = sa.exists().where(token.c.rid == c.c.rid, token.c.param == "scope",
                               token.c.code == PATIENT_PRIVACY,
                               sa.or_(token.c.system == SCOPE_SYSTEM, token.c.system.is_(None)))
    return c, [c.c.type == "Consent", c.c.deleted.is_(False), c.c.patient_id.is_not(None),
               scoped]


@cache
def consented_patients() -> sa.Select:
    """The ids of patients with a patient-privacy Consent (any status): a patient here is
    visible outside their practice only where a compiled `Sharing` says so. Built once: it
    is the same SELECT in every search's filter (and building it cost more than running it)."""
    c, where = _privacy_rows()
    return sa.select(c.c.patient_id).where(*where)


async def load(conn: AsyncConnection,
               patients: Iterable[str] | sa.Select | sa.CompoundSelect
               ) -> dict[str, list[PrivacyConsent]]:
    """The patient-privacy Consents of `patients` (ids, or a select of ids), by patient id.
    Every consented patient found is a key, even if none of its Consents parse."""
    c, where = _privacy_rows()
    ids: Any
    if isinstance(patients, (sa.Select, sa.CompoundSelect)):
        ids = patients
    else:
        ids = sorted(set(patients))
        if not ids:
            return {}
    stmt = sa.select(c.c.patient_id, c.c.content).where(*where, c.c.patient_id.in_(ids))
    out: dict[str, list[PrivacyConsent]] = {}
    for patient_id, content in (await conn.execute(stmt)).all():
        found = out.setdefault(patient_id, [])
        # Stored JSON text (fhir/db.py passes it through); decimals do not matter here.
        body = orjson.loads(content) if isinstance(content, (str, bytes)) else content
        parsed = parse(body) if isinstance(body, dict) else None
        if parsed is not None:
            found.append(parsed)
    return out


def sql_allowed(row: Any, sharing: Mapping[str, Sharing], resource_type: str | None) -> Any:
    """SQL: the row belongs to a patient of `sharing` and that patient's Sharing lets it be
    seen (rows of patients not in `sharing`: false)."""
    groups: dict[Sharing, list[str]] = {}
    for patient_id, rule in sharing.items():
        if rule.nothing or (resource_type is not None and not rule.permits_type(resource_type)):
            continue
        groups.setdefault(rule, []).append(patient_id)
    clauses = []
    for rule, ids in groups.items():
        parts = [row.c.patient_id.in_(sorted(ids))]
        if resource_type is None:
            if rule.allowed_types is not None:
                parts.append(row.c.type.in_(sorted(rule.allowed_types)))
            if rule.denied_types:
                parts.append(row.c.type.not_in(sorted(rule.denied_types)))
        if rule.denied_labels:
            parts.append(sa.or_(row.c.security.is_(None),
                                sa.not_(labels.has_any(row, rule.denied_labels))))
        clauses.append(sa.and_(*parts))
    return sa.or_(*clauses) if clauses else sa.false()
