"""The search parameter registry, built once from the official R4 SearchParameter definitions.

Data: `fhir/data/search-parameters.json` and `compartmentdefinition-patient.json`
(provenance in `fhir/data/PROVENANCE.md`). A parameter whose FHIRPath expression falls outside
the subset `fhir.fhirpath` compiles is left out, and so is absent from the CapabilityStatement.

Composite parameters (https://hl7.org/fhir/R4/search.html#composite) are registered when they
have two components, the first token-like (token, or reference) and the second a token,
quantity, date, string or number: that is every R4 composite except the four 3-component
MolecularSequence coordinates (chromosome-variant-coordinate and the like), which are left out
(two of them also need `%resource`, outside the FHIRPath subset).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fhir.fhirpath import Node, Unsupported, compile_path, compile_relative

DATA = Path(__file__).parent / "data"

# Parameters answered from the resource table itself, not from an index table.
TABLE_PARAMS = {"_id": "token", "_lastUpdated": "date"}
# Types that are messages about the exchange, never stored records.
NOT_STORED = {"OperationOutcome", "Parameters"}
INDEXED_TYPES = ("token", "string", "date", "reference", "quantity", "uri", "number",
                 "composite")
# Special parameters the index holds (fhir/search/near.py): Location.near, a position.
SPECIAL = {"http://hl7.org/fhir/SearchParameter/Location-near"}
# The component types the sp_composite table holds: first component, second component.
COMPOSITE_FIRST = ("token", "reference")
COMPOSITE_SECOND = ("token", "quantity", "date", "string", "number")
# R4 errata: DocumentReference-relationship pairs each component definition with the other's
# expression (relatesto with `code`, relation with `target`); R4B/R5 swap them back.
_COMPONENT_EXPRESSIONS = {
    "http://hl7.org/fhir/SearchParameter/DocumentReference-relationship": ("target", "code"),
}


@dataclass(frozen=True, slots=True)
class Component:
    """One component of a composite parameter: its type and its path from the composite's node."""

    type: str
    definition: str
    expression: str
    evaluate: Callable[[Node], list[Node]] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter as it applies to one resource type.

    `code` is the name a search uses; `key` is the name its rows carry in the index tables
    (`param`): the code, except for the types of `OWN_KEYS`, whose rows must not share a
    key with any other type's (`index_key`)."""

    code: str
    type: str
    url: str
    expression: str
    description: str = ""
    targets: tuple[str, ...] = ()
    evaluate: Callable[[dict[str, Any]], list[Node]] = field(
        default=lambda r: [], compare=False, repr=False
    )
    components: tuple[Component, ...] = ()  # composite parameters only
    key: str = ""  # the index tables' `param` (index_key); set by `registry()`


@dataclass(frozen=True)
class Registry:
    """Search parameters by resource type and code, and the Patient compartment."""

    resource_types: frozenset[str]
    params: dict[str, dict[str, SearchParam]]
    compartment: dict[str, tuple[str, ...]]

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        return self.params.get(resource_type, {})

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.params.get(resource_type, {}).get(code)


# Types whose index rows carry keys of their own ("AuditEvent.patient", not "patient"). The
# access log grows with every request, by far faster than any record: with shared keys, the
# rows of `Observation?patient=X` (or `?date=`, `Provenance?agent=`) sat among all the
# AuditEvents filed under X, and every such search waded through them as the log grew
# (issue 16: 0.17 s to 3-7 s after a few thousand events). With keys of their own, a search
# of any other type never meets an AuditEvent's rows, and the log's own searches only them.
OWN_KEYS = frozenset({"AuditEvent"})


def index_key(resource_type: str, code: str) -> str:
    """The `param` of `resource_type`'s index rows for search parameter `code` (a suffix
    such as ":identifier" or ":of-type" follows the key)."""
    return f"{resource_type}.{code}" if resource_type in OWN_KEYS else code


def _branches_for(expression: str, base: str) -> str:
    """The union branches of a shared expression that start at `base` (or at any Resource)."""
    branches = [b.strip() for b in expression.split("|")]
    if any(b.count("(") != b.count(")") for b in branches):
        return expression
    own = [
        b for b in branches if b.lstrip("(").split(".")[0] in (base, "Resource", "DomainResource")
    ]
    return " | ".join(own) if own else expression


def _load_json(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _components(sp: dict[str, Any], types: dict[str, str]) -> tuple[Component, ...]:
    """The components of composite `sp`, or Unsupported if the index cannot hold them."""
    parts = sp.get("component") or []
    if len(parts) != 2:
        raise Unsupported(f"{sp['url']}: only 2-component composites are indexed")
    expressions = _COMPONENT_EXPRESSIONS.get(sp["url"]) or tuple(p["expression"] for p in parts)
    out = []
    for part, expression, allowed in zip(parts, expressions, (COMPOSITE_FIRST, COMPOSITE_SECOND),
                                         strict=True):
        kind = types.get(part["definition"])
        if kind not in allowed:
            raise Unsupported(f"{sp['url']}: a {kind} component is not indexed there")
        out.append(Component(kind, part["definition"], expression, compile_relative(expression)))
    return tuple(out)


@cache
def registry() -> Registry:
    """The process-wide registry (immutable, built on first use)."""
    compartment_def = _load_json("compartmentdefinition-patient.json")
    resource_types = frozenset(r["code"] for r in compartment_def["resource"]) - NOT_STORED
    compartment = {
        r["code"]: tuple(r.get("param", ())) for r in compartment_def["resource"] if r.get("param")
    }
    params: dict[str, dict[str, SearchParam]] = {t: {} for t in resource_types}
    compiled: dict[str, Callable[[dict[str, Any]], list[Node]]] = {}
    entries = [entry["resource"] for entry in _load_json("search-parameters.json")["entry"]]
    types = {sp["url"]: sp["type"] for sp in entries}
    for sp in entries:
        expression = sp.get("expression")
        indexed = sp["type"] in INDEXED_TYPES or sp["url"] in SPECIAL
        if not indexed or not expression or sp["code"] in TABLE_PARAMS:
            continue
        components: tuple[Component, ...] = ()
        if sp["type"] == "composite":
            try:
                components = _components(sp, types)
            except Unsupported:
                continue
        bases = sp["base"]
        if "Resource" in bases or "DomainResource" in bases:
            bases = sorted(resource_types)
        for base in bases:
            if base not in params:
                continue
            own = _branches_for(expression, base)
            try:
                evaluate = compiled.get(own) or compile_path(own)
            except Unsupported:
                continue
            compiled[own] = evaluate
            params[base][sp["code"]] = SearchParam(
                code=sp["code"],
                key=index_key(base, sp["code"]),
                type=sp["type"],
                url=sp["url"],
                expression=own,
                description=sp.get("description", ""),
                targets=tuple(sp.get("target", ())),
                evaluate=evaluate,
                components=components,
            )
    return Registry(resource_types=resource_types, params=params, compartment=compartment)
