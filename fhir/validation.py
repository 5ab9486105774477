"""Resource validation on write: the R4B models of `fhir.resources`, and UK Core rules.

The only module that imports `fhir.resources` (DESIGN.md). Reads never come here: the stored
JSON was valid when written.
"""

from __future__ import annotations

import decimal
import importlib
import json
import re
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fhir import rules, strict
from fhir.errors import BadRequest, Issue, Unprocessable
from fhir.registry import registry
from fhir.resources.R4B import get_fhir_model_class

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def nhs_number_valid(number: str) -> bool:
    """The NHS number Modulus 11 check (NHS Data Dictionary, "NHS Number").

    Weights 10..2 over the first nine digits; check = 11 - (sum mod 11), 11 → 0, 10 → invalid.
    """
    if len(number) != 10 or not (number.isascii() and number.isdigit()):
        return False
    total = sum(int(d) * w for d, w in zip(number[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(number[9])


@cache
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


@cache
def _known_model(resource_type: str) -> Any | None:
    """The model of a FHIR resource type, or None (not a type, or one R4B lacks)."""
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None
    return model if model.__name__ == resource_type else None


def _location(resource_type: str, loc: tuple[Any, ...]) -> str:
    path = resource_type
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def check_resource(resource: Any, *, expected_type: str | None = None) -> dict[str, Any]:
    """Validate a parsed resource; raise `BadRequest`/`Unprocessable` saying what and where.

    Strict (DESIGN.md "Only valid FHIR is stored"): the JSON itself is checked (fhir/strict.py:
    each primitive's JSON type, codes of required bindings, no empty objects, arrays or
    strings, references, narrative, contained resources), then the R4B model, which checks
    formats and cardinality but coerces types; what is stored is the JSON that passed both.
    """
    if not isinstance(resource, dict):
        raise BadRequest("The body must be a JSON object holding one FHIR resource.")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise BadRequest("The resource has no resourceType.", expression="resourceType")
    if expected_type is not None and resource_type != expected_type:
        raise BadRequest(
            f"The body is a {resource_type} but the URL is for {expected_type}.",
            expression="resourceType",
        )
    if resource_type not in registry().resource_types:
        raise Unprocessable(f"{resource_type} is not a FHIR R4 resource type this server stores.")
    if rules.too_deep(resource):
        raise Unprocessable(f"The {resource_type} nests deeper than {rules.MAX_DEPTH} levels of "
                            "JSON objects and arrays, which this server does not store.")
    issues = strict.check(resource, _model(resource_type), resource_type, _schema())
    if issues:
        raise Unprocessable(issues=issues[:20])
    try:
        _model(resource_type).model_validate(resource)
    except ValidationError as exc:
        issues = [
            Issue(
                "structure" if err["type"] == "extra_forbidden" else "value",
                f"{_location(resource_type, err['loc'])}: "
                + ("unknown element" if err["type"] == "extra_forbidden" else err["msg"]),
                expression=_location(resource_type, err["loc"]),
            )
            for err in exc.errors()[:20]
        ]
        raise Unprocessable(issues=issues) from None
    except (KeyError, TypeError, ValueError, RecursionError) as exc:  # the model's own limits
        raise Unprocessable(f"The {resource_type} could not be validated: "
                            f"{type(exc).__name__} {exc}"[:500]) from None
    _check_nhs_numbers(resource)
    _check_text(resource, resource_type)
    return resource


# ---- what the models say about their fields (read once per model, for fhir/strict.py) -----

REQUIRED_CODES = Path(__file__).parent / "data" / "required-codes.json"
_INTEGERS = {"Integer", "PositiveInt", "UnsignedInt", "Integer64"}


def _unwrap(annotation: Any) -> tuple[bool, Any]:
    """(is a list, the element type) of a field's annotation; (False, None) if it is neither
    one type nor a list of one (fhir_comments)."""
    many = False
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return False, None
            annotation = args[0]
        elif origin is list:
            many, annotation = True, typing.get_args(annotation)[0]
        else:
            return many, annotation


def _model_of(kind: Any) -> Any:
    """The model class an `abc.XType` of fhir.resources stands for (None: not one)."""
    path = getattr(kind, "_model_klass", None)
    if not isinstance(path, str):
        return None
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def field_model(model: Any, name: str) -> Any:
    """The model of the complex field `name` (python name or JSON name) of `model`, or None."""
    for key, info in model.model_fields.items():
        if name in (key, info.alias):
            return _model_of(_unwrap(info.annotation)[1])
    return None


@cache
def _required_codes() -> dict[str, frozenset[str]]:
    data = json.loads(REQUIRED_CODES.read_text(encoding="utf-8"))
    return {key: frozenset(entry["codes"]) for key, entry in data.items()}


@cache
def _fields(model: Any) -> dict[str, strict.Field]:
    out = {}
    required = _required_codes()
    for name, info in model.model_fields.items():
        many, kind = _unwrap(info.annotation)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        # The codes come from the official definitions (fhir/data/required-codes.json), not
        # the models' `enum_values`, which are partial ("+") or wrong (CapabilityStatement.
        # format lists "formats, json, ttl, mime" for a binding to all MIME types).
        codes = required.get(f"{model.__name__}.{name}")
        targets = tuple(extra.get("enum_reference_types") or ())
        if kind is None:
            continue
        target = _model_of(kind)
        if target is not None:
            resource = target.__name__ == "Resource"
            out[info.alias or name] = strict.Field(
                many, "resource" if resource else "complex", None if resource else target,
                None, targets)
            continue
        base, meta = kind, None
        if typing.get_origin(kind) is typing.Annotated:
            base, meta, *_ = typing.get_args(kind)
        meta_name = type(meta).__name__ if meta is not None else ""
        if base is bool:
            primitive = "boolean"
        elif meta_name in _INTEGERS or base is int:
            primitive = "integer"
        elif meta_name == "Decimal" or base is decimal.Decimal:
            primitive = "decimal"
        elif meta_name == "Xhtml":
            primitive = "xhtml"
        else:
            primitive = "string"
        out[info.alias or name] = strict.Field(many, primitive, None, codes, targets)
    return out


@cache
def _schema() -> strict.Schema:
    return strict.Schema(fields=_fields, resource=_known_model,
                         reference=_model("Reference"))


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _check_text(value: Any, path: str) -> None:
    """No control characters but tab, CR and LF in any string (datatypes.html#string);
    PostgreSQL could not store a NUL either."""
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise Unprocessable(f"{path}: control characters (other than tab, CR and LF) are "
                                "not allowed in FHIR strings.", expression=path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_text(item, f"{path}[{i}]")


def _check_nhs_numbers(resource: dict[str, Any]) -> None:
    for i, ident in enumerate(resource.get("identifier") or ()):
        if isinstance(ident, dict) and ident.get("system") == NHS_NUMBER_SYSTEM:
            value = str(ident.get("value", "")).replace(" ", "")
            if not nhs_number_valid(value):
                where = f"{resource['resourceType']}.identifier[{i}].value"
                raise Unprocessable(
                    f"{where}: '{ident.get('value')}' is not a valid NHS number "
                    "(10 digits with a Modulus 11 check digit).",
                    expression=where,
                )
