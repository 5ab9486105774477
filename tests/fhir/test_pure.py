"""Pure logic without a database: FHIRPath subset, index extraction, dates, NHS numbers."""

from __future__ import annotations

import pytest

from fhir.dates import BadDate, date_range
from fhir.fhirpath import Unsupported, compile_path
from fhir.index import extract, normalise
from fhir.registry import registry
from fhir.search import split_values
from fhir.validation import nhs_number_valid


def test_fhirpath_choice_cast_and_resolve_filter() -> None:
    evaluate = compile_path(
        "(Observation.value as Quantity) | Observation.subject.where(resolve() is Patient)"
    )
    obs = {"resourceType": "Observation", "valueQuantity": {"value": 5},
           "subject": {"reference": "Group/1"}}
    assert [v for v, _ in evaluate(obs)] == [{"value": 5}]
    obs["subject"] = {"reference": "Patient/9"}
    obs["valueString"] = "x"
    obs.pop("valueQuantity")
    assert [v for v, _ in evaluate(obs)] == [{"reference": "Patient/9"}]


def test_fhirpath_where_literal_and_unsupported() -> None:
    evaluate = compile_path("Patient.telecom.where(system='email')")
    patient = {"resourceType": "Patient", "telecom": [{"system": "phone", "value": "1"},
                                                      {"system": "email", "value": "a@b"}]}
    assert [v["value"] for v, _ in evaluate(patient)] == ["a@b"]
    with pytest.raises(Unsupported):
        compile_path("Patient.deceased.exists() and Patient.deceased != false")


def test_registry_leaves_out_what_it_cannot_index() -> None:
    reg = registry()
    assert reg.get("Patient", "birthdate").type == "date"
    assert reg.get("Patient", "deceased") is None  # expression outside the subset
    assert reg.get("Observation", "code-value-quantity").type == "composite"
    # 3-component composites (and %resource) are beyond the sp_composite table
    assert reg.get("MolecularSequence", "chromosome-variant-coordinate") is None


def test_extract_patient_rows() -> None:
    patient = {
        "resourceType": "Patient", "id": "p1", "birthDate": "1940-05-02", "gender": "female",
        "name": [{"family": "Müller", "given": ["Anna"]}],
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
        "telecom": [{"system": "phone", "value": "0123"}],
        "generalPractitioner": [{"reference": "Organization/A81001"}],
    }
    rows = extract(patient, registry())
    tokens = {(r[0], r[1], r[2]) for r in rows["token"]}
    assert ("identifier", "https://fhir.nhs.uk/Id/nhs-number", "9000000009") in tokens
    assert ("gender", None, "female") in tokens
    assert ("phone", None, "0123") in tokens
    strings = {(r[0], r[1]) for r in rows["string"]}
    assert ("family", "muller") in strings and ("name", "anna") in strings
    assert ("general-practitioner", "Organization", "A81001", None) in rows["reference"]
    (lo, hi), = [(r[1], r[2]) for r in rows["date"] if r[0] == "birthdate"]
    assert (lo, hi) == date_range("1940-05-02")


def test_date_ranges_follow_precision() -> None:
    year = date_range("2024")
    assert year[1] - year[0] == 366 * 86400  # a leap year
    assert date_range("2024-02")[1] - date_range("2024-02")[0] == 29 * 86400
    lo, hi = date_range("2024-03-01T10:00:00+01:00")
    assert lo == date_range("2024-03-01T09:00:00Z")[0] and hi - lo == 1
    with pytest.raises(BadDate):
        date_range("2024-13-01")
    with pytest.raises(BadDate):
        date_range("yesterday")


@pytest.mark.parametrize(("number", "valid"), [
    ("9000000009", True), ("9434765919", True), ("9000000001", False),
    ("943476591", False), ("94347659190", False), ("abcdefghij", False),
])
def test_nhs_number_modulus_11(number: str, valid: bool) -> None:
    assert nhs_number_valid(number) is valid


def test_search_value_escaping_and_normalising() -> None:
    assert split_values(r"a,b\,c,d\\") == ["a", "b,c", "d\\"]
    assert normalise("ÉLODIE") == "elodie"
