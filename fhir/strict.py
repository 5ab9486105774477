"""Strict checks of a resource's JSON, element by element, before the model sees it.

The R4B models coerce ("active": "yes" passes as True) and know nothing of references,
narrative or contained resources; storing the JSON they accepted would store what they never
checked. This walk follows the models' field definitions (fhir/validation.py gives them as
`Field`s) over the JSON as sent and reports, with each element's path:

- a primitive whose JSON type is not its FHIR type's (https://hl7.org/fhir/R4/json.html#primitive:
  boolean as true/false, integer and decimal as numbers, every other primitive as a string);
- a code outside its required binding (https://hl7.org/fhir/R4/terminologies.html#required);
- an empty object, array or string, or a null (json.html: ele-1, "no empty arrays");
- an array where one value belongs, or one value where an array does;
- a reference that is no literal reference of a known type (rules.reference_problem); a
  local `#id` that names no contained resource;
- a narrative that is not safe, well-formed XHTML (rules.narrative_problem);
- a contained resource without an id, of an unknown type, or containing others (dom-2).
Unknown elements are left to the model, which refuses them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from fhir import rules
from fhir.errors import Issue


@dataclass(frozen=True, slots=True)
class Field:
    """One element of a model: list or not, its kind (boolean, integer, decimal, string,
    xhtml, complex, resource), its model (complex), its required codes and reference targets."""

    many: bool
    kind: str
    model: Any = None
    codes: frozenset[str] | None = None
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Schema:
    fields: Callable[[Any], dict[str, Field]]  # a model's elements by JSON name
    resource: Callable[[str], Any]  # a resource type's model, or None if unknown
    reference: Any  # the Reference model


def check(resource: dict[str, Any], model: Any, path: str, schema: Schema) -> list[Issue]:
    """Every problem found in `resource` (of `model`), as OperationOutcome issues."""
    walk = _Walk(schema)
    walk.resource(resource, model, path, nested=False)
    return walk.issues


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float, Decimal)):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "..."
        return f'the string "{shown}"'
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "null"


class _Walk:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.issues: list[Issue] = []

    def add(self, where: str, message: str, code: str = "value") -> None:
        if len(self.issues) < 20:
            self.issues.append(Issue(code, f"{where}: {message}.", expression=where))

    def resource(self, body: dict[str, Any], model: Any, path: str, *, nested: bool,
                 local: set[str] | None = None) -> None:
        contained = body.get("contained")
        if nested:
            if not isinstance(body.get("id"), str):
                self.add(f"{path}.id", "a contained resource needs an id, by which the "
                         "resource that contains it refers to it", "required")
            if contained is not None:
                self.add(f"{path}.contained", "a contained resource cannot contain other "
                         "resources (dom-2)", "structure")
                return
        else:
            local = {c["id"] for c in contained if isinstance(c, dict)
                     and isinstance(c.get("id"), str)} if isinstance(contained, list) else set()
        self.object(body, model, path, local, skip="resourceType")

    def object(self, value: Any, model: Any, path: str, local: set[str] | None,
               skip: str | None = None) -> None:
        if not isinstance(value, dict):
            self.add(path, f"must be a JSON object, not {_json_kind(value)}", "structure")
            return
        if not value:  # (a resource has its resourceType: it may hold nothing else)
            self.add(path, "an empty object is not allowed: every element has a value or "
                     "children (ele-1)", "required")
            return
        fields = self.schema.fields(model)
        for key, item in value.items():
            spec = fields.get(key)
            if spec is None or key == skip:
                continue  # unknown elements: the model refuses them, naming each
            where = f"{path}.{key}"
            if not spec.many:
                if isinstance(item, list):
                    self.add(where, "takes one value, not an array", "structure")
                else:
                    self.value(item, spec, where, local, key)
                continue
            if not isinstance(item, list):
                self.add(where, f"must be an array, not {_json_kind(item)}", "structure")
                continue
            if not item:
                self.add(where, "an empty array is not allowed; leave the element out",
                         "required")
                continue
            # A primitive array may hold nulls where its `_name` twin holds the extensions
            # (and the other way round): https://hl7.org/fhir/R4/json.html#primitive
            twin = key[1:] if key.startswith("_") else f"_{key}"
            for i, one in enumerate(item):
                if one is None and twin in value:
                    continue
                self.value(one, spec, f"{where}[{i}]", local, key)

    def value(self, item: Any, spec: Field, where: str, local: set[str] | None,
              key: str) -> None:
        if item is None:
            self.add(where, "null is not a value; leave the element out", "required")
            return
        kind = spec.kind
        if kind == "complex":
            self.object(item, spec.model, where, local)
            if spec.model is self.schema.reference and isinstance(item, dict):
                ref = item.get("reference")
                if isinstance(ref, str) and ref:
                    problem = rules.reference_problem(ref, _resource_types(), local)
                    if problem:
                        self.add(f"{where}.reference", problem)
            return
        if kind == "resource":
            self.contained(item, where, local, nested=key == "contained")
            return
        if kind == "boolean":
            if not isinstance(item, bool):
                self.add(where, f"must be a JSON boolean (true or false), not "
                         f"{_json_kind(item)}")
            return
        if kind == "integer":
            if isinstance(item, bool) or not isinstance(item, int):
                self.add(where, f"must be a JSON integer, not {_json_kind(item)}")
            return
        if kind == "decimal":
            if isinstance(item, bool) or not isinstance(item, (int, float, Decimal)):
                self.add(where, f"must be a JSON number, not {_json_kind(item)}")
            return
        if not isinstance(item, str):
            self.add(where, f"must be a JSON string, not {_json_kind(item)}")
            return
        if not item:
            self.add(where, "an empty string is not allowed; leave the element out",
                     "required")
        elif spec.codes is not None and item not in spec.codes:
            codes = sorted(spec.codes)
            shown = ", ".join(codes[:12]) + (", ..." if len(codes) > 12 else "")
            self.add(where, f"'{item}' is not a code of its required value set ({shown})",
                     "code-invalid")
        elif kind == "xhtml":
            problem = rules.narrative_problem(item)
            if problem:
                self.add(where, f"the narrative is not valid: {problem}")

    def contained(self, item: Any, where: str, local: set[str] | None, *,
                  nested: bool) -> None:
        if not isinstance(item, dict):
            self.add(where, f"must be a resource (a JSON object), not {_json_kind(item)}",
                     "structure")
            return
        type_ = item.get("resourceType")
        model = self.schema.resource(type_) if isinstance(type_, str) else None
        if model is None:
            self.add(f"{where}.resourceType", f"{type_!r} is not a FHIR resource type",
                     "structure")
            return
        self.resource(item, model, where, nested=nested, local=local if nested else None)


@cache
def _resource_types() -> frozenset[str]:
    """Every resource type name of FHIR R4 (a reference may name any, OperationOutcome too)."""
    path = Path(__file__).parent / "data" / "required-codes.json"
    return frozenset(json.loads(path.read_text(encoding="utf-8"))["resource-types"]["codes"])
