"""The generator: deterministic, valid FHIR, valid NHS numbers, closed references, sourced codes."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from api.synthetic import Network, Record, generate, transaction, write_ndjson
from api.synthetic.clinical import SPECS
from api.synthetic.ids import nhs_numbers
from api.synthetic.tables import medicines
from careplans.codes import DEFICITS, common_all, common_uses, deficit_codes, deficits_by_code
from fhir.validation import NHS_NUMBER_SYSTEM, check_resource, nhs_number_valid
from tests.synthetic.conftest import AS_OF

SNOMED = "http://snomed.info/sct"


def digest(seed: int, n: int, as_of: date = AS_OF) -> str:
    network, records = generate(seed, n, as_of)
    h = hashlib.sha256(orjson.dumps(transaction(network.resources)))
    for record in records:
        h.update(orjson.dumps(transaction(record.resources)))
    return h.hexdigest()


def everything(network: Network, records: list[Record]) -> list[dict[str, Any]]:
    return [*network.resources, *(r for rec in records for r in rec.resources)]


def references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [ref for v in value.values() for ref in references(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in references(v)]
    return []


def test_same_seed_same_bytes_and_different_seed_different_bytes() -> None:
    assert digest(11, 60) == digest(11, 60)
    assert digest(11, 60) != digest(12, 60)
    assert digest(11, 60) != digest(11, 60, date(2025, 6, 2))


def test_a_patient_does_not_depend_on_the_size_of_the_network() -> None:
    _, small = generate(5, 10, AS_OF)
    _, large = generate(5, 40, AS_OF)
    first_small = [r.resources for r in small]
    first_large = [r.resources for r in itertools.islice(large, 10)]
    # Patient i keeps its id, NHS number, age and history; only practice lists scale.
    for a, b in zip(first_small, first_large, strict=True):
        assert a[0]["id"] == b[0]["id"]
        assert a[0]["identifier"] == b[0]["identifier"]
        assert a[0]["birthDate"] == b[0]["birthDate"]


def test_every_resource_validates_with_the_r4b_models(
        small_network: tuple[Network, list[Record]]) -> None:
    resources = everything(*small_network)
    for resource in resources:
        check_resource(resource)
    kinds = Counter(r["resourceType"] for r in resources)
    for kind in ("Organization", "Practitioner", "PractitionerRole", "Patient", "Condition",
                 "Observation", "MedicationRequest", "Immunization", "AllergyIntolerance",
                 "Encounter", "Appointment", "RelatedPerson", "CareTeam", "CarePlan", "Goal"):
        assert kinds[kind] > 0, f"no {kind} in 200 patients"


def test_ids_are_unique_and_every_reference_resolves_within_the_network(
        small_network: tuple[Network, list[Record]]) -> None:
    resources = everything(*small_network)
    keys = [f"{r['resourceType']}/{r['id']}" for r in resources]
    assert len(keys) == len(set(keys))
    known = set(keys)
    refs = [ref for r in resources for ref in references(r)]
    assert refs
    assert [ref for ref in refs if ref not in known] == []


def test_each_record_refers_only_to_itself_and_the_network(
        small_network: tuple[Network, list[Record]]) -> None:
    network, records = small_network
    shared = {f"{r['resourceType']}/{r['id']}" for r in network.resources}
    for record in records:
        own = {f"{r['resourceType']}/{r['id']}" for r in record.resources}
        for resource in record.resources:
            assert set(references(resource)) <= own | shared


def test_nhs_numbers_pass_modulus_11_are_in_the_test_range_and_unique() -> None:
    numbers = list(itertools.islice(nhs_numbers(42), 25_000))
    assert len(set(numbers)) == len(numbers)
    assert all(n.startswith("999") and nhs_number_valid(n) for n in numbers)


def test_patients_carry_their_nhs_number_and_practice(
        small_network: tuple[Network, list[Record]]) -> None:
    network, records = small_network
    practices = {p.ref for p in network.practices}
    for record in records:
        patient = record.resources[0]
        assert patient["resourceType"] == "Patient"
        (ident,) = patient["identifier"]
        assert ident["system"] == NHS_NUMBER_SYSTEM and nhs_number_valid(ident["value"])
        assert patient["generalPractitioner"][0]["reference"] in practices


def test_network_scales_with_the_list_size() -> None:
    from api.synthetic import build_network

    assert len(build_network(1, 2_000).practices) == 3  # at least three
    assert len(build_network(1, 40_000).practices) == 5  # about one per 8,000 patients
    roles = {r["code"][0]["coding"][0]["code"] for r in build_network(1, 2_000).resources
             if r["resourceType"] == "PractitionerRole"}
    assert {"R0260", "R0700", "R1290", "R1330"} <= roles


def test_clinical_codes_come_from_the_shared_code_lists(
        small_network: tuple[Network, list[Record]]) -> None:
    listed = set(deficits_by_code())
    common = {code for use in common_uses() for code, _ in common_all(use)}
    for key, spec in SPECS.items():
        pool = {c for c, _ in deficit_codes()[spec.deficit]} if spec.deficit else common
        assert set(spec.codes) <= pool, key
    dmd = {m.code for m in medicines().values()}
    for record in small_network[1]:
        for r in record.resources:
            if r["resourceType"] == "Condition":
                assert r["code"]["coding"][0]["code"] in listed | common
            if r["resourceType"] == "MedicationRequest":
                assert r["medicationCodeableConcept"]["coding"][0]["code"] in dmd


def test_code_loader_reads_all_36_deficits() -> None:
    codes = deficit_codes()
    assert list(codes) == list(DEFICITS) and len(DEFICITS) == 36
    assert codes["polypharmacy"] == []
    # as the shared README counts, plus the falls codes added here (PROVENANCE.md, Local changes)
    assert sum(len(v) for v in codes.values()) == 2089 + 49


def test_polypharmacy_and_care_plans_appear_in_the_old_and_multimorbid(
        population_5000: list[Record]) -> None:
    old = [r for r in population_5000 if r.age >= 75]
    young = [r for r in population_5000 if r.age < 40]
    assert sum("polypharmacy" in r.deficits for r in old) > 0
    assert not any("polypharmacy" in r.deficits for r in young)
    mean_old = sum(len(r.medicines) for r in old) / len(old)
    mean_young = sum(len(r.medicines) for r in young) / len(young)
    assert mean_old > 5 * mean_young


def test_the_frail_use_more_emergency_care(population_5000: list[Record]) -> None:
    def emergencies(r: Record) -> int:
        return sum(1 for x in r.resources if x["resourceType"] == "Encounter"
                   and x["class"]["code"] in ("EMER", "IMP"))
    old = [r for r in population_5000 if r.age >= 65]
    frail = [r for r in old if r.efi > 0.24]
    fit = [r for r in old if r.efi <= 0.12]
    assert sum(map(emergencies, frail)) / len(frail) > 2 * sum(map(emergencies, fit)) / len(fit)


def test_ndjson_output_is_one_file_per_type(tmp_path: Path) -> None:
    network, records = generate(3, 20, AS_OF)
    counts = write_ndjson(tmp_path, network, records)
    for kind, count in counts.items():
        lines = (tmp_path / f"{kind}.ndjson").read_bytes().splitlines()
        assert len(lines) == count
        assert all(orjson.loads(line)["resourceType"] == kind for line in lines)
    assert counts["Patient"] == 20


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_networks(n: int) -> None:
    network, records = generate(1, n, AS_OF)
    assert len(list(records)) == n and network.resources
