"""Resource validation on write: the R4B models of `fhir.resources`, and UK Core rules.

The only module that imports `fhir.resources` (DESIGN.md). Reads never come here: the stored
JSON was valid when written.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from pydantic import ValidationError

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


def _location(resource_type: str, loc: tuple[Any, ...]) -> str:
    path = resource_type
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def check_resource(resource: Any, *, expected_type: str | None = None) -> dict[str, Any]:
    """Validate a parsed resource; raise `BadRequest`/`Unprocessable` saying what and where."""
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
    _check_nhs_numbers(resource)
    _check_text(resource, resource_type)
    return resource


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
