"""One SQL predicate builder per search parameter type (https://hl7.org/fhir/R4/search.html).

Each builder takes the parameter code, its modifier and its OR-values and returns a
parameterised SQLAlchemy condition on the `resource` row. Values never reach SQL as text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from fhir.dates import BadDate, date_range
from fhir.errors import BadRequest
from fhir.index import normalise
from fhir.schema import INDEX_TABLES, resource

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
Builder = Callable[[str, str | None, list[str], tuple[str, ...]], Any]


def _exists(table_name: str, code: str, conditions: Callable[[Any], list[Any]]) -> Any:
    """EXISTS (an index row of `code` for this resource meeting any of `conditions`)."""
    c = INDEX_TABLES[table_name].alias().c
    return sa.exists().where(c.rid == resource.c.rid, c.param == code, sa.or_(*conditions(c)))


def _split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and (value[2].isdigit() or value[2] in "-+."):
        return value[:2], value[2:]
    return "eq", value


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _no_modifier(code: str, modifier: str | None, allowed: tuple[str, ...]) -> None:
    if modifier is not None and modifier not in allowed:
        supported = ", ".join(f":{m}" for m in allowed) or "none"
        raise BadRequest(
            f"Modifier ':{modifier}' is not supported on parameter '{code}' "
            f"(supported here: {supported})."
        )


def _split_pipes(value: str) -> list[str]:
    """A token value split on | not escaped with a backslash, each part unescaped."""
    parts, cur, i = [], [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in "|$\\":
            cur.append(value[i + 1])
            i += 2
            continue
        if value[i] == "|":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(value[i])
        i += 1
    return [*parts, "".join(cur)]


def token(code: str, modifier: str | None, values: list[str], targets: tuple[str, ...]) -> Any:
    """[system]|[code], |code, system|, code; :not and :text."""
    _no_modifier(code, modifier, ("not", "text"))

    def conditions(c: Any) -> list[Any]:
        out = []
        for value in values:
            if modifier == "text":
                out.append(sa.func.lower(c.text).like(f"{_like_escape(value.lower())}%", escape="\\"))
                continue
            pieces = _split_pipes(value)  # values keep their \\| escapes (search.parse)
            if len(pieces) > 1:
                system, tok = pieces[0], "|".join(pieces[1:])
                parts = []
                parts.append(c.system == system if system else c.system.is_(None))
                if tok:
                    parts.append(c.code == tok)
                out.append(sa.and_(*parts))
            else:
                out.append(c.code == pieces[0])
        return out

    found = _exists("token", code, conditions)
    return sa.not_(found) if modifier == "not" else found


def string(code: str, modifier: str | None, values: list[str], targets: tuple[str, ...]) -> Any:
    """Starts-with, case- and accent-insensitive; :exact and :contains."""
    _no_modifier(code, modifier, ("exact", "contains"))

    def conditions(c: Any) -> list[Any]:
        if modifier == "exact":
            return [c.value == v for v in values]
        if modifier == "contains":
            return [c.norm.like(f"%{_like_escape(normalise(v))}%", escape="\\") for v in values]
        return [c.norm.like(f"{_like_escape(normalise(v))}%", escape="\\") for v in values]

    return _exists("string", code, conditions)


def date_condition(lo: Any, hi: Any, value: str, code: str) -> Any:
    """Whether the stored range [lo, hi) matches `value` (a date with an optional prefix)."""
    prefix, text = _split_prefix(value)
    try:
        vlo, vhi = date_range(text)
    except BadDate as exc:
        raise BadRequest(f"Parameter '{code}': {exc}.") from None
    if prefix == "eq":
        return sa.and_(lo >= vlo, hi <= vhi)
    if prefix == "ne":
        return sa.or_(lo < vlo, hi > vhi)
    if prefix == "gt":
        return hi > vhi
    if prefix == "lt":
        return lo < vlo
    if prefix == "ge":
        return sa.or_(hi > vhi, sa.and_(lo >= vlo, hi <= vhi))
    if prefix == "le":
        return sa.or_(lo < vlo, sa.and_(lo >= vlo, hi <= vhi))
    if prefix == "sa":
        return lo >= vhi
    if prefix == "eb":
        return hi <= vlo
    # ap: within 10% of the distance between the value and now (the spec's suggestion).
    slack = max(abs(time.time() - vlo) * 0.1, vhi - vlo)
    return sa.and_(lo < vhi + slack, hi > vlo - slack)


def date(code: str, modifier: str | None, values: list[str], targets: tuple[str, ...]) -> Any:
    """Dates with precision and the prefixes eq ne gt lt ge le sa eb ap."""
    _no_modifier(code, modifier, ())
    return _exists("date", code, lambda c: [date_condition(c.lo, c.hi, v, code) for v in values])


def reference(code: str, modifier: str | None, values: list[str],
              targets: tuple[str, ...]) -> Any:
    """Type/id, id (with :Type or a single-target parameter), or an absolute URL."""
    if modifier is not None and modifier not in targets:
        raise BadRequest(
            f"Modifier ':{modifier}' is not supported on reference parameter '{code}' "
            f"(it may name one of its target types: {', '.join(targets) or 'none'})."
        )

    def conditions(c: Any) -> list[Any]:
        out = []
        for value in values:
            if "://" in value:
                out.append(c.url == value)
                continue
            parts = value.split("/")
            if len(parts) == 2 and parts[0] and parts[1]:
                if modifier and parts[0] != modifier:
                    raise BadRequest(f"Parameter '{code}:{modifier}' cannot match '{value}'.")
                out.append(sa.and_(c.target_type == parts[0], c.target_id == parts[1]))
            elif len(parts) == 1 and value:
                kind = modifier or (targets[0] if len(targets) == 1 else None)
                cond = c.target_id == value
                out.append(sa.and_(cond, c.target_type == kind) if kind else cond)
            else:
                raise BadRequest(
                    f"Parameter '{code}': '{value}' is not a reference (use Type/id or id)."
                )
        return out

    return _exists("reference", code, conditions)


def _number_value(code: str, text: str) -> tuple[float, float]:
    """A number and half its implied precision: 100 matches [99.5, 100.5)."""
    try:
        number = float(text)
    except ValueError:
        raise BadRequest(f"Parameter '{code}': '{text}' is not a number.") from None
    digits = text.lstrip("+-")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return number, 0.5 * 10.0 ** -decimals


def _compare(column: Any, prefix: str, number: float, half: float) -> Any:
    return {
        "eq": sa.and_(column >= number - half, column < number + half),
        "ne": sa.or_(column < number - half, column >= number + half),
        "gt": column > number, "lt": column < number,
        "ge": column >= number, "le": column <= number,
        "sa": column > number, "eb": column < number,
        "ap": sa.and_(column >= number * 0.9, column <= number * 1.1)
        if number >= 0 else sa.and_(column <= number * 0.9, column >= number * 1.1),
    }[prefix]


def number(code: str, modifier: str | None, values: list[str], targets: tuple[str, ...]) -> Any:
    """Numbers with prefixes; eq honours the value's precision."""
    _no_modifier(code, modifier, ())

    def conditions(c: Any) -> list[Any]:
        out = []
        for value in values:
            prefix, text = _split_prefix(value)
            out.append(_compare(c.value, prefix, *_number_value(code, text)))
        return out

    return _exists("number", code, conditions)


