"""One SQL predicate builder per search parameter type (https://hl7.org/fhir/R4/search.html).

A builder takes the row id column of the resource it tests (the searched resource, or a
chained one), the parameter, its modifier and its OR-values, and returns a parameterised
SQLAlchemy condition. Values never reach SQL as text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from fhir.dates import BadDate, date_range
from fhir.errors import BadRequest
from fhir.index import STRING_SIZE, TOKEN_SIZE, URI_SIZE, digest, normalise
from fhir.registry import SearchParam
from fhir.schema import INDEX_TABLES
from fhir.search.aliases import alias
from fhir.search.near import near
from fhir.search.values import like_escape, split_prefix, split_unescaped

Builder = Callable[[Any, SearchParam, str | None, list[str]], Any]


def exists(rid: Any, table_name: str, code: str,
           conditions: Callable[[Any], list[Any]] | None = None) -> Any:
    """EXISTS (an index row of `code` for row `rid` meeting any of `conditions`)."""
    c = alias(INDEX_TABLES[table_name]).c
    where = [c.rid == rid, c.param == code]
    if conditions is not None:
        where.append(sa.or_(*conditions(c)))
    return sa.exists().where(*where)


def no_modifier(code: str, modifier: str | None, allowed: tuple[str, ...]) -> None:
    if modifier is not None and modifier not in allowed:
        supported = ", ".join(f":{m}" for m in allowed) or "none"
        raise BadRequest(
            f"Modifier ':{modifier}' is not supported on parameter '{code}' "
            f"(supported here: {supported})."
        )


def exact(column: Any, hashed: Any, value: str, size: int) -> Any:
    """`column` holds `value` whole: a value longer than the column is matched on its start
    and the hash of the whole (fhir/index.py `finish`); one shorter than the column needs no
    hash (a cut value always fills the column), so the lookup index alone answers it."""
    if len(value) < size or hashed is None:  # (composite columns keep no hash)
        return column == value
    whole = digest(value, size)
    return sa.and_(column == value[:size],
                   hashed.is_(None) if whole is None else hashed == whole)


def _token_match(c: Any, value: str) -> Any:
    pieces = split_unescaped(value, "|")  # values keep their \\| escapes (params.parse)
    if len(pieces) == 1:
        return exact(c.code, getattr(c, "code_hash", None), pieces[0], TOKEN_SIZE)
    system, tok = pieces[0], "|".join(pieces[1:])
    parts = [exact(c.system, getattr(c, "system_hash", None), system, TOKEN_SIZE) if system
             else c.system.is_(None)]
    if tok:
        parts.append(exact(c.code, getattr(c, "code_hash", None), tok, TOKEN_SIZE))
    return sa.and_(*parts)


def token(rid: Any, sp: SearchParam, modifier: str | None, values: list[str]) -> Any:
    """[system]|[code], |code, system|, code; :not, :text, :of-type (identifiers)."""
    code = sp.code
    if modifier in ("above", "below", "in", "not-in"):
        raise BadRequest(f"':{modifier}' on '{code}' needs a terminology service, which this "
                         "server does not have; search by code (a comma-separated list).")
    no_modifier(code, modifier, ("not", "text", "of-type"))
    if modifier == "text":
        return exists(rid, "token", sp.key, lambda c: [
            sa.func.lower(c.text).like(f"{like_escape(v.lower())}%", escape="\\") for v in values
        ])
    if modifier == "of-type":
        return exists(rid, "token", f"{sp.key}:of-type", lambda c: [
            _of_type(c, code, v) for v in values
        ])
    found = exists(rid, "token", sp.key, lambda c: [_token_match(c, v) for v in values])
    return sa.not_(found) if modifier == "not" else found


def _of_type(c: Any, code: str, value: str) -> Any:
    pieces = split_unescaped(value, "|")
    if len(pieces) != 3 or not all(pieces[1:]):
        raise BadRequest(f"'{code}:of-type' takes type-system|type-code|value, not '{value}'.")
    system, type_code, ident = pieces
    cond = exact(c.code, c.code_hash, f"{type_code}|{ident}", TOKEN_SIZE)
    return sa.and_(exact(c.system, c.system_hash, system, TOKEN_SIZE), cond) if system else cond


def string(rid: Any, sp: SearchParam, modifier: str | None, values: list[str]) -> Any:
    """Starts-with, case- and accent-insensitive; :exact and :contains."""
    no_modifier(sp.code, modifier, ("exact", "contains"))

    def conditions(c: Any) -> list[Any]:
        if modifier == "exact":
            return [exact(c.value, c.value_hash, v, STRING_SIZE) for v in values]
        if modifier == "contains":
            return [c.norm.like(f"%{like_escape(normalise(v))}%", escape="\\") for v in values]
        # Starts-with beyond the column's length: on the part the column holds.
        return [c.norm.like(f"{like_escape(normalise(v)[:STRING_SIZE])}%", escape="\\")
                for v in values]

    return exists(rid, "string", sp.key, conditions)


def date_condition(lo: Any, hi: Any, value: str, code: str) -> Any:
    """Whether the stored range [lo, hi) matches `value` (a date with an optional prefix)."""
    prefix, text = split_prefix(value)
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


def date(rid: Any, sp: SearchParam, modifier: str | None, values: list[str]) -> Any:
    """Dates with precision and the prefixes eq ne gt lt ge le sa eb ap."""
    no_modifier(sp.code, modifier, ())
    return exists(rid, "date", sp.key,
                  lambda c: [date_condition(c.lo, c.hi, v, sp.code) for v in values])


def reference(rid: Any, sp: SearchParam, modifier: str | None, values: list[str]) -> Any:
    """Type/id, id (with :Type or a single-target parameter), an absolute URL; :identifier."""
    code, targets = sp.code, sp.targets
    if modifier == "identifier":
        return exists(rid, "token", f"{sp.key}:identifier",
                      lambda c: [_token_match(c, v) for v in values])
    if modifier is not None and modifier not in targets:
        raise BadRequest(
            f"Modifier ':{modifier}' is not supported on reference parameter '{code}' "
            f"(it takes :identifier, or one of its target types: {', '.join(targets) or 'none'})."
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

    return exists(rid, "reference", sp.key, conditions)


def number_value(code: str, text: str) -> tuple[float, float]:
    """A number and half its implied precision: 100 matches [99.5, 100.5)."""
    try:
        number = float(text)
    except ValueError:
        raise BadRequest(f"Parameter '{code}': '{text}' is not a number.") from None
    if not text.isascii() or "_" in text or text != text.strip():  # float() takes "1_0", "５"
        raise BadRequest(f"Parameter '{code}': '{text}' is not a number.")
    if number != number or number in (float("inf"), float("-inf")):
        raise BadRequest(f"Parameter '{code}': '{text}' is not a finite number.")
    # The precision is half a unit of the last significant digit: 1.5e-3 is [0.00145, 0.00155).
    digits, _, exponent = text.lstrip("+-").lower().partition("e")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    try:  # 0e999999 is a finite number whose precision is not
        return number, 0.5 * 10.0 ** ((int(exponent) if exponent else 0) - decimals)
    except OverflowError:
        raise BadRequest(f"Parameter '{code}': '{text}' is out of range.") from None


def compare(column: Any, prefix: str, number: float, half: float) -> Any:
    """A number comparison with FHIR prefixes; eq and ne honour the value's precision."""
    return {
        "eq": sa.and_(column >= number - half, column < number + half),
        "ne": sa.or_(column < number - half, column >= number + half),
        "gt": column > number, "lt": column < number,
        "ge": column >= number, "le": column <= number,
        "sa": column > number, "eb": column < number,
        "ap": sa.and_(column >= number * 0.9, column <= number * 1.1)
        if number >= 0 else sa.and_(column <= number * 0.9, column >= number * 1.1),
    }[prefix]


