"""SMART scopes: parsing v2 and v1, and the pure decision `allows` (no database)."""

from __future__ import annotations

import pytest

from consent.scopes import allows, filters, parse, parse_resource_scope

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


@pytest.mark.parametrize(("text", "context", "type_", "letters", "v1"), [
    ("patient/Observation.rs", "patient", "Observation", "rs", False),
    ("user/*.cruds", "user", "*", "cruds", False),
    ("system/Patient.c", "system", "Patient", "c", False),
    ("patient/*.read", "patient", "*", "rs", True),
    ("user/Observation.write", "user", "Observation", "cud", True),
    ("system/*.*", "system", "*", "cruds", True),
])
def test_parse_resource_scopes(text: str, context: str, type_: str, letters: str,
                               v1: bool) -> None:
    scope = parse_resource_scope(text)
    assert scope is not None
    assert (scope.context, scope.resource_type, scope.v1) == (context, type_, v1)
    assert scope.interactions == frozenset(letters)


@pytest.mark.parametrize("text", [
    "patient/Observation.sr",  # v2 letters out of order
    "patient/Observation.rr", "patient/Observation.x", "patient/Observation.",
    "patients/Observation.rs", "patient/observation.rs", "Observation.rs", "patient/.rs",
    "patient/Observation.read?category=laboratory",  # narrowing is v2 only
    "patient/Observation.rs?category", "patient/Observation.rs?=x",
])
def test_malformed_scopes_are_not_resource_scopes(text: str) -> None:
    assert parse_resource_scope(text) is None
    assert parse(text).invalid == (text,)


def test_parse_keeps_launch_and_identity_scopes_and_order() -> None:
    scopes = parse("launch openid fhirUser patient/*.rs launch/patient offline_access "
                   "bogus patient/*.rs")
    assert scopes.names == {"launch", "openid", "fhirUser", "launch/patient", "offline_access"}
    assert scopes.invalid == ("bogus",)
    assert scopes.texts() == ["launch", "openid", "fhirUser", "patient/*.rs", "launch/patient",
                              "offline_access"]
    assert "openid" in scopes and "patient/*.rs" in scopes and "bogus" not in scopes


def test_search_parameter_scope_parses_conditions() -> None:
    scope = parse_resource_scope(f"patient/Observation.rs?category={LAB}")
    assert scope is not None
    assert scope.conditions == (("category", LAB),)
    encoded = parse_resource_scope("patient/Observation.rs?code=http%3A%2F%2Floinc.org%7C1-8")
    assert encoded is not None and encoded.conditions == (("code", "http://loinc.org|1-8"),)


# (scopes, context, type, interaction, params, expected)
DECISIONS = [
    ("patient/Observation.rs", "patient", "Observation", "r", None, True),
    ("patient/Observation.rs", "patient", "Observation", "s", None, True),
    ("patient/Observation.rs", "patient", "Observation", "c", None, False),
    ("patient/Observation.rs", "patient", "Condition", "r", None, False),
    ("patient/Observation.rs", "user", "Observation", "r", None, False),
    ("patient/Observation.rs", "system", "Observation", "r", None, False),
    ("user/*.cruds", "user", "Condition", "d", None, True),
    ("user/*.cruds", "patient", "Condition", "r", None, False),
    ("system/*.rs", "system", "Patient", "s", None, True),
    ("system/*.rs", "system", "Patient", "u", None, False),
    # v1 mapped to v2: read = rs, write = cud, * = cruds
    ("patient/*.read", "patient", "Observation", "s", None, True),
    ("patient/*.read", "patient", "Observation", "u", None, False),
    ("user/Observation.write", "user", "Observation", "c", None, True),
    ("user/Observation.write", "user", "Observation", "u", None, True),
    ("user/Observation.write", "user", "Observation", "d", None, True),
    ("user/Observation.write", "user", "Observation", "r", None, False),
    ("system/*.*", "system", "Encounter", "d", None, True),
    # several scopes: any one may allow
    ("patient/Observation.r user/Condition.s", "user", "Condition", "s", None, True),
    ("patient/Observation.r user/Condition.s", "user", "Observation", "r", None, False),
    # not an interaction, not a context, nothing granted
    ("user/*.cruds", "user", "Patient", "x", None, False),
    ("user/*.cruds", "admin", "Patient", "r", None, False),
    ("", "user", "Patient", "r", None, False),
    ("openid fhirUser launch", "user", "Patient", "r", None, False),
    # search-parameter scopes: only what such a search would find
    (f"patient/Observation.rs?category={LAB}", "patient", "Observation", "s",
     {"category": LAB}, True),
    (f"patient/Observation.rs?category={LAB}", "patient", "Observation", "s",
     [("category", LAB), ("date", "ge2024")], True),
    (f"patient/Observation.rs?category={LAB}", "patient", "Observation", "s", None, False),
    (f"patient/Observation.rs?category={LAB}", "patient", "Observation", "s",
     {"category": "laboratory"}, False),  # any system is wider than the scope's
    (f"patient/Observation.rs?category={LAB}", "patient", "Observation", "s",
     {"category": f"{LAB},http://terminology.hl7.org/CodeSystem/observation-category|"
                  "vital-signs"}, False),  # one alternative lies outside
    (f"patient/Observation.rs?category={LAB}", "patient", "Observation", "s",
     {"category:not": LAB}, False),
    (f"patient/Observation.rs?category={LAB}", "patient", "Observation", "c",
     {"category": LAB}, False),
    ("patient/Observation.rs?category=laboratory", "patient", "Observation", "s",
     {"category": LAB}, True),  # a system-qualified value lies within a bare code
    ("patient/Observation.rs?category=laboratory", "patient", "Observation", "s",
     {"category": ["laboratory", LAB]}, True),
    ("patient/Observation.rs?category=laboratory&status=final", "patient", "Observation",
     "s", {"category": "laboratory"}, False),  # every condition must be met
    ("patient/Observation.rs?category=laboratory&status=final", "patient", "Observation",
     "s", {"category": "laboratory", "status": "final"}, True),
    # a narrowed scope next to a plain one: the plain one decides
    (f"patient/Observation.rs?category={LAB} patient/Observation.r", "patient",
     "Observation", "r", None, True),
]


@pytest.mark.parametrize(("scopes", "context", "type_", "interaction", "params", "expected"),
                         DECISIONS)
def test_allows(scopes: str, context: str, type_: str, interaction: str, params: object,
                expected: bool) -> None:
    assert allows(scopes, context, type_, interaction, params) is expected  # type: ignore[arg-type]


def test_allows_takes_lists_and_parsed_scopes() -> None:
    assert allows(["patient/Observation.rs", "openid"], "patient", "Observation", "r")
    assert allows(parse("user/*.rs"), "user", "Patient", "s")


def test_filters_for_the_enforcement_layer() -> None:
    assert filters("patient/*.rs", "patient", "Observation", "s") is None
    assert filters("patient/Condition.rs", "patient", "Observation", "s") == []
    narrowed = filters(f"patient/Observation.rs?category={LAB} "
                       "patient/Observation.rs?category=vital-signs", "patient", "Observation",
                       "r")
    assert narrowed == [(("category", LAB),), (("category", "vital-signs"),)]
    assert filters(f"patient/Observation.rs?category={LAB} patient/Observation.r", "patient",
                   "Observation", "r") is None
