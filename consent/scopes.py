"""SMART on FHIR scopes: parsing (v2 and v1) and the pure decision `allows`.

https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html

A resource scope is `<context>/<type or *>.<permissions>[?<search parameters>]`:

- context `patient` (the data of the patient in context), `user` (what the user may see),
  `system` (backend services);
- v2 permissions are letters of `cruds` in that order (`rs`, `cud`, `cruds`); v1 `read`,
  `write` and `*` mean `rs`, `cud` and `cruds` (the v2 specification's own mapping);
- a v2 scope may narrow itself with search parameters, e.g.
  `patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory`:
  it then grants only what such a search would find.

Everything else (`launch`, `launch/patient`, `openid`, `fhirUser`, `offline_access`, ...) is
kept as a plain name. Nothing here touches HTTP or the database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

Context = Literal["patient", "user", "system"]
CONTEXTS: tuple[Context, ...] = ("patient", "user", "system")
INTERACTIONS = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}

# Context-free scopes this server understands (launch context, identity, refresh tokens).
LAUNCH_SCOPES = ("launch", "launch/patient", "launch/encounter")
IDENTITY_SCOPES = ("openid", "fhirUser")
OFFLINE_SCOPES = ("offline_access",)
# Understood but never granted here (an app asking for them still gets the rest).
UNGRANTED_SCOPES = ("online_access", "profile", "email")

_RESOURCE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})"
    r"\.(?P<perm>[a-z*]+)(?:\?(?P<query>.+))?$"
)
_V2 = re.compile(r"^c?r?u?d?s?$")


@dataclass(frozen=True, slots=True)
class ResourceScope:
    """One `context/Type.permissions[?query]` scope, normalised to v2 letters."""

    text: str
    context: Context
    resource_type: str  # a FHIR type or "*"
    interactions: frozenset[str]
    conditions: tuple[tuple[str, str], ...] = ()
    v1: bool = False

    def covers(self, context: str, resource_type: str, interaction: str) -> bool:
        """Whether this scope speaks for the interaction, ignoring its search conditions."""
        return (self.context == context and interaction in self.interactions
                and self.resource_type in ("*", resource_type))


@dataclass(frozen=True, slots=True)
class Scopes:
    """A parsed scope string: resource scopes, other known names, and what did not parse."""

    resources: tuple[ResourceScope, ...]
    names: frozenset[str]
    invalid: tuple[str, ...]
    order: tuple[str, ...] = ()  # the valid scopes as written, in order

    def __contains__(self, name: str) -> bool:
        return name in self.names or any(s.text == name for s in self.resources)

    def texts(self) -> list[str]:
        """Every valid scope as it was written, in order, once each."""
        held = {*self.names, *(s.text for s in self.resources)}
        ordered = [t for t in self.order if t in held]
        return ordered + sorted(held - set(ordered))

    def contexts(self) -> set[str]:
        return {s.context for s in self.resources}


def parse_resource_scope(text: str) -> ResourceScope | None:
    """`text` as a resource scope, or None if it is not one (or is malformed)."""
    match = _RESOURCE.match(text)
    if match is None:
        return None
    perm, query = match["perm"], match["query"]
    v1 = perm in V1_PERMISSIONS
    if v1:
        if query:  # search-parameter narrowing is a v2 feature
            return None
        letters = V1_PERMISSIONS[perm]
    elif perm and _V2.match(perm):
        letters = perm
    else:
        return None
    conditions: list[tuple[str, str]] = []
    if query:
        for part in query.split("&"):
            name, eq, value = part.partition("=")
            if not eq or not name or not value:
                return None
            conditions.append((unquote(name), unquote(value)))
    return ResourceScope(text, match["context"], match["type"],  # type: ignore[arg-type]
                         frozenset(letters), tuple(conditions), v1)


def parse(scope: str | Iterable[str] | Scopes | None) -> Scopes:
    """A scope string (space separated) or list of scopes, parsed."""
    if isinstance(scope, Scopes):
        return scope
    items = scope.split() if isinstance(scope, str) else list(scope or ())
    resources: list[ResourceScope] = []
    names: set[str] = set()
    invalid: list[str] = []
    seen: set[str] = set()
    seen_order: list[str] = []
    for item in items:
        if item in seen:
            continue
        seen.add(item)
        seen_order.append(item)
        parsed = parse_resource_scope(item)
        if parsed is not None:
            resources.append(parsed)
        elif item in (*LAUNCH_SCOPES, *IDENTITY_SCOPES, *OFFLINE_SCOPES, *UNGRANTED_SCOPES):
            names.add(item)
        else:
            invalid.append(item)
    order = tuple(t for t in seen_order if t not in invalid)
    return Scopes(tuple(resources), frozenset(names), tuple(invalid), order)


Params = Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]]


def allows(scopes: str | Iterable[str] | Scopes, context: str, resource_type: str,
           interaction: str, params: Params | None = None) -> bool:
    """Whether `scopes` grant `interaction` (one of c r u d s) on `resource_type` in `context`.

    A scope narrowed by search parameters grants the interaction only when `params` (the
    request's search parameters, `name -> value` with FHIR's comma for "or") confine it to
    what the scope allows: every condition of the scope is met by a parameter of the same
    name all of whose alternatives lie within the scope's value. Checking a single resource
    against such a scope is a search match, done where the data is (see `filters`).
    """
    if interaction not in INTERACTIONS or context not in CONTEXTS:
        return False
    pairs = _pairs(params)
    for scope in parse(scopes).resources:
        if scope.covers(context, resource_type, interaction) and all(
                _condition_met(name, value, pairs) for name, value in scope.conditions):
            return True
    return False


def filters(scopes: str | Iterable[str] | Scopes, context: str, resource_type: str,
            interaction: str) -> list[tuple[tuple[str, str], ...]] | None:
    """What the scopes let through for one interaction, for the enforcement layer.

    None: everything (a scope without conditions covers it). Otherwise a list of search
    parameter sets, any one of which a resource must match (an empty list: nothing).
    """
    out: list[tuple[tuple[str, str], ...]] = []
    for scope in parse(scopes).resources:
        if scope.covers(context, resource_type, interaction):
            if not scope.conditions:
                return None
            out.append(scope.conditions)
    return out


def _pairs(params: Params | None) -> list[tuple[str, str]]:
    if params is None:
        return []
    if isinstance(params, Mapping):
        out: list[tuple[str, str]] = []
        for name, value in params.items():
            if isinstance(value, str):
                out.append((name, value))
            elif value:
                out.append((name, ",".join(value)))
        return out
    return list(params)


def _condition_met(name: str, scope_value: str, pairs: list[tuple[str, str]]) -> bool:
    for param, value in pairs:
        if param == name:
            alternatives = _split_or(value)
            if alternatives and all(_within(v, scope_value) for v in alternatives):
                return True
    return False


def _split_or(value: str) -> list[str]:
    """A search value's comma-separated alternatives (`\\,` is a literal comma)."""
    parts = re.split(r"(?<!\\),", value)
    return [p.replace("\\,", ",") for p in parts if p]


def _within(value: str, scope_value: str) -> bool:
    """Whether a token search for `value` finds only what `scope_value` finds.

    `system|code` lies within `code` (any system) but not the other way round.
    """
    if value == scope_value:
        return True
    return "|" not in scope_value and "|" in value and value.rsplit("|", 1)[1] == scope_value
