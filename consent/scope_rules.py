"""A token's SMART scopes compiled once per request: the per-resource decision and the SQL
filter, from the same rules.

https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html. A resource is within
a token's scopes for an interaction letter (`r` to read it, `s` to find it by a search) when
some resource scope of the token
1. has the letter and names the resource's type (or `*`),
2. if its context is `patient`, the resource belongs to the patient in the launch context,
   or to no patient and is of a type that is never in a patient's record, and
3. the resource matches every search condition of the scope
   (`user/Observation.rs?category=laboratory`: a search for `category=laboratory` finds it).

`sql(row, type_, letter)` states 1-3 as a condition on a row (an alias of the resource
table), built with the search's own predicate builders (`fhir.search.params`), so a
condition means exactly what the same search means. `decide(type_, letter, patient_id)`
answers 1-2 for one resource without the database, and says when only 3 can settle it
(`MATCH`): the caller then asks the database whether the row meets `sql` (`consent/door.py`),
so the decision and the filter cannot disagree.

Letters: what a search matches (its matches, what it counts, the rows its chains and `_has`
pass through) needs `s`; what is returned beside the matches or read on its own (an id read,
`_include`/`_revinclude`, `$everything`, history) needs `r`, since each is as good as a read
of it by id.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from consent.scopes import ResourceScope, Scopes
from fhir.errors import FhirError
from fhir.registry import registry


class Verdict(enum.Enum):
    NO = "no"  # no scope lets it through
    YES = "yes"  # a scope without conditions lets it through
    MATCH = "match"  # only scopes with search conditions could: the row must match them


@dataclass(frozen=True, slots=True)
class ScopeRules:
    """The resource scopes of one token and the patient of its launch context."""

    scopes: tuple[ResourceScope, ...]
    launch_patient: str | None = None

    @classmethod
    def of(cls, scopes: Scopes, launch_patient: str | None) -> ScopeRules:
        return cls(scopes.resources, launch_patient)

    def _for(self, type_: str | None, letter: str) -> list[ResourceScope]:
        return [s for s in self.scopes if letter in s.interactions
                and (type_ is None or s.resource_type in ("*", type_))
                and (s.context != "patient" or self.launch_patient is not None)]

    def speaks_for(self, type_: str, letter: str) -> bool:
        """Some scope has `letter` on `type_`, whatever its conditions or launch patient: the
        type-level check made before any lookup (a 403 then reveals nothing of the data)."""
        return any(letter in s.interactions and s.resource_type in ("*", type_)
                   for s in self.scopes)

    def conditioned(self, type_: str, letter: str) -> bool:
        """Whether any scope for `type_` with `letter` carries search conditions."""
        return any(s.conditions for s in self._for(type_, letter))

    def decide(self, type_: str, letter: str, patient_id: str | None) -> Verdict:
        """Rules 1-2 for one resource of `type_` belonging to `patient_id`; MATCH: rule 3
        decides, on the row (`sql`)."""
        verdict = Verdict.NO
        for s in self._for(type_, letter):
            if s.context == "patient" and patient_id != self.launch_patient and (
                    patient_id is not None or type_ in registry().compartment):
                continue
            if not s.conditions:
                return Verdict.YES
            verdict = Verdict.MATCH
        return verdict

    def sql(self, row: Any, type_: str | None, letter: str) -> Any | None:
        """SQL: `row` (of type `type_`, None: of any type) is within the scopes for `letter`;
        None when every such row is (no condition to add)."""
        applicable = self._for(type_, letter)
        if not applicable:
            return sa.false()
        plain_types: set[str] = set()
        ors: list[Any] = []
        for s in applicable:
            if s.context != "patient" and not s.conditions:
                if s.resource_type == "*" or type_ is not None:
                    return None  # this scope alone lets every such row through
                plain_types.add(s.resource_type)
                continue
            parts: list[Any] = []
            if s.resource_type != "*" and type_ is None:
                parts.append(row.c.type == s.resource_type)
            if s.context == "patient":
                parts.append(sa.or_(row.c.patient_id == self.launch_patient,
                                    sa.and_(row.c.patient_id.is_(None),
                                            _directory(row, type_))))
            if s.conditions:
                parts.append(_matches(s, row, type_))
            ors.append(sa.and_(*parts) if parts else sa.true())
        if plain_types:
            ors.append(row.c.type.in_(sorted(plain_types)))
        return sa.or_(*ors) if len(ors) > 1 else ors[0]


def _directory(row: Any, type_: str | None) -> Any:
    """SQL: the row is of a type that is never part of a patient's record (what `patient/`
    scopes read beside the patient's own: their practice, their medicines' definitions)."""
    if type_ is not None:
        return sa.false() if type_ in registry().compartment else sa.true()
    return row.c.type.not_in(sorted(registry().compartment))


def _matches(scope: ResourceScope, row: Any, type_: str | None) -> Any:
    """SQL: `row` meets every search condition of `scope`, as the same search would find it.
    A condition the search cannot state (an unknown parameter) matches nothing."""
    from fhir.search.params import filter_condition  # search builds on consent's callers

    target = type_ if scope.resource_type == "*" else scope.resource_type
    if target is None:  # `*` with conditions over rows of any type: common parameters only
        target = "Resource"
    try:
        return sa.and_(*(filter_condition(target, row, name, value, depth=0)
                         for name, value in scope.conditions))
    except FhirError:
        return sa.false()
