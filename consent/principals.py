"""Who is asking: the `Principal` a token stands for, and the per-request `AccessContext`.

A principal is built once per request from the token (consent/tokens.py, SMART `fhirUser`,
launch context) and never changes. Its role comes from the SDS job role code on the
PractitionerRole the user acts in (`data/sds-job-roles.csv`, sources in `data/README.md`):
the same code system the synthetic network writes
(`https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode`, api/synthetic/data/SOURCES.md).

The `AccessContext` adds what the policy needs to know about patients, resolved from the
database once per request (consent/context.py); the decisions in consent/policy.py are pure
functions of it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consent.consents import Sharing

DATA = Path(__file__).resolve().parent / "data"
SDS_JOB_ROLE_SYSTEMS = (
    "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode",
    "https://fhir.nhs.uk/CodeSystem/NHSDigital-SDS-JobRoleCode",
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName",  # retired, still sent by EPS
)
# Emergency access lasts at most this long, whatever the caller asks for.
BREAK_GLASS_MAX_SECONDS = 4 * 3600.0


class Kind(StrEnum):
    STAFF = "staff"
    PATIENT = "patient"
    CARER = "carer"
    SYSTEM = "system"
    PRIVACY_OFFICER = "privacy-officer"


class Role(StrEnum):
    """Staff roles: the columns of `data/role-access.csv`."""

    GP = "gp"
    PRACTICE_NURSE = "practice-nurse"
    COMMUNITY_NURSE = "community-nurse"
    PHARMACIST = "pharmacist"
    SOCIAL_WORKER = "social-worker"
    CASE_MANAGER = "case-manager"
    ADMIN = "admin"


class Relationship(StrEnum):
    """Why a principal may see a patient's record (consent/relationships.py)."""

    REGISTERED = "registered"  # Patient.generalPractitioner is the principal's organisation
    CARE_TEAM = "care-team"  # member of an active CareTeam of the patient
    REFERRAL = "referral"  # an open Task owned by / ServiceRequest performed by them
    SELF_CLAIMED = "self-claimed"  # a stored, audited claim with a reason
    SELF = "self"  # the patient themselves
    PROXY = "proxy"  # a carer (RelatedPerson) of the patient
    NETWORK = "network"  # network-wide: a system job, a privacy officer


@dataclass(frozen=True, slots=True)
class BreakGlass:
    """Emergency access to one patient's record, with a reason, until `expires` (epoch s)."""

    patient_id: str
    reason: str
    started: float
    expires: float

    @classmethod
    def start(cls, patient_id: str, reason: str, now: float,
              seconds: float = BREAK_GLASS_MAX_SECONDS) -> BreakGlass:
        return cls(patient_id, reason, now, now + min(seconds, BREAK_GLASS_MAX_SECONDS))

    def active(self, now: float) -> bool:
        return (bool(self.reason.strip()) and self.started <= now < self.expires
                and self.expires - self.started <= BREAK_GLASS_MAX_SECONDS)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated user (or system) a request acts for.

    `user` is a reference: Practitioner/x (staff, privacy officer), Patient/y, RelatedPerson/z,
    or Device/... or Organization/... for a system. `identities` are other references that
    stand for the same person: the PractitionerRole they act in, further RelatedPersons of a
    carer who cares for several people. `organizations` are Organization/... references.
    """

    kind: Kind
    user: str
    organizations: tuple[str, ...] = ()
    role: Role | None = None
    identities: tuple[str, ...] = ()
    scopes: frozenset[str] = frozenset()
    client_id: str | None = None
    break_glass: BreakGlass | None = None

    @property
    def access_role(self) -> str:
        """The column of the role and label tables that applies: the role for staff, else
        the kind (a staff member without a known role has none, and may do nothing)."""
        if self.kind is Kind.STAFF:
            return self.role.value if self.role is not None else ""
        return self.kind.value

    @property
    def references(self) -> frozenset[str]:
        """Every reference that denotes this principal: user, identities, organisations."""
        return frozenset((self.user, *self.identities, *self.organizations))

    @property
    def persons(self) -> frozenset[str]:
        """The references that denote the person, not their employer."""
        return frozenset((self.user, *self.identities))

    @property
    def patient_id(self) -> str | None:
        """The id of the Patient a patient principal is."""
        kind, _, id_ = self.user.partition("/")
        return id_ if self.kind is Kind.PATIENT and kind == "Patient" else None

    @property
    def related_persons(self) -> tuple[str, ...]:
        """The ids of the RelatedPersons a carer is."""
        return tuple(r.partition("/")[2] for r in (self.user, *self.identities)
                     if r.startswith("RelatedPerson/"))


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """What the policy knows about one patient for this principal: why it may see the record,
    and the patient's Consents compiled for this principal (`consent.consents.Sharing`)."""

    relationships: frozenset[Relationship]
    sharing: Sharing


