"""Parsing a search: names, modifiers, chains, reverse chains and result parameters.

https://hl7.org/fhir/R4/search.html. Every filter becomes one parameterised SQL condition on
the searched row; chains (`subject:Patient.name=x`) and reverse chains (`_has:...`) nest
EXISTS sub-queries through the reference index, to a bounded depth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.sql import visitors as sa_visitors

from fhir import guard
from fhir.errors import BadRequest
from fhir.registry import SearchParam, registry
from fhir.schema import INDEX_TABLES, resource
from fhir.search import near, paging
from fhir.search.aliases import alias, numbering
from fhir.search.predicates import BUILDERS, date_condition, exists, no_modifier
from fhir.search.values import split_values
from fhir.visibility import Visibility, conditions

DEFAULT_COUNT = 20
MAX_COUNT = 1000
MAX_OR_VALUES = 100
MAX_CHAIN_DEPTH = 4
MAX_PARAMS = 50
MAX_VALUE_LENGTH = 4096  # one value; the index keeps at most 1024 characters of any value
# Bound values in one search's SQL: PostgreSQL takes at most 32767, and a search this large is
# a denial of service rather than a question (50 parameters of 100 values each already is 5000).
MAX_TERMS = 12000
# Parameter types whose SQL condition depends on the parameter's code and kind only.
_SHAREABLE = ("token", "string", "date", "reference", "number", "quantity", "uri")
SUMMARY_VALUES = ("true", "false", "text", "data", "count")
# Parameters about the answer rather than the match.
RESULT_PARAMS = {"_count", "_cursor", "_format", "_pretty", "_total", "_sort", "_include",
                 "_revinclude", "_summary", "_elements", "_contained", "_containedType"}


@dataclass(frozen=True, slots=True)
class Include:
    """`_include` / `_revinclude` = source-type:param[:target-type], maybe :iterate."""

    source: str
    param: str
    target: str | None
    iterate: bool


@dataclass(slots=True)
class SearchQuery:
    """A parsed search: conditions, sort, page, includes and the canonical self link."""

    type: str
    conditions: list[Any] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    cursor: paging.Cursor | None = None
    backward: bool = False  # the cursor ends the page (a `previous` link) instead of starting it
    total: str | None = None
    sort: list[paging.SortKey] = field(default_factory=list)
    include: list[Include] = field(default_factory=list)
    revinclude: list[Include] = field(default_factory=list)
    summary: str | None = None
    elements: list[str] | None = None
    accepted: list[tuple[str, str]] = field(default_factory=list)
    path: str | None = None  # e.g. Patient/123/Observation for a compartment search
    # The caller's filter: applied to the matches, their count and includes (execute.py),
    # and already inside `conditions` for chain targets and _has rows. Never in `link`.
    visible: Visibility | None = None

    def link(self, cursor: paging.Cursor | None = None, backward: bool = False) -> str:
        params = list(self.accepted)
        params.append(("_count", str(self.count)))
        if cursor is not None:
            params.append(("_cursor", paging.encode(cursor, backward)))
        query = "&".join(f"{quote(k, safe=':.-_')}={quote(v, safe=',|:/.-_')}" for k, v in params)
        return f"{self.path or self.type}?{query}"


def parse(type_: str, params: list[tuple[str, str]], *, lenient: bool = False,
          visible: Visibility | None = None) -> SearchQuery:
    """Turn (name, value) pairs into a SearchQuery; unknown names are a 400 unless lenient.
    `visible`: the rows the caller may see; chains and _has look only through those, and
    the query carries it to `execute` for the matches and includes (None: the request's
    guard's, fhir/guard.py, so conditional matching and the searches of a Bundle are filtered
    too; without a guard, every row)."""
    if visible is None:
        visible = guard.visibility()
    with numbering():
        return _parse(type_, params, lenient, visible)


def _parse(type_: str, params: list[tuple[str, str]], lenient: bool,
           visible: Visibility | None) -> SearchQuery:
    if len(params) > MAX_PARAMS:
        raise BadRequest(f"A search may have at most {MAX_PARAMS} parameters.")
    query = SearchQuery(type=type_, visible=visible)
    terms = 0
    for raw_name, raw_value in params:
        if "\x00" in raw_value or "\x00" in raw_name:  # PostgreSQL refuses NUL in text
            raise BadRequest(f"Parameter '{raw_name}' holds a NUL character.")
        name = raw_name.partition(":")[0]
        if name in RESULT_PARAMS:
            if _result_param(query, raw_name, raw_value, lenient):
                query.accepted.append((raw_name, raw_value))
            continue
        try:
            condition = filter_condition(type_, resource, raw_name, raw_value, depth=0,
                                         visible=visible)
        except UnknownParameter:
            if lenient:
                continue
            raise
        terms += _bound_values(condition)
        if terms > MAX_TERMS:
            raise BadRequest(f"The search is too large at parameter '{raw_name}': over "
                             f"{MAX_TERMS} comparisons once its values and chains are expanded; "
                             "use fewer values, or name the target type in chains "
                             "(name:[type].x).")
        query.conditions.append(condition)
        query.accepted.append((raw_name, raw_value))
    near_sort(query)
    return query


def near_sort(query: SearchQuery) -> None:
    """Give `_sort=near` its point, the search's own `near` (the first value); a search with
    `near` and no `_sort` is ordered by distance (fhir/search/near.py says why)."""
    points = [v for k, v in query.accepted if k == "near" and query.type == "Location"]
    if points and not query.sort:
        query.sort = [paging.SortKey("near", "near", False)]
    if points and any(k.type == "near" for k in query.sort):
        point = near.parse("near", points[0].split(",")[0])
        query.sort = [dataclasses.replace(k, point=point) if k.type == "near" else k
                      for k in query.sort]


def _bound_values(condition: Any) -> int:
    """How many values `condition` binds once its IN lists (a caller's visibility filter may
    list thousands of patients, inside every chain) are expanded."""
    return sum(len(e.value) if e.expanding and isinstance(e.value, (list, tuple)) else 1
               for e in sa_visitors.iterate(condition) if isinstance(e, sa.BindParameter))


class UnknownParameter(BadRequest):
    """A parameter name the type does not have."""


def _unknown(type_: str, name: str) -> UnknownParameter:
    known = registry().for_type(type_)
    hint = "" if name.startswith("_") else f" Parameters of {type_} include: " + ", ".join(
        sorted(k for k in known if not k.startswith("_"))[:15]) + "."
    return UnknownParameter(f"Unknown or unsupported search parameter '{name}' for {type_}.{hint}")


def filter_condition(type_: str, row: Any, raw_name: str, raw_value: str, *, depth: int,
                     visible: Visibility | None = None) -> Any:
    """The SQL condition for one `name[:modifier][.chain]=value` on the row `row` of `type_`;
    chains and _has pass only through rows `visible` lets the caller see."""
    if depth > MAX_CHAIN_DEPTH:
        raise BadRequest(f"Chains and _has may nest at most {MAX_CHAIN_DEPTH} levels deep.")
    if raw_name.startswith("_has:"):
        return _reverse_chain(type_, row, raw_name, raw_value, depth, visible)
    head, dot, rest = raw_name.partition(".")
    name, _, modifier = head.partition(":")
    mod = modifier or None
    if dot:
        return _chain(type_, row, name, mod, rest, raw_value, depth, visible)
    if name == "_id":
        no_modifier(name, mod, ("missing",)) if mod else None
        return row.c.id.in_(_values(name, raw_value, False))
    if name == "_lastUpdated":
        no_modifier(name, mod, ())
        lu = row.c.last_updated
        return sa.or_(*(date_condition(lu, lu + 0.001, v, name)
                        for v in _values(name, raw_value, False)))
    sp = registry().get(type_, name)
    if sp is None:
        raise _unknown(type_, name)
    if mod == "missing":
        if raw_value not in ("true", "false"):
            raise BadRequest(f"'{name}:missing' takes true or false, not '{raw_value}'.")
        present = exists(row.c.rid, sp.type, sp.key)
        return sa.not_(present) if raw_value == "true" else present
    escapes = sp.type in ("token", "reference", "quantity", "composite") and mod != "text"
    values = _values(name, raw_value, keep_escapes=escapes)
    return BUILDERS[sp.type](row.c.rid, sp, mod, values)


def _values(name: str, raw_value: str, keep_escapes: bool) -> list[str]:
    values = split_values(raw_value, keep_escapes=keep_escapes)
    if len(values) > MAX_OR_VALUES:
        raise BadRequest(f"Parameter '{name}' has {len(values)} values; at most "
                         f"{MAX_OR_VALUES} may be combined with commas.")
    if any(v == "" for v in values):
        raise BadRequest(f"Parameter '{name}' has an empty value.")
    if any(len(v) > MAX_VALUE_LENGTH for v in values):  # SQLite refuses LIKE patterns of 50 kB
        raise BadRequest(f"Parameter '{name}' has a value longer than {MAX_VALUE_LENGTH} "
                         "characters; nothing indexed is that long.")
    return values


def _reference_param(type_: str, name: str) -> SearchParam:
    sp = registry().get(type_, name)
    if sp is None:
        raise _unknown(type_, name)
    if sp.type != "reference":
        raise BadRequest(f"'{name}' of {type_} is a {sp.type} parameter; only reference "
                         "parameters can be chained.")
    return sp


def _chain(type_: str, row: Any, name: str, modifier: str | None, rest: str, value: str,
           depth: int, visible: Visibility | None) -> Any:
    """`name[:Type].rest=value`: some resource `name` points at matches `rest=value`."""
    sp = _reference_param(type_, name)
    targets = [modifier] if modifier else list(sp.targets)
    if modifier and modifier not in sp.targets:
        raise BadRequest(f"'{name}' of {type_} cannot point at {modifier}.")
    next_name = rest.split(".")[0].split(":")[0]
    usable = [t for t in targets if next_name in ("_id", "_lastUpdated")
              or registry().get(t, next_name) is not None or rest.startswith("_has:")]
    if not usable:
        raise BadRequest(f"None of the types '{name}' points at ({', '.join(targets)}) has a "
                         f"search parameter '{next_name}'; name the type: {name}:[type].{rest}.")
    # The index is keyed by parameter code, not type: target types whose `next_name` is the same
    # kind of parameter share one condition (`focus.name` is one test, not one per each of the
    # 38 types with a name), so a chain's SQL does not grow with its number of target types.
    groups: dict[Any, list[str]] = {}
    for t in usable:
        sp_t = registry().get(t, next_name)
        if rest.startswith("_has:") or (sp_t is not None and sp_t.type not in _SHAREABLE):
            key: Any = t
        else:
            key = (sp_t.type, sp_t.targets) if sp_t is not None else "table"
        groups.setdefault(key, []).append(t)
    ref = alias(INDEX_TABLES["reference"])
    target = alias(resource)
    per_type = [sa.and_(target.c.type.in_(ts) if len(ts) > 1 else target.c.type == ts[0],
                        filter_condition(ts[0], target, rest, value, depth=depth + 1,
                                         visible=visible))
                for ts in groups.values()]
    return sa.exists().where(
        ref.c.rid == row.c.rid, ref.c.param == sp.key,
        target.c.type == ref.c.target_type, target.c.id == ref.c.target_id,
        target.c.deleted.is_(False), sa.or_(*per_type),
        *conditions(visible, target, usable[0] if len(usable) == 1 else None),
    )


def _reverse_chain(type_: str, row: Any, raw_name: str, value: str, depth: int,
                   visible: Visibility | None) -> Any:
    """`_has:Type:param:rest=value`: some Type whose `param` points here matches `rest=value`."""
    parts = raw_name.split(":", 3)
    if len(parts) != 4 or not all(parts[1:]):
        raise BadRequest(f"'{raw_name}' is not a reverse chain; the form is "
                         "_has:[type]:[reference parameter]:[parameter]=value.")
    _, source, param, rest = parts
    if source not in registry().resource_types:
        raise BadRequest(f"'{raw_name}': '{source}' is not a resource type.")
    sp = _reference_param(source, param)
    if sp.targets and type_ not in sp.targets:
        raise BadRequest(f"'{param}' of {source} never points at a {type_}.")
    ref = alias(INDEX_TABLES["reference"])
    other = alias(resource)
    return sa.exists().where(
        ref.c.param == sp.key, ref.c.target_type == type_, ref.c.target_id == row.c.id,
        other.c.rid == ref.c.rid, other.c.type == source, other.c.deleted.is_(False),
        *conditions(visible, other, source),
        filter_condition(source, other, rest, value, depth=depth + 1, visible=visible),
    )


def _result_param(query: SearchQuery, raw_name: str, value: str, lenient: bool) -> bool:
    """Apply one result parameter; True if it belongs in the self link."""
    name, _, modifier = raw_name.partition(":")
    if name in ("_format", "_pretty"):
        return False
    if name == "_count":
        if not (value.isascii() and value.isdigit()):
            raise BadRequest(f"_count must be a whole number from 0 to {MAX_COUNT}, not '{value}'.")
        query.count = min(int(value), MAX_COUNT)
        return False
    if name == "_cursor":
        query.cursor, query.backward = paging.decode_any(value)
        return False
    if name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise BadRequest("_total must be none, estimate or accurate.")
        query.total = value
    elif name == "_sort":
        query.sort = paging.sort_keys(query.type, value)
    elif name in ("_include", "_revinclude"):
        if modifier not in ("", "iterate", "recurse"):
            raise BadRequest(f"'{raw_name}': the only modifier here is :iterate.")
        include = _include(query.type, name, value, bool(modifier))
        (query.include if name == "_include" else query.revinclude).append(include)
    elif name == "_summary":
        if value not in SUMMARY_VALUES:
            raise BadRequest(f"_summary must be one of {', '.join(SUMMARY_VALUES)}.")
        query.summary = value
    elif name == "_elements":
        query.elements = [e.strip() for e in value.split(",") if e.strip()]
    elif not lenient:
        raise BadRequest(f"'{name}' is not supported by this server.")
    else:
        return False
    return True


def _include(type_: str, name: str, value: str, iterate: bool) -> Include:
    if value == "*":
        return Include(type_, "*", None, iterate)
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise BadRequest(f"{name}={value}: the form is [type]:[parameter] or "
                         "[type]:[parameter]:[target type].")
    source, param = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if source not in registry().resource_types:
        raise BadRequest(f"{name}={value}: '{source}' is not a resource type.")
    if target is not None and target not in registry().resource_types:
        raise BadRequest(f"{name}={value}: '{target}' is not a resource type.")
    if name == "_include" and source != type_ and not iterate:
        raise BadRequest(f"_include={value}: the source type must be {type_} "
                         "(or use _include:iterate).")
    return Include(source, _reference_param(source, param).key, target, iterate)