def number(rid: Any, sp: SearchParam, modifier: str | None, values: list[str]) -> Any:
    """Numbers with prefixes."""
    no_modifier(sp.code, modifier, ())

    def conditions(c: Any) -> list[Any]:
        out = []
        for value in values:
            prefix, text = split_prefix(value)
            out.append(compare(c.value, prefix, *number_value(sp.code, text)))
        return out

    return exists(rid, "number", sp.key, conditions)


def quantity_condition(c: Any, code: str, value: str) -> Any:
    """[prefix]number|system|code, or number||unit-or-code, on quantity-like columns."""
    pieces = split_unescaped(value, "|")
    num = pieces[0]
    system = pieces[1] if len(pieces) > 1 else ""
    unit = "|".join(pieces[2:]) if len(pieces) > 2 else ""
    prefix, text = split_prefix(num)
    parts = [compare(c.value, prefix, *number_value(code, text))]
    if system:
        parts.append(c.system == system)
    if unit:
        parts.append(c.code == unit if system else sa.or_(c.code == unit, c.unit == unit))
    return sa.and_(*parts)


def quantity(rid: Any, sp: SearchParam, modifier: str | None, values: list[str]) -> Any:
    no_modifier(sp.code, modifier, ())
    return exists(rid, "quantity", sp.key,
                  lambda c: [quantity_condition(c, sp.code, v) for v in values])


