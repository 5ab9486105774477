"""Index extraction: what a resource contributes to each search index table. Pure functions.

One small extractor per parameter type turns the nodes a parameter's FHIRPath selects into
rows (https://hl7.org/fhir/R4/search.html#ptypes). `extract` returns rows per table; the store
writes them in the same transaction as the resource.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from fhir.dates import MAX_TIME, MIN_TIME, BadDate, date_range
from fhir.registry import Registry, SearchParam

Row = tuple[Any, ...]
_CONTACT_KINDS = {"phone", "email", "fax", "pager", "url", "sms", "other"}


def normalise(text: str) -> str:
    """Case- and accent-insensitive form used by string search (``Müller`` ~ ``muller``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _tokens(value: Any) -> Iterator[tuple[str | None, str | None, str | None]]:
    """(system, code, text) triples of a token-typed value."""
    if isinstance(value, bool):
        yield None, "true" if value else "false", None
    elif isinstance(value, (str, int)):
        yield None, str(value), None
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "value" not in value):
            for coding in value.get("coding", ()):
                yield from _coding(coding)
            if value.get("text"):
                yield None, None, value["text"]
        elif "value" in value:  # Identifier, or ContactPoint whose `system` is a kind
            system = value.get("system")
            if system in _CONTACT_KINDS:
                system = None
            yield system, str(value["value"]), (value.get("type") or {}).get("text")
        else:
            yield from _coding(value)


def _coding(coding: dict[str, Any]) -> Iterator[tuple[str | None, str | None, str | None]]:
    if coding.get("code") is not None or coding.get("system"):
        yield coding.get("system"), coding.get("code"), coding.get("display")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in ("text", "family", "given", "prefix", "suffix", "line", "city", "district",
                    "state", "postalCode", "country"):
            part = value.get(key)
            if isinstance(part, str):
                yield part
            elif isinstance(part, list):
                yield from (p for p in part if isinstance(p, str))


def _dates(value: Any) -> Iterator[tuple[float, float]]:
    try:
        if isinstance(value, str):
            yield date_range(value)
        elif isinstance(value, dict):
            if "start" in value or "end" in value:  # Period
                low = date_range(value["start"])[0] if value.get("start") else MIN_TIME
                high = date_range(value["end"])[1] if value.get("end") else MAX_TIME
                yield low, high
            for event in value.get("event", ()):  # Timing
                yield date_range(event)
    except BadDate:
        return


def _references(value: Any) -> Iterator[tuple[str | None, str | None, str | None]]:
    """(target type, target id, url) of a Reference or canonical."""
    if isinstance(value, str):
        yield None, None, value.split("|")[0]
        return
    if not isinstance(value, dict):
        return
    ref = value.get("reference")
    if not isinstance(ref, str) or ref.startswith("#"):
        return
    parts = ref.split("/_history/")[0].split("/")
    if len(parts) == 2 and "://" not in ref:
        yield parts[0], parts[1], None
    else:
        yield (parts[-2] if len(parts) >= 2 else None), (parts[-1] or None), ref


def _quantities(value: Any) -> Iterator[tuple[float, str | None, str | None, str | None]]:
    if isinstance(value, dict) and isinstance(value.get("value"), (int, float, Decimal)):
        yield float(value["value"]), value.get("system"), value.get("code"), value.get("unit")


def _uris(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value


def _numbers(value: Any) -> Iterator[float]:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        yield float(value)


def _positions(value: Any) -> Iterator[tuple[float, float]]:
    """(latitude, longitude) of a Location.position (WGS84 decimal degrees)."""
    if isinstance(value, dict):
        lat, lon = value.get("latitude"), value.get("longitude")
        if all(isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)
               for v in (lat, lon)):
            yield float(lat), float(lon)


def _cut(text: str | None, size: int) -> str | None:
    return text[:size] if text is not None else None


def _identifier_tokens(value: Any) -> Iterator[tuple[str | None, str]]:
    """(system, value) of the identifier a Reference carries (for `param:identifier`)."""
    ident = value.get("identifier") if isinstance(value, dict) else None
    if isinstance(ident, dict) and ident.get("value") is not None:
        yield ident.get("system"), str(ident["value"])


def _of_type_tokens(value: Any) -> Iterator[tuple[str | None, str]]:
    """(type system, "type code|value") of an Identifier with a coded type (for `:of-type`)."""
    if not isinstance(value, dict) or "coding" in value or value.get("value") is None:
        return
    kind = value.get("type")
    if not isinstance(kind, dict):
        return
    for coding in kind.get("coding", ()):
        if isinstance(coding, dict) and coding.get("code") is not None:
            yield coding.get("system"), f"{coding['code']}|{value['value']}"


# A composite row after `param`: a_system, a_code, then the second component's columns
# b_system, b_code, b_unit, b_num, b_lo, b_hi, b_norm (fhir.schema.sp_composite).
_NO_B = (None, None, None, None, None, None, None)


def _composite_first(kind: str, value: Any) -> Iterator[tuple[str | None, str | None]]:
    if kind == "reference":
        for target_type, target_id, _ in _references(value):
            if target_id:
                yield _cut(target_type, 255), _cut(target_id, 255)
        return
    for system, code, _ in _tokens(value):
        if system is not None or code is not None:
            yield _cut(system, 255), _cut(code, 255)


