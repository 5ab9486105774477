"""The enforcement point beyond the decision table: default deny, break-glass bookkeeping,
self-claims, resource meta, and the SQL filter's shape."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from consent import consents, relationships
from consent.policy import (
    READS,
    WRITES,
    ResourceMeta,
    decide,
    may_self_claim,
    needs_break_glass,
    search_filter,
)
from consent.principals import AccessContext, Kind, PatientFacts, Principal, Relationship
from fhir.schema import resource
from tests.consent.support import LABELS, NOW, PRACTICE_A, principal

OBS = ResourceMeta("pat-1")
CARE_TEAM = PatientFacts(frozenset({Relationship.CARE_TEAM}), consents.EVERYTHING)


def ctx(who: str, facts: PatientFacts | None = None, **kw: str) -> AccessContext:
    return AccessContext(principal(who, **kw), NOW,
                         facts={"pat-1": facts} if facts is not None else {})


def test_every_interaction_is_read_or_write() -> None:
    assert READS.isdisjoint(WRITES)
    c = ctx("gp", CARE_TEAM)
    for interaction in READS | WRITES:
        assert decide(c, interaction, "Observation", OBS), interaction
    denied = decide(c, "$export", "Observation", OBS)
    assert not denied and "interaction" in denied.reason


def test_a_patient_nothing_was_resolved_for_is_denied() -> None:
    for who in ("gp", "sys-a", "carer"):
        decision = decide(ctx(who), "read", "Observation", OBS)
        assert not decision.allowed, who
    assert decide(ctx("po"), "read", "AuditEvent", ResourceMeta("pat-9")).allowed
    assert decide(ctx("sys-net"), "read", "Observation", OBS).allowed  # network-wide
    assert decide(ctx("pat"), "read", "Observation", OBS).allowed  # their own: nothing to look up


def test_network_jobs_are_not_bound_by_consents_but_practice_systems_are() -> None:
    """Consents govern disclosure to people (consent/policy.py rule 3): the network's own
    jobs are not bound; a practice's system outside the registered practice is."""
    refused = PatientFacts(frozenset(), consents.NOTHING)
    assert decide(ctx("sys-net", refused), "read", "Observation", OBS).allowed
    outside = PatientFacts(frozenset({Relationship.CARE_TEAM}), consents.NOTHING)
    assert not decide(ctx("sys-a", outside), "read", "Observation", OBS).allowed


def test_patients_and_carers_see_the_directory_but_no_orphans() -> None:
    for who in ("pat", "carer"):
        assert decide(ctx(who), "read", "Practitioner", ResourceMeta(None)).allowed
        assert not decide(ctx(who), "read", "Observation", ResourceMeta(None)).allowed
        assert not decide(ctx(who), "create", "Observation", ResourceMeta(None)).allowed
    assert decide(ctx("gp"), "read", "Observation", ResourceMeta(None)).allowed
    sealed = ResourceMeta(None, frozenset({LABELS["PSY"]}))
    assert not decide(ctx("cn"), "read", "Observation", sealed).allowed


def test_a_schedule_of_no_patient_is_a_service_diary() -> None:
    """Schedule is in the Patient compartment (actor), but one naming no patient is a
    service's diary that patients search for a slot: directory information, read only."""
    for who in ("pat", "carer"):
        assert decide(ctx(who), "read", "Schedule", ResourceMeta(None)).allowed
        assert decide(ctx(who), "read", "Slot", ResourceMeta(None)).allowed
        assert not decide(ctx(who), "update", "Schedule", ResourceMeta(None)).allowed
        assert not decide(ctx(who), "read", "Schedule", ResourceMeta("pat-2")).allowed
    # the SQL face: their own rows, or rows of no patient (for Observation: their own only)
    row = resource.alias("r")

    def sql(type_: str) -> str:
        return str(search_filter(ctx("pat"), row, type_).compile(
            dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))

    assert sql("Schedule").startswith("(r.patient_id = 'pat-1' OR r.patient_id IS NULL)")
    assert sql("Observation").startswith("(r.patient_id = 'pat-1' OR 0 = 1)")


