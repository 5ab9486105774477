"""Search: parse FHIR search parameters, build one parameterised query, page by keyset.

https://hl7.org/fhir/R4/search.html. Pages are keyed by the row id (insertion order), so
`next` links stay correct while other clients write: no OFFSET over a moving set.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir.errors import BadRequest
from fhir.predicates import BUILDERS, _no_modifier, date_condition
from fhir.registry import registry
from fhir.schema import resource

DEFAULT_COUNT = 20
MAX_COUNT = 1000
MAX_OR_VALUES = 100
# Parameters about the answer rather than the match; those not listed are refused.
RESULT_PARAMS = {"_count", "_cursor", "_format", "_pretty", "_total"}


@dataclass(slots=True)
class SearchQuery:
    """A parsed search: the conditions, the page asked for, and the canonical self link."""

    type: str
    conditions: list[Any] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    after: int | None = None
    total: str = "accurate"
    accepted: list[tuple[str, str]] = field(default_factory=list)

    def link(self, after: int | None = None) -> str:
        params = [(k, v) for k, v in self.accepted if k != "_cursor"]
        params.append(("_count", str(self.count)))
        if after is not None:
            params.append(("_cursor", encode_cursor(after)))
        query = "&".join(f"{quote(k, safe=':.-_')}={quote(v, safe=',|:/.-_')}" for k, v in params)
        return f"{self.type}?{query}"


def encode_cursor(rid: int) -> str:
    return base64.urlsafe_b64encode(f"r{rid}".encode()).decode().rstrip("=")


def decode_cursor(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        rid = int(text[1:]) if text.startswith("r") and text[1:].isascii() else -1
        if not 0 <= rid < 2**63:  # what a row id can be on both backends
            raise ValueError
        return rid
    except ValueError:
        raise BadRequest(f"_cursor '{token}' is not a page cursor this server issued.") from None


def split_values(text: str, *, keep_escapes: bool = False) -> list[str]:
    """Split on commas not escaped with a backslash, and unescape \\, \\| \\$ \\\\.

    `keep_escapes`: unescape only \\, and leave the rest to a token's own split on |.
    """
    out, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in ",|$\\":
            cur.append(text[i + 1] if text[i + 1] == "," or not keep_escapes else text[i:i + 2])
            i += 2
            continue
        if ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def parse(type_: str, params: list[tuple[str, str]], *, lenient: bool = False) -> SearchQuery:
    """Turn (name, value) pairs into a SearchQuery; unknown names are a 400 unless lenient."""
    reg = registry()
    query = SearchQuery(type=type_)
    known = reg.for_type(type_)
    for raw_name, raw_value in params:
        name, _, modifier = raw_name.partition(":")
        mod = modifier or None
        if name in RESULT_PARAMS:
            _result_param(query, name, raw_value)
            if name not in ("_format", "_pretty", "_cursor", "_count"):
                query.accepted.append((raw_name, raw_value))
            continue
        if name != "_id" and name != "_lastUpdated" and name not in known:
            if lenient:
                continue
            hint = "" if name.startswith("_") else f" Parameters of {type_} include: " + \
                ", ".join(sorted(k for k in known if not k.startswith("_"))[:15]) + "."
            raise BadRequest(f"Unknown or unsupported search parameter '{name}' for {type_}.{hint}")
        sp = known.get(name)
        values = split_values(raw_value, keep_escapes=sp is not None and sp.type == "token"
                              and mod != "text")
        if len(values) > MAX_OR_VALUES:
            raise BadRequest(f"Parameter '{name}' has {len(values)} values; at most "
                             f"{MAX_OR_VALUES} may be combined with commas.")
        if any(v == "" for v in values):
            raise BadRequest(f"Parameter '{name}' has an empty value.")
        if "\x00" in raw_value:  # PostgreSQL refuses NUL in text
            raise BadRequest(f"Parameter '{name}' holds a NUL character.")
        query.conditions.append(_condition(type_, name, mod, values))
        query.accepted.append((raw_name, raw_value))
    return query


def _result_param(query: SearchQuery, name: str, value: str) -> None:
    if name == "_count":
        if not (value.isascii() and value.isdigit()):
            raise BadRequest(f"_count must be a whole number from 0 to {MAX_COUNT}, not '{value}'.")
        query.count = min(int(value), MAX_COUNT)
    elif name == "_cursor":
        query.after = decode_cursor(value)
    elif name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise BadRequest("_total must be none, estimate or accurate.")
        query.total = value


def _condition(type_: str, name: str, modifier: str | None, values: list[str]) -> Any:
    if name == "_id":
        _no_modifier(name, modifier, ())
        return resource.c.id.in_(values)
    if name == "_lastUpdated":
        _no_modifier(name, modifier, ())
        lu = resource.c.last_updated
        return sa.or_(*(date_condition(lu, lu + 0.001, v, name) for v in values))
    sp = registry().get(type_, name)
    assert sp is not None
    return BUILDERS[sp.type](name, modifier, values, sp.targets)


def where(query: SearchQuery) -> list[Any]:
    return [resource.c.type == query.type, resource.c.deleted.is_(False), *query.conditions]


async def run(conn: AsyncConnection, query: SearchQuery) -> tuple[list[tuple[int, str, str]],
                                                                  int | None, int | None]:
    """One page: [(rid, id, content)], the total (None if not asked) and the next cursor."""
    total = None
    if query.total == "accurate" or query.count == 0:
        total = (await conn.execute(
            sa.select(sa.func.count()).select_from(resource).where(*where(query))
        )).scalar_one()
    if query.count == 0:
        return [], total, None
    stmt = (sa.select(resource.c.rid, resource.c.id, resource.c.content)
            .where(*where(query)).order_by(resource.c.rid).limit(query.count + 1))
    if query.after is not None:
        stmt = stmt.where(resource.c.rid > query.after)
    rows = [tuple(r) for r in (await conn.execute(stmt)).all()]
    after = None
    if len(rows) > query.count:
        rows = rows[: query.count]
        after = rows[-1][0]
    return rows, total, after


async def match_ids(conn: AsyncConnection, type_: str, params: list[tuple[str, str]],
                    limit: int = 2) -> list[str]:
    """Ids of up to `limit` current resources matching a conditional query (strict parsing)."""
    if not params:
        raise BadRequest("A conditional request needs at least one search parameter.")
    query = parse(type_, params)
    stmt = sa.select(resource.c.id).where(*where(query)).order_by(resource.c.rid).limit(limit)
    return list((await conn.execute(stmt)).scalars())


def canonical_query(params: list[tuple[str, str]]) -> str:
    """A stable text form of a conditional query, for the conditional-create key."""
    return "&".join(f"{k}={v}" for k, v in sorted(params))[:1024]