def _composite_second(kind: str, value: Any) -> Iterator[Row]:
    if kind == "token":
        for system, code, _ in _tokens(value):
            if system is not None or code is not None:
                yield _cut(system, 255), _cut(code, 255), None, None, None, None, None
    elif kind == "quantity":
        for number, system, code, unit in _quantities(value):
            yield _cut(system, 255), _cut(code, 255), _cut(unit, 255), number, None, None, None
    elif kind == "date":
        for lo, hi in _dates(value):
            yield None, None, None, None, lo, hi, None
    elif kind == "string":
        for text in _strings(value):
            yield None, None, None, None, None, None, normalise(text)[:255]
    elif kind == "number":
        for number in _numbers(value):
            yield None, None, None, number, None, None, None


def _composite_rows(code: str, sp: SearchParam, resource: dict[str, Any]) -> Iterator[Row]:
    """One row per (first, second) pair taken from the same node the composite selects."""
    first, second = sp.components
    for node in sp.evaluate(resource):
        a_values = [a for v, _ in first.evaluate(node) for a in _composite_first(first.type, v)]
        if not a_values:
            continue
        b_values = [b for v, _ in second.evaluate(node)
                    for b in _composite_second(second.type, v)]
        for a in a_values:
            for b in b_values:
                yield (code, *a, *b)


def extract(resource: dict[str, Any], reg: Registry) -> dict[str, list[Row]]:
    """Index rows per parameter type: ``{"token": [(param, system, code, text), ...], ...}``.

    Token, string and uri rows hold their values whole; `finish` cuts them to their columns
    and adds the hash of each value that was cut, as the tables store them."""
    rows: dict[str, list[Row]] = {t: [] for t in ("token", "string", "date", "reference",
                                                   "quantity", "uri", "number", "composite",
                                                   "position")}
    for sp in reg.for_type(resource["resourceType"]).values():
        code = sp.key  # the rows' `param` (fhir.registry.index_key)
        seen: set[Row] = set()
        if sp.type == "composite":
            for row in _composite_rows(code, sp, resource):
                if row not in seen:
                    seen.add(row)
                    rows["composite"].append(row)
            continue
        values = [v for v, _ in sp.evaluate(resource)]
        if not values:
            continue
        if sp.type == "special":  # Location.near: the position table (fhir/search/near.py)
            for row in ((code, lat, lon) for v in values for lat, lon in _positions(v)):
                if row not in seen:
                    seen.add(row)
                    rows["position"].append(row)
            continue
        out = rows[sp.type]
        for value in values:
            if sp.type == "token":
                items: Iterator[Row] = ((code, s, c, t) for s, c, t in _tokens(value))
                # `code:of-type=type-system|type-code|value` (Identifier only)
                for s, c in _of_type_tokens(value):
                    row = (f"{code}:of-type", s, c, None)
                    if row not in seen:
                        seen.add(row)
                        rows["token"].append(row)
            elif sp.type == "string":
                items = ((code, normalise(s), s) for s in _strings(value))
            elif sp.type == "date":
                items = ((code, lo, hi) for lo, hi in _dates(value))
            elif sp.type == "reference":
                items = (
                    (code, _cut(t, 64), _cut(i, 64), _cut(u, 1024))
                    for t, i, u in _references(value)
                )
                # `code:identifier=system|value`: a token row under the modified name
                for s, v in _identifier_tokens(value):
                    row = (f"{code}:identifier", s, v, None)
                    if row not in seen:
                        seen.add(row)
                        rows["token"].append(row)
            elif sp.type == "quantity":
                items = (
                    (code, v, _cut(s, 255), _cut(c, 255), _cut(u, 255))
                    for v, s, c, u in _quantities(value)
                )
            elif sp.type == "uri":
                items = ((code, u) for u in _uris(value))
            else:
                items = ((code, n) for n in _numbers(value))
            for row in items:
                if row not in seen:
                    seen.add(row)
                    out.append(row)
    return rows


# Exact matches on values longer than their column: the column keeps the first SIZE
# characters and a *_hash column the SHA-256 of the whole value (NULL when nothing was cut),
# so `system|code`, `:exact` and uri searches find any stored length and tell apart values
# that share the first SIZE characters (fhir/search/predicates.py `exact`). Prefix searches
# (string, uri:below) use the cut column.
TOKEN_SIZE, STRING_SIZE, URI_SIZE = 255, 255, 1024


def digest(value: str | None, size: int) -> str | None:
    """The hash stored beside a value cut to `size` characters (None if it fits)."""
    if value is None or len(value) <= size:
        return None
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def finish(table: str, rows: list[Row]) -> list[Row]:
    """`extract`'s rows of `table` as its columns hold them (after param: the cut values,
    then the hashes of the cut ones; fhir.schema)."""
    if table == "token":
        return [(p, _cut(s, TOKEN_SIZE), _cut(c, TOKEN_SIZE), t,
                 digest(s, TOKEN_SIZE), digest(c, TOKEN_SIZE)) for p, s, c, t in rows]
    if table == "string":
        return [(p, n[:STRING_SIZE], v[:STRING_SIZE], digest(v, STRING_SIZE))
                for p, n, v in rows]
    if table == "uri":
        return [(p, u[:URI_SIZE], digest(u, URI_SIZE)) for p, u in rows]
    return rows


def compartment_patient(resource: dict[str, Any], reg: Registry,
                        refs: list[Row]) -> str | None:
    """The id of the Patient whose compartment holds `resource` (the access-control key)."""
    if resource["resourceType"] == "Patient":
        return resource.get("id")
    type_ = resource["resourceType"]
    params = [sp.key for name in reg.compartment.get(type_, ())
              if (sp := reg.get(type_, name)) is not None]
    for param in params:
        for row in refs:
            if row[0] == param and row[1] == "Patient" and row[2]:
                return row[2]
    return None