def uri(rid: Any, sp: SearchParam, modifier: str | None, values: list[str]) -> Any:
    """Exact URI; :below (the value is a prefix), :above (the value starts with it)."""
    no_modifier(sp.code, modifier, ("below", "above"))
    # URIs are case-sensitive: SQLite's LIKE is not, so substr() decides; the stored value is
    # never a LIKE pattern (its % and _ are characters).
    if modifier == "below":  # beyond the column's length, on the part it holds
        cut = [v[:URI_SIZE] for v in values]
        return exists(rid, "uri", sp.key, lambda c: [
            sa.and_(c.value.like(f"{like_escape(v)}%", escape="\\"),
                    sa.func.substr(c.value, 1, len(v)) == v) for v in cut
        ])
    if modifier == "above":
        return exists(rid, "uri", sp.key, lambda c: [
            sa.func.substr(sa.literal(v, sa.Text), 1, sa.func.length(c.value)) == c.value
            for v in values
        ])
    return exists(rid, "uri", sp.key,
                  lambda c: [exact(c.value, c.value_hash, v, URI_SIZE) for v in values])


def _split_composite(value: str) -> list[str]:
    """`value` split on `$` not escaped with a backslash; other escapes are kept for the parts."""
    parts, cur, i = [], [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            cur.append(value[i + 1] if value[i + 1] == "$" else value[i:i + 2])
            i += 2
            continue
        if value[i] == "$":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(value[i])
        i += 1
    return [*parts, "".join(cur)]


def _unescape(text: str) -> str:
    return "|".join(split_unescaped(text, "|"))


def _reference_first(c: Any, code: str, value: str) -> Any:
    """A reference first component: Type/id, id or an absolute URL ending in Type/id (target
    type/id are in a_system/a_code, as fhir.index stores them)."""
    text = _unescape(value)
    parts = text.split("/_history/")[0].split("/")
    if "://" in text and len(parts) > 2:
        parts = parts[-2:]
    if len(parts) == 2 and all(parts):
        return sa.and_(c.a_system == parts[0], c.a_code == parts[1])
    if len(parts) == 1:
        return c.a_code == parts[0]
    raise BadRequest(f"Parameter '{code}': '{value}' is not a reference (use Type/id or id).")


def _composite_match(c: Any, sp: SearchParam, value: str) -> Any:
    pieces = _split_composite(value)
    if len(pieces) != 2 or not all(pieces):
        raise BadRequest(
            f"Parameter '{sp.code}' is a composite of two values joined by '$' "
            f"(e.g. {sp.code}=http://loinc.org|8480-6$gt140), not '{value}'."
        )
    first_kind, second_kind = (part.type for part in sp.components)
    a, b = pieces
    if first_kind == "reference":
        conditions = [_reference_first(c, sp.code, a)]
    else:
        conditions = [_token_match(SimpleNamespace(system=c.a_system, code=c.a_code), a)]
    if second_kind == "token":
        conditions.append(_token_match(SimpleNamespace(system=c.b_system, code=c.b_code), b))
    elif second_kind == "quantity":
        columns = SimpleNamespace(value=c.b_num, system=c.b_system, code=c.b_code, unit=c.b_unit)
        conditions.append(quantity_condition(columns, sp.code, b))
    elif second_kind == "date":
        conditions.append(date_condition(c.b_lo, c.b_hi, _unescape(b), sp.code))
    elif second_kind == "string":
        pattern = f"{like_escape(normalise(_unescape(b)))}%"
        conditions.append(c.b_norm.like(pattern, escape="\\"))
    else:  # number
        prefix, text = split_prefix(_unescape(b))
        conditions.append(compare(c.b_num, prefix, *number_value(sp.code, text)))
    return sa.and_(*conditions)


def composite(rid: Any, sp: SearchParam, modifier: str | None, values: list[str]) -> Any:
    """`a$b`: both components found in the same element (the same Observation.component);
    `a` is matched as a token (or Type/id), `b` by the second component's type and prefixes."""
    no_modifier(sp.code, modifier, ())
    return exists(rid, "composite", sp.key,
                  lambda c: [_composite_match(c, sp, v) for v in values])


BUILDERS: dict[str, Builder] = {
    "token": token, "string": string, "date": date, "reference": reference,
    "number": number, "quantity": quantity, "uri": uri, "composite": composite,
    "special": near,  # Location.near only (fhir/search/near.py)
}