def quantity(code: str, modifier: str | None, values: list[str],
             targets: tuple[str, ...]) -> Any:
    """[prefix]number|system|code, or number||unit-or-code."""
    _no_modifier(code, modifier, ())

    def conditions(c: Any) -> list[Any]:
        out = []
        for value in values:
            num, _, rest = value.partition("|")
            system, _, unit = rest.partition("|") if rest else ("", "", "")
            prefix, text = _split_prefix(num)
            parts = [_compare(c.value, prefix, *_number_value(code, text))]
            if system:
                parts.append(c.system == system)
            if unit:
                parts.append(sa.or_(c.code == unit, c.unit == unit) if not system
                             else c.code == unit)
            out.append(sa.and_(*parts))
        return out

    return _exists("quantity", code, conditions)


def uri(code: str, modifier: str | None, values: list[str], targets: tuple[str, ...]) -> Any:
    """Exact URI match; :below for a URL prefix."""
    _no_modifier(code, modifier, ("below",))
    if modifier == "below":
        return _exists("uri", code, lambda c: [
            c.value.like(f"{_like_escape(v)}%", escape="\\") for v in values
        ])
    return _exists("uri", code, lambda c: [c.value == v for v in values])


BUILDERS: dict[str, Builder] = {
    "token": token, "string": string, "date": date, "reference": reference,
    "number": number, "quantity": quantity, "uri": uri,
}
