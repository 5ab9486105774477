"""Sorting and keyset paging (https://hl7.org/fhir/R4/search.html#sort).

A page cursor holds the sort values and row id of the last row served, and the next page
starts strictly after it. Unlike OFFSET, this stays correct while other clients write: a row
inserted or deleted elsewhere never shifts what the next page holds. Missing values sort last.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from fhir.dates import MAX_TIME, MIN_TIME
from fhir.errors import BadRequest
from fhir.registry import registry
from fhir.schema import INDEX_TABLES
from fhir.search import near

Cursor = list[Any]  # [sort value, ..., row id]

# Per index table: the column a sort reads, and the values missing entries sort as.
_SORT_COLUMN = {
    "date": ("lo", "hi", MAX_TIME + 1, MIN_TIME - 1),
    "string": ("norm", "norm", "\U0010ffff", ""),
    "token": ("code", "code", "\U0010ffff", ""),
    "number": ("value", "value", 1e308, -1e308),
    "quantity": ("value", "value", 1e308, -1e308),
    "reference": ("target_id", "target_id", "\U0010ffff", ""),
    "uri": ("value", "value", "\U0010ffff", ""),
}


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str
    type: str
    descending: bool
    point: near.Point | None = None  # `_sort=near`: distance from the search's near point


def sort_keys(type_: str, value: str) -> list[SortKey]:
    """Parse `_sort=-date,name` for `type_`."""
    keys = []
    for item in value.split(","):
        item = item.strip()
        descending = item.startswith("-")
        code = item.lstrip("-")
        if code in ("_id", "_lastUpdated"):
            keys.append(SortKey(code, code, descending))
            continue
        sp = registry().get(type_, code)
        if sp is not None and sp.type == "special":  # near: the point comes with the search
            keys.append(SortKey(code, "near", descending))
            continue
        if sp is None or sp.type not in _SORT_COLUMN:
            raise BadRequest(f"_sort: '{code}' is not a sortable search parameter of {type_}.")
        keys.append(SortKey(sp.key, sp.type, descending))
    if not keys or len(keys) > 5:
        raise BadRequest("_sort takes one to five parameters, e.g. _sort=-date,_id.")
    return keys


# Sort aliases by (index table, position in the sort): made once, like fhir.search.aliases, and
# named apart from the aliases of the conditions so that the two never meet in one statement.
_sort_aliases: dict[tuple[str, int], Any] = {}


def _sort_alias(type_: str, position: int) -> Any:
    made = _sort_aliases.get((type_, position))
    if made is None:
        table = INDEX_TABLES[type_]
        made = _sort_aliases[(type_, position)] = table.alias(f"sort_{table.name}_{position}")
    return made


def key_expression(key: SortKey, row: Any, position: int = 0) -> Any:
    """The value `row` sorts by for `key` (lowest value ascending, highest descending);
    `position`: the key's place in the sort (each place has its own table alias)."""
    if key.type == "_id":
        return row.c.id
    if key.type == "_lastUpdated":
        return row.c.last_updated
    if key.type == "near":
        if key.point is None:
            raise BadRequest(f"_sort={key.param} sorts by distance from the point of a "
                             f"'{key.param}' parameter, and this search has none.")
        distance = near.sort_expression(_sort_alias("position", position), row, key.param,
                                        key.point)
        return sa.func.coalesce(distance, -1.0 if key.descending else near.MAX_KM * 2)
    low_col, high_col, missing_asc, missing_desc = _SORT_COLUMN[key.type]
    table = _sort_alias(key.type, position)
    column = table.c[high_col] if key.descending else table.c[low_col]
    agg = sa.func.max(column) if key.descending else sa.func.min(column)
    value = (sa.select(agg).where(table.c.rid == row.c.rid, table.c.param == key.param)
             .scalar_subquery())
    return sa.func.coalesce(value, missing_desc if key.descending else missing_asc)


def order_by(keys: list[SortKey], exprs: list[Any], row: Any,
             reverse: bool = False) -> list[Any]:
    """The order of `keys` then row id (`reverse`: the opposite, to read a previous page)."""
    out = [e.desc() if k.descending != reverse else e.asc()
           for k, e in zip(keys, exprs, strict=True)]
    return [*out, row.c.rid.desc() if reverse else row.c.rid.asc()]


def after(keys: list[SortKey], exprs: list[Any], row: Any, cursor: Cursor,
          reverse: bool = False) -> Any:
    """Rows strictly after `cursor` in the order of `keys` then row id (`reverse`: strictly
    before it)."""
    if len(cursor) != len(keys) + 1:
        raise BadRequest("_cursor does not belong to this search (its sort differs).")
    *values, rid = cursor
    values = [_cursor_value(key, v) for key, v in zip(keys, values, strict=True)]
    clauses = []
    for i, (key, expr) in enumerate(zip(keys, exprs, strict=True)):
        equal_before = [exprs[j] == values[j] for j in range(i)]
        step = expr < values[i] if key.descending != reverse else expr > values[i]
        clauses.append(sa.and_(*equal_before, step))
    clauses.append(sa.and_(*(e == v for e, v in zip(exprs, values, strict=True)),
                           row.c.rid < rid if reverse else row.c.rid > rid))
    return sa.or_(*clauses)


def _cursor_value(key: SortKey, value: Any) -> Any:
    """A cursor's sort value checked against its key: a forged cursor is a 400, not a 500."""
    if key.type in ("date", "number", "quantity", "_lastUpdated", "near"):
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and abs(value) <= 1e308:  # the sort's own stand-in for a missing number
            return float(value)
    elif isinstance(value, str) and "\x00" not in value:
        return value
    raise BadRequest("_cursor does not belong to this search (its sort values differ).")


def encode(cursor: Cursor, backward: bool = False) -> str:
    """A page cursor: the next page starts after `cursor`; with `backward`, the previous
    page ends before it."""
    value: Any = {"before": cursor} if backward else cursor
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decode(token: str) -> Cursor:
    """A forward cursor (a backward one is a 400 here: history and $everything page forward)."""
    cursor, backward = decode_any(token)
    if backward:
        raise BadRequest(f"_cursor '{token}' is not a page cursor this server issued.")
    return cursor


def decode_any(token: str) -> tuple[Cursor, bool]:
    """(cursor, backward) of a search's page cursor."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        backward = isinstance(value, dict) and list(value) == ["before"]
        if backward:
            value = value["before"]
        ok = (isinstance(value, list) and value and isinstance(value[-1], int)
              and not isinstance(value[-1], bool)
              and 0 <= value[-1] < 2**63
              and all(isinstance(v, (str, int, float)) for v in value))
        if not ok:
            raise ValueError
        return value, backward
    except (ValueError, orjson.JSONDecodeError):
        raise BadRequest(f"_cursor '{token}' is not a page cursor this server issued.") from None
