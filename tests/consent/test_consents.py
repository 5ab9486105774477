"""Patient-privacy Consents: parsing, and what each shape lets staff and carers see."""

from __future__ import annotations

from typing import Any

import pytest

from consent import consents
from consent.consents import EVERYTHING, NOTHING, Sharing
from tests.consent.support import (
    CN_TEAM,
    CONSENTS,
    LABELS,
    NOW,
    PHARMACY,
    actor,
    consent,
    label,
    principal,
    types,
)

CN = principal("cn").references
PH = principal("ph").references
GP = principal("gp").references
CARER = principal("carer").persons
PSY = LABELS["PSY"]


def staff(*provisions: dict[str, Any] | None, refs: frozenset[str] = CN, **kw: Any) -> Sharing:
    parsed = [consents.parse(consent(p, id_=f"c{n}", **kw)) for n, p in enumerate(provisions)]
    return consents.for_staff([c for c in parsed if c is not None], refs, NOW)


def carer(*provisions: dict[str, Any] | None, refs: frozenset[str] = CARER) -> Sharing:
    parsed = [consents.parse(consent(p, id_=f"c{n}")) for n, p in enumerate(provisions)]
    return consents.for_carer([c for c in parsed if c is not None], refs, NOW)


def test_parse() -> None:
    parsed = consents.parse(consent(CONSENTS["only-cn"]))
    assert parsed is not None and parsed.active and parsed.patient_id == "pat-1"
    assert parsed.root is not None and parsed.root.type == "deny"
    assert parsed.root.nested[0].actors == {CN_TEAM}
    assert consents.parse(consent(None, scope={"coding": [{"code": "patient-privacy"}]}))
    treatment = {"coding": [{"system": consents.SCOPE_SYSTEM, "code": "treatment"}]}
    assert consents.parse(consent({"type": "deny"}, scope=treatment)) is None
    assert consents.parse({"resourceType": "Patient"}) is None
    inactive = consents.parse(consent({"type": "deny"}, status="inactive"))
    assert inactive is not None and not inactive.active
    odd = consents.parse(consent({"type": "deny", "class": [{"system": "urn:x", "code": "y"}]}))
    assert odd is not None and odd.root is not None and odd.root.unknown_class


def test_sharing_algebra() -> None:
    assert EVERYTHING.permits("Observation", {PSY}) and not EVERYTHING.nothing
    assert NOTHING.nothing and not NOTHING.permits("Patient")
    a = Sharing(allowed_types=frozenset({"Condition", "Observation"}))
    b = Sharing(denied_types=frozenset({"Observation"}), denied_labels=frozenset({PSY}))
    both = a.merge(b)
    assert both.permits("Condition") and not both.permits("Observation")
    assert not both.permits("Condition", {"http://hl7.org/fhir/v3/ActCode|PSY"})
    assert not both.permits("Patient")
    assert Sharing(frozenset({"Observation"}), frozenset({"Observation"})).nothing


def test_no_consent_or_inactive_consent_restricts_nothing() -> None:
    assert staff() == EVERYTHING
    assert staff({"type": "deny"}, status="inactive") == EVERYTHING
    assert staff(None) == EVERYTHING  # a Consent with no rule


def test_deny_outside_the_practice() -> None:
    assert staff(CONSENTS["practice-only"]) == NOTHING
    assert staff(CONSENTS["practice-only"], refs=GP) == NOTHING  # the GP of another practice


def test_deny_outside_named_organisations() -> None:
    assert staff(CONSENTS["only-cn"]) == EVERYTHING
    assert staff(CONSENTS["only-cn"], refs=PH) == NOTHING
    meds_only = {"type": "deny", "provision": [
        {"type": "permit", "actor": [actor(PHARMACY)],
         "class": types("MedicationRequest", "MedicationStatement")},
        {"type": "permit", "actor": [actor(CN_TEAM)]}]}
    ph = staff(meds_only, refs=PH)
    assert ph.permits("MedicationRequest") and not ph.permits("Condition")
    assert staff(meds_only) == EVERYTHING
    with_exception = {"type": "deny", "provision": [
        {"type": "permit", "actor": [actor(CN_TEAM)], "provision": [
            {"type": "deny", "securityLabel": [label("PSY")]}]}]}
    cn = staff(with_exception)
    assert cn.permits("Condition") and not cn.permits("Condition", {PSY})


def test_deny_categories() -> None:
    assert staff(CONSENTS["no-obs"]) == Sharing(denied_types=frozenset({"Observation"}))
    assert staff(CONSENTS["no-psy"]) == Sharing(denied_labels=frozenset({PSY}))
    root_deny = {"type": "deny", "class": types("Observation", "DiagnosticReport")}
    assert staff(root_deny).denied_types == {"Observation", "DiagnosticReport"}
    assert staff({"type": "deny", "securityLabel": [label("HIV")]}).denied_labels == {
        LABELS["HIV"]}


