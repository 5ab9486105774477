"""GET [base]/metadata: the CapabilityStatement says what the server does, and only that."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.support import BASE

SAMPLE = {"token": "x", "string": "x", "date": "2000", "reference": "Patient/x",
          "quantity": "5", "number": "5", "uri": "http://example.org/x",
          "composite": "x$2000",  # 2000: a valid token, quantity, date, string and number
          "special": "51.5|-0.12|10|km"}  # Location.near, the only special one indexed


@pytest.fixture(scope="module")
async def capability(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/metadata")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    return r.json()


def resource(capability: dict[str, Any], type_: str) -> dict[str, Any]:
    [entry] = [r for r in capability["rest"][0]["resource"] if r["type"] == type_]
    return entry


def params(capability: dict[str, Any], type_: str) -> dict[str, str]:
    return {p["name"]: p["type"] for p in resource(capability, type_)["searchParam"]}


async def test_capability_statement_basics(capability: dict[str, Any]) -> None:
    assert capability["resourceType"] == "CapabilityStatement"
    assert capability["fhirVersion"] == "4.0.1"
    assert capability["kind"] == "instance"
    assert capability["status"] == "active"
    assert "application/fhir+json" in capability["format"]
    assert not any("xml" in f for f in capability["format"])
    assert capability["patchFormat"] == ["application/json-patch+json"]
    assert capability["implementation"]["url"] == BASE
    [rest] = capability["rest"]
    assert rest["mode"] == "server"
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch",
                                                         "history-system"}


async def test_resource_types_and_interactions(capability: dict[str, Any]) -> None:
    types = {r["type"] for r in capability["rest"][0]["resource"]}
    assert {"Patient", "Observation", "CarePlan", "Condition", "RiskAssessment",
            "Task", "Consent", "AuditEvent"} <= types
    assert "OperationOutcome" not in types and "Parameters" not in types
    patient = resource(capability, "Patient")
    assert {i["code"] for i in patient["interaction"]} == {
        "read", "vread", "update", "patch", "delete", "history-instance", "history-type",
        "create", "search-type"}
    assert patient["versioning"] in ("versioned", "versioned-update")
    assert patient["readHistory"] is True
    assert patient["updateCreate"] is True
    assert patient["conditionalCreate"] is True
    assert patient["conditionalUpdate"] is True
    assert patient["conditionalDelete"] == "single"


async def test_search_params_listed(capability: dict[str, Any]) -> None:
    patient = params(capability, "Patient")
    assert patient["birthdate"] == "date"
    assert patient["family"] == "string"
    assert patient["identifier"] == "token"
    assert patient["general-practitioner"] == "reference"
    assert patient["_id"] == "token" and patient["_lastUpdated"] == "date"
    # Patient.deceased.exists() and ... is beyond the FHIRPath the index understands
    assert "deceased" not in patient
    observation = params(capability, "Observation")
    assert observation["value-quantity"] == "quantity"
    # 2-component composites are indexed; the 3-component ones are not
    assert observation["code-value-quantity"] == "composite"
    assert observation["combo-code-value-concept"] == "composite"
    assert "chromosome-variant-coordinate" not in params(capability, "MolecularSequence")
    assert params(capability, "RiskAssessment")["probability"] == "number"
    assert params(capability, "ValueSet")["url"] == "uri"
    assert params(capability, "Location")["near"] == "special"
    for entry in capability["rest"][0]["resource"]:
        for p in entry["searchParam"]:
            assert p["type"] in SAMPLE, p
            assert p["definition"].startswith("http://hl7.org/fhir/SearchParameter/")


async def test_every_listed_search_param_is_accepted(client: httpx.AsyncClient,
                                                     capability: dict[str, Any]) -> None:
    for type_ in ("Patient", "Observation", "CarePlan", "Condition", "Encounter",
                  "RiskAssessment", "Task", "Location"):
        for name, kind in params(capability, type_).items():
            r = await client.get(f"/{type_}", params={name: SAMPLE[kind], "_count": "0"})
            assert r.status_code == 200, (type_, name, r.text)
        r = await client.get(f"/{type_}", params={"deceased": "true"})
        if "deceased" not in params(capability, type_):
            assert r.status_code == 400


async def test_every_listed_type_is_searchable(client: httpx.AsyncClient,
                                               capability: dict[str, Any]) -> None:
    for entry in capability["rest"][0]["resource"]:
        r = await client.get(f"/{entry['type']}", params={"_count": "0"})
        assert r.status_code == 200, (entry["type"], r.text)
        assert r.json()["type"] == "searchset"


async def test_metadata_needs_no_token_and_names_the_smart_endpoints(
        anonymous: httpx.AsyncClient) -> None:
    """A SMART app discovers how to sign in before it has a token: /metadata is public and its
    rest.security names the same endpoints as .well-known/smart-configuration."""
    r = await anonymous.get("/metadata")
    assert r.status_code == 200, r.text
    security = r.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    [uris] = [e for e in security["extension"] if e["url"].endswith("/oauth-uris")]
    named = {e["url"]: e["valueUri"] for e in uris["extension"]}
    smart = (await anonymous.get("/.well-known/smart-configuration")).json()
    assert named["authorize"] == smart["authorization_endpoint"]
    assert named["token"] == smart["token_endpoint"]
    assert named["revoke"] == smart["revocation_endpoint"]
    assert named["introspect"] == smart["introspection_endpoint"]
    refused = await anonymous.get("/Patient")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")


async def test_the_patient_operations_are_advertised(capability: dict[str, Any]) -> None:
    """An app finds $everything, $stratify and $draft-care-plan on Patient in /metadata."""
    names = {op["name"] for op in resource(capability, "Patient").get("operation", [])}
    assert {"everything", "stratify", "draft-care-plan"} <= names
