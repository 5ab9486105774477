"""The role table (consent/data/role-access.csv): well formed, and what the issue asks of it."""

from __future__ import annotations

import pytest

from consent import labels, roles
from consent.principals import Kind, Principal, Role
from fhir.registry import registry

COLUMNS = ("gp", "practice-nurse", "community-nurse", "pharmacist", "social-worker",
           "case-manager", "admin", "privacy-officer", "patient", "carer", "system")


def who(column: str) -> Principal:
    if column in {r.value for r in Role}:
        return Principal(Kind.STAFF, "Practitioner/x", role=Role(column))
    return Principal(Kind(column), "Patient/x" if column == "patient" else "X/x")


def test_columns_are_every_role_and_kind_and_match_the_label_table() -> None:
    table = roles.table()
    assert table.columns == COLUMNS
    assert {r.value for r in Role} | {k.value for k in Kind} - {"staff"} == set(COLUMNS)
    for rule in labels.rules().values():
        assert rule.allowed <= set(COLUMNS), rule


def test_every_type_is_a_stored_resource_type() -> None:
    for column in COLUMNS:
        assert roles.table().access[column].keys() - {"*"} <= registry().resource_types


def test_only_backend_services_reach_types_the_table_does_not_list() -> None:
    """The `*` row: a network backend service loads every type (R4 has ~145); people only
    the types their column lists."""
    assert roles.may(Principal(Kind.SYSTEM, "Device/loader"), "ValueSet", roles.WRITE)
    assert "ValueSet" in roles.readable(Principal(Kind.SYSTEM, "Device/loader"))
    for column in set(COLUMNS) - {"system"}:
        assert not roles.table().may(column, "ValueSet", roles.READ), column
        assert "ValueSet" not in roles.table().types(column), column


def test_write_implies_read() -> None:
    table = roles.table()
    for column in COLUMNS:
        for type_, (read, write) in table.access[column].items():
            assert read or not write, (column, type_)


def test_unknown_types_roles_and_needs_are_denied() -> None:
    assert not roles.may(who("gp"), "Claim", roles.READ)  # not in the table
    nobody = Principal(Kind.STAFF, "Practitioner/x")
    assert roles.readable(nobody) == frozenset()
    assert not roles.may(nobody, "Patient", roles.READ)


def test_social_worker_sees_no_lab_results_and_writes_no_medicines() -> None:
    sw = who("social-worker")
    for type_ in ("Observation", "DiagnosticReport", "Specimen"):
        assert not roles.may(sw, type_, roles.READ), type_
    for type_ in ("MedicationRequest", "MedicationStatement", "MedicationDispense",
                  "MedicationAdministration"):
        assert not roles.may(sw, type_, roles.WRITE), type_
    assert roles.may(sw, "CarePlan", roles.WRITE) and roles.may(sw, "Condition", roles.READ)


def test_pharmacist_reads_medicines_allergies_conditions_and_writes_medicines() -> None:
    ph = who("pharmacist")
    for type_ in ("MedicationRequest", "MedicationStatement", "MedicationDispense",
                  "AllergyIntolerance", "Condition"):
        assert roles.may(ph, type_, roles.READ), type_
    for type_ in ("MedicationStatement", "MedicationDispense", "MedicationAdministration"):
        assert roles.may(ph, type_, roles.WRITE), type_
    for type_ in ("Condition", "AllergyIntolerance", "CarePlan", "Patient"):
        assert not roles.may(ph, type_, roles.WRITE), type_


def test_admin_reads_demographics_and_the_directory_only() -> None:
    assert roles.readable(who("admin")) == {
        "Patient", "RelatedPerson", "Practitioner", "PractitionerRole", "Organization",
        "Location", "HealthcareService", "Schedule", "Slot"}


@pytest.mark.parametrize("column", ["patient", "carer"])
def test_patients_and_carers_write_only_patient_contributed_types(column: str) -> None:
    writable = roles.table().types(column, roles.WRITE)
    assert writable <= {"Observation", "Goal", "QuestionnaireResponse", "Communication",
                        "Consent", "Appointment"}  # Appointment: booking their own


def test_audit_is_read_by_privacy_officers_and_patients_only() -> None:
    readers = {c for c in COLUMNS if roles.table().may(c, "AuditEvent", roles.READ)}
    assert readers == {"privacy-officer", "patient", "system"}