def test_a_patient_changes_only_their_own_entries_and_consents() -> None:
    own = ResourceMeta("pat-1", source="Patient/pat-1")
    clinician = ResourceMeta("pat-1", source=PRACTICE_A)
    c = ctx("pat")
    assert decide(c, "update", "Observation", own).allowed
    assert not decide(c, "update", "Observation", clinician).allowed
    assert not decide(c, "delete", "Goal", clinician).allowed
    assert decide(c, "update", "Consent", clinician).allowed
    assert not decide(c, "update", "Condition", own).allowed  # not patient-contributed


def test_break_glass_bookkeeping() -> None:
    c = ctx("cn", PatientFacts(frozenset(), consents.EVERYTHING), break_glass_for="pat-1")
    decision = decide(c, "read", "Observation", OBS)
    assert decision.allowed and decision.break_glass and "Unconscious" in decision.reason
    assert needs_break_glass(c, "pat-1")
    assert not needs_break_glass(c, "pat-2")
    related = ctx("cn", CARE_TEAM, break_glass_for="pat-1")
    assert not decide(related, "read", "Observation", OBS).break_glass
    assert not needs_break_glass(related, "pat-1")
    refused = ctx("cn", PatientFacts(frozenset({Relationship.CARE_TEAM}), consents.NOTHING),
                  break_glass_for="pat-1")
    assert decide(refused, "read", "Observation", OBS).break_glass  # overrides the consent
    assert needs_break_glass(refused, "pat-1")


def test_self_claims() -> None:
    c = ctx("cm")
    assert may_self_claim(c, "pat-1", "Discharge follow-up requested by ward").allowed
    assert not may_self_claim(c, "pat-1", "because").allowed
    assert not may_self_claim(ctx("pat"), "pat-1", "I am curious about this").allowed
    nobody = AccessContext(Principal(Kind.STAFF, "Practitioner/x"), NOW)
    assert not may_self_claim(nobody, "pat-1", "Discharge follow-up requested").allowed
    body = relationships.self_claim(principal("cm"), "pat-1", " Discharge follow-up ",
                                    "2025-06-15T10:00:00Z")
    assert body["author"] == {"reference": "Practitioner/cm"}
    assert body["subject"] == {"reference": "Patient/pat-1"}
    assert body["created"] == "2025-06-15"
    assert body["code"]["coding"][0]["code"] == relationships.SELF_CLAIM
    assert body["extension"][0]["valueString"] == "Discharge follow-up"
    with pytest.raises(ValueError):
        relationships.self_claim(principal("pat"), "pat-1", "reason", "2025-06-15")
    with pytest.raises(ValueError):
        relationships.self_claim(principal("cm"), "pat-1", " ", "2025-06-15")


def test_resource_meta() -> None:
    body = {"resourceType": "Observation", "meta": {
        "source": PRACTICE_A, "security": [{"system": "http://hl7.org/fhir/v3/ActCode",
                                            "code": "PSY"}]}}
    assert ResourceMeta.of(body, "pat-1") == ResourceMeta(
        "pat-1", frozenset({LABELS["PSY"]}), PRACTICE_A)
    assert ResourceMeta.of_row("pat-1", LABELS["SDV"], None).labels == {LABELS["SDV"]}
    assert ResourceMeta.of({"resourceType": "Patient"}, "p") == ResourceMeta("p")


@pytest.mark.parametrize("who", ["gp", "pn", "cn", "ph", "sw", "cm", "adm", "po", "sys-net",
                                 "sys-a", "pat", "carer"])
@pytest.mark.parametrize("type_", [None, "Observation", "Patient", "Practitioner"])
def test_search_filter_compiles_on_both_dialects(who: str, type_: str | None) -> None:
    c = ctx(who, CARE_TEAM if who != "carer" else PatientFacts(
        frozenset({Relationship.PROXY}), consents.EVERYTHING), break_glass_for="pat-2")
    c.consented = {"pat-3": consents.Sharing(denied_types=frozenset({"Observation"}))}
    stmt = sa.select(resource.c.id).where(search_filter(c, resource.alias("r"), type_))
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        assert "SELECT" in str(stmt.compile(dialect=dialect))


def test_search_filter_is_false_for_a_type_the_role_may_not_read() -> None:
    got = search_filter(ctx("sw", CARE_TEAM), resource, "Observation")
    assert got.compare(sa.false())
    got = search_filter(AccessContext(Principal(Kind.STAFF, "Practitioner/x"), NOW), resource)
    assert "false" in str(got.compile(dialect=postgresql.dialect())).lower()
