"""Composite search parameters, `:identifier` on references and `:of-type` on identifiers.

https://hl7.org/fhir/R4/search.html#composite, #modifiers. HTTP tests run on both backends
(the `client` fixture); a module fixture writes a small data set marked with a fresh tag and
every search is scoped to it (identifier=urn:test|tag), so the expected answers are worked out
by hand from the data below. The extraction tests at the end need no database.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from fhir.dates import date_range
from fhir.fhirpath import compile_relative
from fhir.index import extract
from fhir.registry import registry
from tests.api.support import create, outcome, search_ids

Data = dict[str, Any]
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SCT = "http://snomed.info/sct"
CODES = "urn:test:codes"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _mmhg(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}


def blood_pressure(systolic: float, diastolic: float, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "status": "final", "code": _cc(LOINC, "85354-9"),
        "component": [
            {"code": _cc(LOINC, "8480-6"), "valueQuantity": _mmhg(systolic)},
            {"code": _cc(LOINC, "8462-4"), "valueQuantity": _mmhg(diastolic)},
        ],
        **extra,
    }


# ---------------------------------------------------------------- data


@pytest.fixture(scope="module")
async def data(client: httpx.AsyncClient) -> Data:
    tag = uuid.uuid4().hex[:12]
    mine = {"system": "urn:test", "value": tag}

    def typed(code: str, system: str, value: str) -> dict[str, Any]:
        return {"type": _cc(V2_0203, code), "system": system, "value": value}

    patients = {
        # the same identifier value under three types: MR, NH and none
        "mr": {"resourceType": "Patient",
               "identifier": [mine, typed("MR", "urn:mrn", f"{tag}-1")]},
        "nh": {"resourceType": "Patient",
               "identifier": [mine, typed("NH", "urn:nhs", f"{tag}-1")]},
        "plain": {"resourceType": "Patient",
                  "identifier": [mine, {"system": "urn:mrn", "value": f"{tag}-1"}]},
    }
    ids = {key: (await create(client, body))["id"] for key, body in patients.items()}

    def obs(**fields: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "status": "final", "identifier": [mine],
                **fields}

    observations = {
        # systolic 150 > 140, diastolic 85
        "bp_high": blood_pressure(150, 85, identifier=[mine]),
        # systolic 120, diastolic 145 > 140: a composite must not pair 8480-6 with 145
        "bp_crossed": blood_pressure(120, 145, identifier=[mine]),
        "bp_normal": blood_pressure(118, 76, identifier=[mine]),
        "heart_rate": obs(
            code=_cc(LOINC, "8867-4"),
            valueQuantity={"value": 72, "unit": "/min", "system": UCUM, "code": "/min"},
            subject={"reference": f"Patient/{ids['mr']}",
                     "identifier": {"system": "urn:nhs", "value": f"{tag}-nhs"}},
        ),
        "glucose": obs(
            code=_cc(LOINC, "2339-0"),
            valueQuantity={"value": 6.3, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
            subject={"identifier": {"system": "urn:nhs", "value": f"{tag}-other"}},
        ),
        "abo": obs(code=_cc(LOINC, "883-9"), valueCodeableConcept=_cc(SCT, "112144000")),
        "onset": obs(code=_cc(CODES, "onset"), valueDateTime="2024-03-01"),
        "onset_old": obs(code=_cc(CODES, "onset"), valueDateTime="2023-06-15"),
        "onset_period": obs(code=_cc(CODES, "onset"),
                            valuePeriod={"start": "2024-01-01", "end": "2024-12-31"}),
        "note": obs(code=_cc(CODES, "note"), valueString="Müller positive"),
        "cost": obs(code=_cc(CODES, "cost"), valueString="cost $5|a"),
    }
    for key, body in observations.items():
        ids[key] = (await create(client, body))["id"]
    return {"tag": tag, "ids": ids, "scope": [("identifier", f"urn:test|{tag}")]}


async def found(client: httpx.AsyncClient, data: Data, type_: str,
                *params: tuple[str, str]) -> set[str]:
    return set(await search_ids(client, type_, [*data["scope"], *params]))


def ids(data: Data, *keys: str) -> set[str]:
    return {data["ids"][k] for k in keys}


# ---------------------------------------------------------------- composites


@pytest.mark.parametrize(("value", "expected"), [
    # the point of composites: code and value from the SAME component
    (f"{LOINC}|8480-6$gt140", {"bp_high"}),
    (f"{LOINC}|8462-4$gt140", {"bp_crossed"}),
    ("8480-6$lt130", {"bp_crossed", "bp_normal"}),
    (f"{LOINC}|8480-6$150|{UCUM}|mm[Hg]", {"bp_high"}),
    (f"{LOINC}|8480-6$150||mmHg", {"bp_high"}),
    (f"{LOINC}|8480-6$150|{UCUM}|kg", set()),
    ("http://other|8480-6$gt140", set()),
    (f"{LOINC}|8480-6$gt140,{LOINC}|8462-4$gt140", {"bp_high", "bp_crossed"}),
    (f"{LOINC}|85354-9$gt0", set()),  # the panel code is not a component's code
])
async def test_component_code_value_quantity(client: httpx.AsyncClient, data: Data,
                                             value: str, expected: set[str]) -> None:
    got = await found(client, data, "Observation", ("component-code-value-quantity", value))
    assert got == ids(data, *expected)


async def test_separate_parameters_do_not_pair_components(client: httpx.AsyncClient,
                                                          data: Data) -> None:
    # without a composite, the code and the value may come from different components
    got = await found(client, data, "Observation", ("component-code", f"{LOINC}|8480-6"),
                      ("component-value-quantity", "gt140"))
    assert got == ids(data, "bp_high", "bp_crossed")


async def test_composite_and_of_two(client: httpx.AsyncClient, data: Data) -> None:
    got = await found(client, data, "Observation",
                      ("component-code-value-quantity", f"{LOINC}|8480-6$gt140"),
                      ("component-code-value-quantity", f"{LOINC}|8462-4$lt90"))
    assert got == ids(data, "bp_high")
    got = await found(client, data, "Observation",
                      ("component-code-value-quantity", f"{LOINC}|8480-6$gt110"),
                      ("component-code-value-quantity", f"{LOINC}|8462-4$lt80"))
    assert got == ids(data, "bp_normal")


@pytest.mark.parametrize(("value", "expected"), [
    (f"{LOINC}|8867-4$72", {"heart_rate"}),
    (f"{LOINC}|8867-4$gt100", set()),
    (f"{LOINC}|2339-0$ge6|{UCUM}|mmol/L", {"glucose"}),
    ("2339-0$6.3", {"glucose"}),
    ("2339-0$6.4", set()),
    ("8867-4$6.3", set()),  # 6.3 belongs to another code
    (f"{LOINC}|85354-9$gt0", set()),  # the panel itself has no value
])
async def test_code_value_quantity(client: httpx.AsyncClient, data: Data, value: str,
                                   expected: set[str]) -> None:
    got = await found(client, data, "Observation", ("code-value-quantity", value))
    assert got == ids(data, *expected)


async def test_combo_code_value_quantity(client: httpx.AsyncClient, data: Data) -> None:
    # combo: the Observation's own code and value, or any component's
    got = await found(client, data, "Observation",
                      ("combo-code-value-quantity", f"{LOINC}|8480-6$gt140,{LOINC}|8867-4$72"))
    assert got == ids(data, "bp_high", "heart_rate")


@pytest.mark.parametrize(("value", "expected"), [
    (f"{LOINC}|883-9${SCT}|112144000", {"abo"}),
    ("883-9$112144000", {"abo"}),
    (f"883-9${SCT}|", {"abo"}),
    (f"883-9${SCT}|999", set()),
    (f"8867-4${SCT}|112144000", set()),
])
async def test_code_value_concept(client: httpx.AsyncClient, data: Data, value: str,
                                  expected: set[str]) -> None:
    got = await found(client, data, "Observation", ("code-value-concept", value))
    assert got == ids(data, *expected)


@pytest.mark.parametrize(("value", "expected"), [
    (f"{CODES}|onset$2024-03", {"onset"}),
    (f"{CODES}|onset$2024-03-01", {"onset"}),
    (f"{CODES}|onset$2024", {"onset", "onset_period"}),  # value.as(DateTime) | as(Period)
    (f"{CODES}|onset$ge2024-01-01", {"onset", "onset_period"}),
    (f"{CODES}|onset$lt2024", {"onset_old"}),
    (f"{CODES}|onset$2023", {"onset_old"}),
    (f"{CODES}|note$2024", set()),
])
async def test_code_value_date(client: httpx.AsyncClient, data: Data, value: str,
                               expected: set[str]) -> None:
    got = await found(client, data, "Observation", ("code-value-date", value))
    assert got == ids(data, *expected)


@pytest.mark.parametrize(("value", "expected"), [
    (f"{CODES}|note$muller", {"note"}),  # starts with, case- and accent-insensitive
    (f"{CODES}|note$Müller pos", {"note"}),
    (f"{CODES}|note$positive", set()),
    (f"{CODES}|onset$muller", set()),
    (f"{CODES}|cost$cost \\$5\\|a", {"cost"}),  # escaped $ and | in the value
    (f"{CODES}|cost$cost \\$6", set()),
])
async def test_code_value_string(client: httpx.AsyncClient, data: Data, value: str,
                                 expected: set[str]) -> None:
    got = await found(client, data, "Observation", ("code-value-string", value))
    assert got == ids(data, *expected)


async def test_composite_missing(client: httpx.AsyncClient, data: Data) -> None:
    got = await found(client, data, "Observation",
                      ("component-code-value-quantity:missing", "false"))
    assert got == ids(data, "bp_high", "bp_crossed", "bp_normal")
    got = await found(client, data, "Observation", ("code-value-quantity:missing", "false"))
    assert got == ids(data, "heart_rate", "glucose")


@pytest.mark.parametrize(("name", "value", "text"), [
    ("component-code-value-quantity", "8480-6", "$"),
    ("component-code-value-quantity", "8480-6$", "$"),
    ("component-code-value-quantity", "a$b$c", "$"),
    ("component-code-value-quantity", "8480-6$abc", "number"),
    ("code-value-date", "x$yesterday", "code-value-date"),
    ("code-value-quantity:exact", "x$1", "modifier"),
])
async def test_composite_errors(client: httpx.AsyncClient, name: str, value: str,
                                text: str) -> None:
    r = await client.get("/Observation", params={name: value})
    outcome(r, 400, text)


async def test_composite_rows_follow_update_and_delete(client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:12]
    body = blood_pressure(150, 85, identifier=[{"system": "urn:test", "value": tag}])
    stored = await create(client, body)
    scope = [("identifier", f"urn:test|{tag}")]
    high = [*scope, ("component-code-value-quantity", f"{LOINC}|8480-6$gt140")]
    low = [*scope, ("component-code-value-quantity", f"{LOINC}|8480-6$lt140")]
    assert await search_ids(client, "Observation", high) == [stored["id"]]
    body = blood_pressure(130, 85, identifier=[{"system": "urn:test", "value": tag}],
                          id=stored["id"])
    r = await client.put(f"/Observation/{stored['id']}", json=body)
    assert r.status_code == 200, r.text
    assert await search_ids(client, "Observation", high) == []
    assert await search_ids(client, "Observation", low) == [stored["id"]]
    r = await client.delete(f"/Observation/{stored['id']}")
    assert r.status_code in (200, 204), r.text
    assert await search_ids(client, "Observation", low) == []


async def test_reference_first_component(client: httpx.AsyncClient) -> None:
    """DocumentReference relationship = relatesto$relation (reference, then token)."""
    tag = uuid.uuid4().hex[:12]

    def doc(**extra: Any) -> dict[str, Any]:
        return {"resourceType": "DocumentReference", "status": "current",
                "masterIdentifier": {"system": "urn:test", "value": f"{tag}-{len(extra)}"},
                "identifier": [{"system": "urn:test", "value": tag}],
                "content": [{"attachment": {"contentType": "text/plain"}}], **extra}

    old = (await create(client, doc()))["id"]
    new = (await create(client, doc(relatesTo=[
        {"code": "replaces", "target": {"reference": f"DocumentReference/{old}"}}])))["id"]
    scope = [("identifier", f"urn:test|{tag}")]
    for value, expected in [(f"DocumentReference/{old}$replaces", [new]),
                            (f"{old}$replaces", [new]),
                            (f"http://test/fhir/DocumentReference/{old}$replaces", [new]),
                            (f"DocumentReference/{old}$appends", []),
                            (f"DocumentReference/{new}$replaces", [])]:
        got = await search_ids(client, "DocumentReference", [*scope, ("relationship", value)])
        assert got == expected, value


# ---------------------------------------------------------------- :identifier, :of-type


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("subject:identifier", "urn:nhs|{tag}-nhs", {"heart_rate"}),
    ("patient:identifier", "urn:nhs|{tag}-nhs", {"heart_rate"}),
    ("subject:identifier", "{tag}-other", {"glucose"}),  # a reference with only an identifier
    ("subject:identifier", "urn:nhs|{tag}-other,urn:nhs|{tag}-nhs", {"heart_rate", "glucose"}),
    ("subject:identifier", "urn:other|{tag}-nhs", set()),
    ("subject:identifier", "urn:nhs|", {"heart_rate", "glucose"}),
])
async def test_reference_identifier_modifier(client: httpx.AsyncClient, data: Data, name: str,
                                             value: str, expected: set[str]) -> None:
    got = await found(client, data, "Observation", (name, value.format(tag=data["tag"])))
    assert got == ids(data, *expected)


@pytest.mark.parametrize(("value", "expected"), [
    (f"{V2_0203}|MR|{{tag}}-1", {"mr"}),
    (f"{V2_0203}|NH|{{tag}}-1", {"nh"}),
    (f"{V2_0203}|MR|{{tag}}-2", set()),
    ("urn:other|MR|{tag}-1", set()),
    (f"{V2_0203}|MR|{{tag}}-1,{V2_0203}|NH|{{tag}}-1", {"mr", "nh"}),
])
async def test_identifier_of_type(client: httpx.AsyncClient, data: Data, value: str,
                                  expected: set[str]) -> None:
    got = await found(client, data, "Patient",
                      ("identifier:of-type", value.format(tag=data["tag"])))
    assert got == ids(data, *expected)


async def test_identifier_without_of_type_ignores_type(client: httpx.AsyncClient,
                                                       data: Data) -> None:
    got = await found(client, data, "Patient", ("identifier", f"urn:mrn|{data['tag']}-1"))
    assert got == ids(data, "mr", "plain")
    r = await client.get("/Patient", params={"identifier:of-type": "MR|x"})
    outcome(r, 400, "of-type")


# ---------------------------------------------------------------- extraction, no database


def test_relative_paths_and_lower_camel_casts() -> None:
    evaluate = compile_relative("value.as(DateTime) | value.as(Period)")
    assert evaluate(({"valueDateTime": "2024"}, None)) == [("2024", "dateTime")]
    assert evaluate(({"valuePeriod": {"start": "2024"}}, None)) == [({"start": "2024"}, "Period")]
    assert evaluate(({"valueString": "2024"}, None)) == []
    assert compile_relative("value.as(string)")(({"valueString": "x"}, None)) == [("x", "string")]
    assert compile_relative("code")(({"code": "replaces"}, None)) == [("replaces", None)]


def test_registry_composites() -> None:
    reg = registry()
    sp = reg.get("Observation", "component-code-value-quantity")
    assert sp.type == "composite" and sp.expression == "Observation.component"
    assert [(c.type, c.expression) for c in sp.components] == [
        ("token", "code"), ("quantity", "value.as(Quantity)")]
    date_sp = reg.get("Observation", "code-value-date")
    assert [c.type for c in date_sp.components] == ["token", "date"]
    assert [c.type for c in reg.get("DocumentReference", "relationship").components] == [
        "reference", "token"]
    assert reg.get("MolecularSequence", "referenceseqid-window-coordinate") is None


def test_extract_pairs_within_each_component() -> None:
    rows = extract(blood_pressure(150, 85), registry())["composite"]
    pairs = {(r[0], r[2], r[6]) for r in rows}
    assert pairs == {
        ("component-code-value-quantity", "8480-6", 150.0),
        ("component-code-value-quantity", "8462-4", 85.0),
        ("combo-code-value-quantity", "8480-6", 150.0),
        ("combo-code-value-quantity", "8462-4", 85.0),
    }
    [row] = [r for r in rows if r[0] == "component-code-value-quantity" and r[2] == "8480-6"]
    assert row == ("component-code-value-quantity", LOINC, "8480-6", UCUM, "mm[Hg]", "mmHg",
                   150.0, None, None, None)


def test_extract_date_string_concept_rows() -> None:
    reg = registry()
    obs = {"resourceType": "Observation", "code": _cc(CODES, "onset"),
           "valueDateTime": "2024-03-01"}
    [row] = [r for r in extract(obs, reg)["composite"] if r[0] == "code-value-date"]
    assert row[1:3] == (CODES, "onset") and row[7:9] == date_range("2024-03-01")
    obs = {"resourceType": "Observation", "code": _cc(CODES, "note"), "valueString": "Müller"}
    [row] = [r for r in extract(obs, reg)["composite"] if r[0] == "code-value-string"]
    assert row[9] == "muller"
    obs = {"resourceType": "Observation", "code": {"coding": [
        {"system": LOINC, "code": "883-9"}, {"system": "urn:local", "code": "abo"}]},
        "valueCodeableConcept": _cc(SCT, "112144000")}
    got = {(r[1], r[2], r[3], r[4]) for r in extract(obs, reg)["composite"]
           if r[0] == "code-value-concept"}
    assert got == {(LOINC, "883-9", SCT, "112144000"), ("urn:local", "abo", SCT, "112144000")}


def test_extract_identifier_and_of_type_tokens() -> None:
    reg = registry()
    obs = {"resourceType": "Observation", "code": _cc(LOINC, "8867-4"),
           "subject": {"reference": "Patient/p1",
                       "identifier": {"system": "urn:nhs", "value": "9000000009"}}}
    tokens = extract(obs, reg)["token"]
    assert ("subject:identifier", "urn:nhs", "9000000009", None) in tokens
    assert ("patient:identifier", "urn:nhs", "9000000009", None) in tokens
    patient = {"resourceType": "Patient", "identifier": [
        {"type": _cc(V2_0203, "MR"), "system": "urn:mrn", "value": "12345"},
        {"system": "urn:nhs", "value": "9000000009"}]}
    tokens = extract(patient, reg)["token"]
    assert [t for t in tokens if t[0] == "identifier:of-type"] == [
        ("identifier:of-type", V2_0203, "MR|12345", None)]
    assert ("identifier", "urn:mrn", "12345", None) in tokens
