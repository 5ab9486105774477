"""Rules of one resource type on every write, plugged in from above `fhir/`.

Some resource types carry domain rules that no FHIR validator knows: an anticipatory care
plan needs a coordinator and a review date before it is active, goes through a lifecycle,
and is one active per patient (careplans/plans/). `fhir/` must not import those packages
(DESIGN.md: the record knows nothing of care planning), so they register a `WriteRule` for
their type here when the application starts (api/app.py), and the store applies it to every
write of that type, whatever the route (create, update, patch, conditional, a Bundle entry):
- `prepare(body)`: before the body is stamped and stored, after access control stamped
  meta.source (pure: e.g. regenerate the narrative; may refuse from the body alone);
- `check(...)`: after the access decision (so a refusal reveals nothing the caller may not
  see), in the write's transaction, with the version being replaced.
Nothing registered: nothing happens (the storage tests, another application).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from fhir.store import Stored


class WriteRule(Protocol):
    def prepare(self, body: dict[str, Any]) -> None:
        """Complete or refuse `body` before it is stored (raise a FhirError to refuse)."""

    async def check(self, conn: Any, interaction: str, body: dict[str, Any] | None,
                    patient_id: str | None, current: Stored | None) -> None:
        """Refuse (raise a FhirError) a write the type's rules do not allow."""


_rules: dict[str, WriteRule] = {}


def register(resource_type: str, rule: WriteRule) -> None:
    _rules[resource_type] = rule


def unregister(resource_type: str) -> None:
    _rules.pop(resource_type, None)


def prepare(body: dict[str, Any]) -> None:
    rule = _rules.get(body.get("resourceType", ""))
    if rule is not None:
        rule.prepare(body)


async def check(conn: Any, interaction: str, resource_type: str, body: dict[str, Any] | None,
                patient_id: str | None, current: Stored | None) -> None:
    rule = _rules.get(resource_type)
    if rule is not None:
        await rule.check(conn, interaction, body, patient_id, current)