@dataclass(slots=True)
class AccessContext:
    """A principal plus what was resolved for it, once per request.

    `facts`: per patient id, for reads and writes (`consent.context.resolve`). A patient not
    in `facts` is one the policy knows nothing about, so it is denied.
    `consented`: for searches by staff and systems, the compiled Consents of patients with a
    patient-privacy Consent within the principal's reach (None: not loaded, and then every
    consented patient outside the principal's own practice is hidden).
    `reach`: for searches, the ids of the patients the principal reaches through REGISTERED
    and through the other relationships ("registered", "outside"), when there are few enough
    to list: a list lets the database find the rows through the patient index, where the
    relationship SELECT would make it test every row of the type. A missing key: use the
    SELECT.
    """

    principal: Principal
    now: float
    facts: dict[str, PatientFacts] = field(default_factory=dict)
    consented: Mapping[str, Sharing] | None = None
    reach: dict[str, frozenset[str]] = field(default_factory=dict)
    dialect: str = "postgresql"  # of the database the SQL filter will run on

    def break_glass_for(self, patient_id: str | None) -> BreakGlass | None:
        """The principal's emergency access to `patient_id`, if it is open now."""
        bg = self.principal.break_glass
        if (patient_id is None or bg is None or bg.patient_id != patient_id
                or self.principal.kind is not Kind.STAFF or not bg.active(self.now)):
            return None
        return bg


@cache
def _sds_roles() -> dict[str, str]:
    with (DATA / "sds-job-roles.csv").open(newline="", encoding="utf-8") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {r["sds_code"]: r["carenet_role"] for r in rows}


def role_from_sds(code: str) -> Role | Kind | None:
    """The carenet role of an SDS job role code (R0260 -> gp), Kind.PRIVACY_OFFICER for the
    privacy officer codes, None when unmapped. Composite codes (S0030:G0100:R0620) use the
    job role part."""
    name = _sds_roles().get(code.rpartition(":")[2])
    if name is None:
        return None
    return Kind.PRIVACY_OFFICER if name == Kind.PRIVACY_OFFICER.value else Role(name)


def role_from_codes(codes: Iterable[Any]) -> Role | Kind | None:
    """The first mapped SDS job role among CodeableConcepts (PractitionerRole.code)."""
    for concept in codes:
        for coding in (concept or {}).get("coding", ()) if isinstance(concept, dict) else ():
            if coding.get("system") in SDS_JOB_ROLE_SYSTEMS and coding.get("code"):
                found = role_from_sds(coding["code"])
                if found is not None:
                    return found
    return None


def staff_principal(*, user: str, practitioner_role: str | None = None,
                    organization: str | None = None, sds_code: str | None = None,
                    scopes: Iterable[str] = (), client_id: str | None = None,
                    break_glass: BreakGlass | None = None) -> Principal:
    """The principal of a member of staff from its parts: `user` Practitioner/x, the id of the
    PractitionerRole they act in, its Organization reference and its SDS job role code."""
    if not user.startswith("Practitioner/"):
        raise ValueError("A member of staff is a Practitioner.")
    role = role_from_sds(sds_code) if sds_code else None
    return Principal(
        kind=Kind.PRIVACY_OFFICER if role is Kind.PRIVACY_OFFICER else Kind.STAFF,
        user=user,
        organizations=(organization,) if organization and organization.startswith(
            "Organization/") else (),
        role=role if isinstance(role, Role) else None,
        identities=(f"PractitionerRole/{practitioner_role}",) if practitioner_role else (),
        scopes=frozenset(scopes), client_id=client_id, break_glass=break_glass,
    )


def staff(practitioner_role: dict[str, Any], *, scopes: Iterable[str] = (),
          client_id: str | None = None, break_glass: BreakGlass | None = None) -> Principal:
    """The principal of a member of staff acting in `practitioner_role` (a PractitionerRole
    resource): user = its practitioner, organisation = its organization, role = the first of
    its codes that is a mapped SDS job role."""
    user = (practitioner_role.get("practitioner") or {}).get("reference")
    if not isinstance(user, str) or not user.startswith("Practitioner/"):
        raise ValueError("A PractitionerRole without a Practitioner reference is nobody.")
    org = (practitioner_role.get("organization") or {}).get("reference")
    code = None
    for concept in practitioner_role.get("code") or ():
        for coding in (concept or {}).get("coding", ()) if isinstance(concept, dict) else ():
            if (coding.get("system") in SDS_JOB_ROLE_SYSTEMS and coding.get("code")
                    and role_from_sds(coding["code"]) is not None):
                code = code or coding["code"]
    return staff_principal(user=user, practitioner_role=practitioner_role.get("id"),
                           organization=org if isinstance(org, str) else None, sds_code=code,
                           scopes=scopes, client_id=client_id, break_glass=break_glass)
