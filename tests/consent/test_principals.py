"""Principals: SDS job roles, staff from a PractitionerRole, break-glass windows."""

from __future__ import annotations

import csv

import pytest

from api.synthetic.network import build_network
from api.synthetic.tables import DATA as SYNTHETIC_DATA
from consent.principals import (
    BREAK_GLASS_MAX_SECONDS,
    AccessContext,
    BreakGlass,
    Kind,
    Principal,
    Role,
    role_from_codes,
    role_from_sds,
    staff,
    staff_principal,
)

SDS = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"


@pytest.mark.parametrize(("code", "expected"), [
    ("R0260", Role.GP), ("R0270", Role.GP), ("R0620", Role.PRACTICE_NURSE),
    ("R0700", Role.COMMUNITY_NURSE), ("R1290", Role.PHARMACIST), ("R1330", Role.SOCIAL_WORKER),
    ("R0600", Role.CASE_MANAGER), ("R8009", Role.ADMIN), ("R0001", Kind.PRIVACY_OFFICER),
    ("S0030:G0100:R0620", Role.PRACTICE_NURSE),  # the NHS England IG's composite form
    ("R9999", None), ("", None), ("R8000", None),  # a generic access role says too little
])
def test_sds_codes(code: str, expected: object) -> None:
    assert role_from_sds(code) == expected


def test_every_role_the_synthetic_network_codes_maps_back_to_it() -> None:
    with (SYNTHETIC_DATA / "staff-roles.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for row in rows:
        assert role_from_sds(row["sds_code"]) == Role(row["role"]), row


def test_staff_from_each_synthetic_practitioner_role() -> None:
    network = build_network(3, 20_000)
    seen = set()
    for resource in network.resources:
        if resource["resourceType"] != "PractitionerRole":
            continue
        p = staff(resource, scopes=["user/*.rs"], client_id="ehr")
        assert p.kind is Kind.STAFF
        assert p.user == resource["practitioner"]["reference"]
        assert p.organizations == (resource["organization"]["reference"],)
        assert p.identities == (f"PractitionerRole/{resource['id']}",)
        assert p.scopes == frozenset({"user/*.rs"}) and p.client_id == "ehr"
        assert p.role is not None
        seen.add(p.role)
    assert seen == set(Role) - {Role.ADMIN}  # the generator has no admin staff


def test_staff_edge_cases() -> None:
    officer = staff({"id": "x", "practitioner": {"reference": "Practitioner/po"},
                     "organization": {"reference": "Organization/n"},
                     "code": [{"coding": [{"system": SDS, "code": "R0001"}]}]})
    assert officer.kind is Kind.PRIVACY_OFFICER and officer.role is None
    assert officer.access_role == "privacy-officer"
    unknown = staff({"practitioner": {"reference": "Practitioner/u"},
                     "code": [{"coding": [{"system": "urn:other", "code": "R0260"}]}]})
    assert unknown.role is None and unknown.access_role == "" and unknown.organizations == ()
    with pytest.raises(ValueError):
        staff({"organization": {"reference": "Organization/n"}})
    assert role_from_codes([{"text": "GP"}, {"coding": [{"system": SDS, "code": "R9"},
                                                        {"system": SDS, "code": "R1290"}]}]) \
        is Role.PHARMACIST


def test_references_of_a_principal() -> None:
    p = Principal(Kind.STAFF, "Practitioner/a", ("Organization/o",), Role.GP,
                  ("PractitionerRole/r",))
    assert p.references == {"Practitioner/a", "Organization/o", "PractitionerRole/r"}
    assert p.persons == {"Practitioner/a", "PractitionerRole/r"}
    assert p.patient_id is None
    assert Principal(Kind.PATIENT, "Patient/p").patient_id == "p"
    assert Principal(Kind.CARER, "Patient/p").patient_id is None
    carer = Principal(Kind.CARER, "RelatedPerson/a", identities=("RelatedPerson/b",))
    assert carer.related_persons == ("a", "b")
    assert Principal(Kind.SYSTEM, "Device/d").access_role == "system"


def test_break_glass_window() -> None:
    bg = BreakGlass.start("p", "Collapsed, no history available", 1000.0, seconds=10**6)
    assert bg.expires - bg.started == BREAK_GLASS_MAX_SECONDS  # capped
    assert bg.active(1000.0) and bg.active(1000.0 + BREAK_GLASS_MAX_SECONDS - 1)
    assert not bg.active(999.0) and not bg.active(1000.0 + BREAK_GLASS_MAX_SECONDS)
    assert not BreakGlass.start("p", "   ", 1000.0).active(1001.0)  # no reason, no access
    assert not BreakGlass("p", "why", 0.0, 10 * BREAK_GLASS_MAX_SECONDS).active(5.0)


def test_break_glass_applies_to_staff_and_one_patient_only() -> None:
    bg = BreakGlass.start("p", "Collapsed, no history available", 1000.0)
    nurse = Principal(Kind.STAFF, "Practitioner/n", role=Role.COMMUNITY_NURSE, break_glass=bg)
    ctx = AccessContext(nurse, 1500.0)
    assert ctx.break_glass_for("p") is bg
    assert ctx.break_glass_for("q") is None and ctx.break_glass_for(None) is None
    assert AccessContext(nurse, 1000.0 + BREAK_GLASS_MAX_SECONDS).break_glass_for("p") is None
    system = Principal(Kind.SYSTEM, "Device/d", break_glass=bg)
    assert AccessContext(system, 1500.0).break_glass_for("p") is None


def test_staff_from_parts() -> None:
    p = staff_principal(user="Practitioner/n", practitioner_role="r",
                        organization="Organization/o", sds_code="R0700", scopes=["user/*.rs"])
    assert (p.kind, p.role, p.organizations, p.identities) == (
        Kind.STAFF, Role.COMMUNITY_NURSE, ("Organization/o",), ("PractitionerRole/r",))
    assert staff_principal(user="Practitioner/n").role is None
    assert staff_principal(user="Practitioner/n", sds_code="R5105").kind is Kind.PRIVACY_OFFICER
    with pytest.raises(ValueError):
        staff_principal(user="Patient/p", sds_code="R0260")