def test_deny_to_named_actors_only() -> None:
    not_pharmacy = {"type": "deny", "actor": [actor(PHARMACY)]}
    assert staff(not_pharmacy, refs=PH) == NOTHING
    assert staff(not_pharmacy) == EVERYTHING
    nested = {"type": "permit", "provision": [
        {"type": "deny", "actor": [actor(PHARMACY)], "class": types("Condition")}]}
    assert not staff(nested, refs=PH).permits("Condition")
    assert staff(nested).permits("Condition")


def test_periods() -> None:
    past = {"type": "deny", "period": {"start": "2020-01-01", "end": "2021-01-01"}}
    future = {"type": "deny", "period": {"start": "2030-01-01"}}
    current = {"type": "deny", "period": {"start": "2025-01-01", "end": "2026-01-01"}}
    assert staff(past) == EVERYTHING
    assert staff(future) == EVERYTHING
    assert staff(current) == NOTHING
    assert staff({"type": "deny", "period": {"start": "garbage"}}) == EVERYTHING


def test_unclear_rules_fail_closed() -> None:
    unknown = [{"system": "http://loinc.org", "code": "11369-6"}]  # a document class
    assert staff({"type": "deny", "class": unknown}) == NOTHING
    assert staff({"type": "deny", "provision": [
        {"type": "permit", "actor": [actor(CN_TEAM)], "class": unknown}]}) == NOTHING
    assert staff({"type": "deny", "provision": [
        {"type": "permit", "actor": [actor(CN_TEAM)], "securityLabel": [label("PSY")]}]}) \
        == NOTHING
    both = {"type": "deny", "class": types("Condition"), "securityLabel": [label("PSY")]}
    assert staff(both) == Sharing(denied_types=frozenset({"Condition"}))
    assert staff({}) == NOTHING  # a provision without a type reads as deny
    assert staff({"provision": [{"type": "permit"}]}) == EVERYTHING  # ... with an exception


def test_several_consents_combine_restrictively() -> None:
    got = staff(CONSENTS["no-obs"], CONSENTS["no-psy"])
    assert got == Sharing(denied_types=frozenset({"Observation"}),
                          denied_labels=frozenset({PSY}))
    assert staff(CONSENTS["only-cn"], CONSENTS["practice-only"]) == NOTHING


def test_proxy_grants_do_not_restrict_staff() -> None:
    assert staff(CONSENTS["proxy-all"]) == EVERYTHING
    assert staff(CONSENTS["proxy-meds"], refs=PH) == EVERYTHING


def test_carers_see_only_what_a_grant_opens() -> None:
    assert carer() == NOTHING
    assert carer(CONSENTS["practice-only"]) == NOTHING  # does not name them
    assert carer(CONSENTS["no-obs"]) == NOTHING
    assert carer(CONSENTS["proxy-all"]) == EVERYTHING
    meds = carer(CONSENTS["proxy-meds"])
    assert meds.permits("MedicationRequest") and not meds.permits("Observation")
    assert carer(CONSENTS["proxy-all"], refs=frozenset({"RelatedPerson/other"})) == NOTHING


def test_carer_grant_shapes() -> None:
    nested_deny = {"type": "permit", "actor": [actor("RelatedPerson/rp-1")], "provision": [
        {"type": "deny", "class": types("Observation")},
        {"type": "deny", "securityLabel": [label("NOPAT")]}]}
    got = carer(nested_deny)
    assert got.permits("Condition") and not got.permits("Observation")
    assert not got.permits("Condition", {LABELS["NOPAT"]})
    exception = {"type": "deny", "provision": [
        {"type": "permit", "actor": [actor("RelatedPerson/rp-1")], "class": types("Goal")}]}
    assert carer(exception) == Sharing(allowed_types=frozenset({"Goal"}))
    labelled = {"type": "permit", "actor": [actor("RelatedPerson/rp-1")],
                "securityLabel": [label("PSY")]}
    assert carer(labelled) == NOTHING  # a grant of labelled entries only is not understood
    two = carer(CONSENTS["proxy-meds"],
                {"type": "permit", "actor": [actor("RelatedPerson/rp-1")],
                 "class": types("Goal")})
    assert two.allowed_types == {"MedicationRequest", "AllergyIntolerance", "Goal"}
    revoked = carer(CONSENTS["proxy-all"], {"type": "deny",
                                            "actor": [actor("RelatedPerson/rp-1")]})
    assert revoked.nothing
    expired = {"type": "permit", "actor": [actor("RelatedPerson/rp-1")],
               "period": {"end": "2024-01-01"}}
    assert carer(expired) == NOTHING


@pytest.mark.parametrize("name", sorted(k for k in CONSENTS if k != "none"))
def test_every_table_consent_parses(name: str) -> None:
    parsed = consents.parse(consent(CONSENTS[name]))
    assert parsed is not None and parsed.root is not None
