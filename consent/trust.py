"""Trust in external OpenID Connect providers, as configured (`Settings.trusted_issuers`).

Patients may sign in with an NHS-login-like provider whose tokens carry their NHS number;
staff with their organisation's provider, whose tokens carry a staff identifier. Verifying
such tokens and finding the person they name is `consent.tokens`' work.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, model_validator

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
EXTERNAL_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "ES256", "ES384"]


class TrustedIssuer(BaseModel):
    """An external OpenID Connect provider whose tokens are accepted (configuration).

    `claim` names the token claim holding the identifier (e.g. `nhs_number`), `system` the
    identifier system it is searched under, and `kind` whether it signs in patients or staff.
    The keys are `jwks` (inline) or `jwks_url` (fetched, cached).
    """

    issuer: str
    audience: str
    kind: Literal["patient", "practitioner"] = "patient"
    claim: str = "nhs_number"
    system: str = NHS_NUMBER
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    scope: str | None = None  # granted to its users; default patient/*.rs or user/*.rs
    algorithms: list[str] = list(EXTERNAL_ALGORITHMS)

    @model_validator(mode="after")
    def _keys(self) -> TrustedIssuer:
        if (self.jwks is None) == (self.jwks_url is None):
            raise ValueError(f"trusted issuer {self.issuer}: give exactly one of jwks, jwks_url")
        return self

    def granted_scope(self) -> str:
        if self.scope is not None:
            return self.scope
        return "patient/*.rs" if self.kind == "patient" else "user/*.rs"
