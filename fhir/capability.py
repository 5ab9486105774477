"""The CapabilityStatement: exactly the interactions and search parameters that work.

https://hl7.org/fhir/R4/capabilitystatement.html. Built from the registry, so a parameter the
index cannot extract is not advertised.
"""

from __future__ import annotations

from typing import Any

from fhir.registry import registry

TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance",
                     "history-type", "create", "search-type")
EVERYTHING = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
# type → its operations (name, definition); packages above fhir/ add theirs at start-up.
OPERATIONS: dict[str, list[dict[str, str]]] = {
    "Patient": [{"name": "everything", "definition": EVERYTHING}]}


# Operations at the base ([base]/$name), added the same way.
SYSTEM_OPERATIONS: list[dict[str, str]] = []


def add_system_operation(name: str, definition: str) -> None:
    if not any(op["name"] == name for op in SYSTEM_OPERATIONS):
        SYSTEM_OPERATIONS.append({"name": name, "definition": definition})


def add_operation(type_: str, name: str, definition: str) -> None:
    """Advertise operation `name` on `type_` (idempotent)."""
    found = OPERATIONS.setdefault(type_, [])
    if not any(op["name"] == name for op in found):
        found.append({"name": name, "definition": definition})


SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def smart_security(endpoints: dict[str, str]) -> dict[str, Any]:
    """rest.security of a SMART on FHIR server (https://hl7.org/fhir/smart-app-launch/
    conformance.html#using-cors): the service, and the OAuth endpoints (`authorize`,
    `token`, `register`, `introspect`, `revoke`, ...) in the oauth-uris extension."""
    return {
        "cors": True,
        "service": [{"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR",
                                 "display": "SMART-on-FHIR"}],
                     "text": "OAuth2 using SMART-on-FHIR profile"}],
        "description": "Every interaction but /metadata needs a bearer token (SMART App Launch "
                       "v2: patient/, user/ and system/ scopes; see "
                       ".well-known/smart-configuration). What a token's user may see and do "
                       "follows their role, their relationship to the patient, the patient's "
                       "Consent and security labels; every access is audited (AuditEvent).",
        "extension": [{"url": SMART_OAUTH_URIS, "extension": [
            {"url": name, "valueUri": url} for name, url in endpoints.items()]}],
    }


def capability_statement(*, base: str, software_version: str,
                         security: dict[str, Any] | None = None) -> dict[str, Any]:
    reg = registry()
    resources = []
    for type_ in sorted(reg.resource_types):
        params = [
            {"name": "_id", "type": "token",
             "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"},
            {"name": "_lastUpdated", "type": "date",
             "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
        ]
        params += [
            {"name": sp.code, "type": sp.type, "definition": sp.url}
            for sp in sorted(reg.for_type(type_).values(), key=lambda p: p.code)
        ]
        resources.append({
            "type": type_,
            "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
            "versioning": "versioned",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchParam": params,
            **({"operation": list(OPERATIONS[type_])} if OPERATIONS.get(type_) else {}),
        })
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "carenet",
        "kind": "instance",
        "software": {"name": "carenet", "version": software_version},
        "implementation": {"description": "carenet shared care record", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            **({"security": security} if security is not None else {}),
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"},
                            {"code": "history-system"}],
            **({"operation": list(SYSTEM_OPERATIONS)} if SYSTEM_OPERATIONS else {}),
            # GET Patient/[id]/[type]: search within a patient's compartment
            "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
        }],
    }
