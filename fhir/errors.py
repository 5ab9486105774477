"""One error hierarchy for the record; `api/` renders every one as an OperationOutcome.

    FhirError (status, issues)
    ├── BadRequest            400  malformed JSON, search or bundle
    ├── NotAuthorized         401 / Forbidden 403 (access control)
    ├── NotFound              404  unknown type, id or version
    ├── MethodNotAllowed      405
    ├── NotAcceptable         406  an XML or other non-JSON answer asked for
    ├── Conflict              409  a version or id conflict
    ├── Gone                  410  the resource was deleted
    ├── PreconditionFailed    412  If-Match stale, conditional matches several
    ├── PayloadTooLarge       413
    ├── UnsupportedMediaType  415
    └── Unprocessable         422  a resource that fails validation

https://hl7.org/fhir/R4/operationoutcome.html
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: severity, code, a sentence a person can act on, where."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = [self.expression]
        return out


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """An OperationOutcome resource holding `issues`."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


class FhirError(Exception):
    """A failure that reaches the client as an OperationOutcome with `status`."""

    status = 500
    code = "exception"

    def __init__(self, message: str | None = None, *, issues: list[Issue] | None = None,
                 expression: str | None = None) -> None:
        if issues is None:
            issues = [Issue(self.code, message or self.__class__.__name__, expression=expression)]
        self.issues = issues
        super().__init__(message or "; ".join(i.diagnostics for i in issues))

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    status, code = 400, "invalid"


class NotAuthorized(FhirError):
    status, code = 401, "login"


class Forbidden(FhirError):
    status, code = 403, "forbidden"


class NotFound(FhirError):
    status, code = 404, "not-found"


class MethodNotAllowed(FhirError):
    status, code = 405, "not-supported"


class NotAcceptable(FhirError):
    status, code = 406, "not-supported"


class Conflict(FhirError):
    status, code = 409, "conflict"


class Gone(FhirError):
    status, code = 410, "deleted"


class PreconditionFailed(FhirError):
    status, code = 412, "conflict"


class PayloadTooLarge(FhirError):
    status, code = 413, "too-costly"


class UnsupportedMediaType(FhirError):
    status, code = 415, "not-supported"


class Unprocessable(FhirError):
    status, code = 422, "processing"
