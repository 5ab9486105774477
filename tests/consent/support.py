"""Factories for the consent tests: principals, Consents, contexts."""

from __future__ import annotations

from typing import Any

from consent.principals import BreakGlass, Kind, Principal, Role

NOW = 1_750_000_000.0  # 2025-06-15
PRACTICE_A = "Organization/prac-a"
CN_TEAM = "Organization/cn-team"
PHARMACY = "Organization/pharmacy"
SOCIAL_CARE = "Organization/social-care"
NETWORK = "Organization/network"
HOSPITAL = "Organization/hospital"
SCOPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                     "code": "patient-privacy"}]}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
LABELS = {"R": f"{CONFIDENTIALITY}|R", "V": f"{CONFIDENTIALITY}|V", **{
    code: f"{ACT_CODE}|{code}" for code in ("PSY", "SEX", "STD", "HIV", "ETH", "SDV", "NOPAT")}}

STAFF = {  # short name -> (role, organisation)
    "gp": (Role.GP, PRACTICE_A), "pn": (Role.PRACTICE_NURSE, PRACTICE_A),
    "cn": (Role.COMMUNITY_NURSE, CN_TEAM), "ph": (Role.PHARMACIST, PHARMACY),
    "sw": (Role.SOCIAL_WORKER, SOCIAL_CARE), "cm": (Role.CASE_MANAGER, NETWORK),
    "adm": (Role.ADMIN, PRACTICE_A),
}


def principal(who: str, *, break_glass_for: str | None = None) -> Principal:
    """A principal by short name: the STAFF keys, po, sys-net, sys-a, pat, carer."""
    if who in STAFF:
        role, org = STAFF[who]
        bg = BreakGlass.start(break_glass_for, "Unconscious in A&E, no GP record", NOW - 60) \
            if break_glass_for else None
        return Principal(Kind.STAFF, f"Practitioner/{who}", (org,), role,
                         (f"PractitionerRole/{who}",), break_glass=bg)
    return {
        "po": Principal(Kind.PRIVACY_OFFICER, "Practitioner/po", (NETWORK,)),
        "sys-net": Principal(Kind.SYSTEM, "Device/risk-job", client_id="risk-job"),
        "sys-a": Principal(Kind.SYSTEM, "Device/ehr-a", (PRACTICE_A,), client_id="ehr-a"),
        "pat": Principal(Kind.PATIENT, "Patient/pat-1"),
        "carer": Principal(Kind.CARER, "RelatedPerson/rp-1"),
    }[who]


def consent(provision: dict[str, Any] | None, *, patient: str = "pat-1", status: str = "active",
            id_: str = "c1", scope: dict[str, Any] = SCOPE) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Consent", "id": id_, "status": status, "scope": scope,
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
    }
    if provision is not None:
        body["provision"] = provision
    return body


def actor(ref: str) -> dict[str, Any]:
    return {"role": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
        "code": "IRCP"}]}, "reference": {"reference": ref}}


def types(*names: str) -> list[dict[str, str]]:
    return [{"system": "http://hl7.org/fhir/resource-types", "code": n} for n in names]


def label(name: str) -> dict[str, str]:
    system, _, code = LABELS[name].rpartition("|")
    return {"system": system, "code": code}


# The Consents of the decision table, by name.
CONSENTS: dict[str, dict[str, Any] | None] = {
    "none": None,
    # Deny sharing outside the registered practice.
    "practice-only": {"type": "deny"},
    # Deny sharing outside named organisations (the community nursing team).
    "only-cn": {"type": "deny", "provision": [{"type": "permit", "actor": [actor(CN_TEAM)]}]},
    # Deny a category: Observations.
    "no-obs": {"type": "permit", "provision": [{"type": "deny", "class": types("Observation")}]},
    # Deny a sensitivity: mental health entries.
    "no-psy": {"type": "permit", "provision": [{"type": "deny",
                                                "securityLabel": [label("PSY")]}]},
    # Proxy grants to the carer RelatedPerson/rp-1: everything, or medicines only.
    "proxy-all": {"type": "permit", "actor": [actor("RelatedPerson/rp-1")]},
    "proxy-meds": {"type": "permit", "actor": [actor("RelatedPerson/rp-1")],
                   "class": types("MedicationRequest", "AllergyIntolerance")},
}
