"""An independent FHIR R4 search evaluator, used as a test oracle for the server's search.

Written from the specification (https://hl7.org/fhir/R4/search.html), not from the server:
it imports nothing of `fhir.search`, `fhir.index` or `fhir.dates`, keeps its own table of the
parameters it knows (paths taken from the R4 SearchParameter expressions) and evaluates a search
over parsed JSON resources in memory. It covers a subset of the language:

- token: `code`, `system|code`, `|code`, `system|`; :not, :missing
- string: starts-with ignoring case and accents; :exact, :contains, :missing
- date: the prefixes eq ne gt lt ge le sa eb over the implicit range of each value and of the
  search value (a day is the whole day, a Period with no end is open), :missing
- reference: `Type/id`, `id`, `:Type`; chains (`a.b.c=v`, `a:Type.b=v`) and `_has` (nested)
- `_id`, `_tag`; OR by commas (with `\\,` escapes), AND by repetition

Two choices the specification leaves to a server are made as this server documents them: a
dateTime without a zone is UTC, and a bare id on a parameter with several target types matches
any of them.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

Resource = dict[str, Any]
INF = Decimal("Infinity")


@dataclass(frozen=True)
class Param:
    """A parameter: its type, the element paths it reads, and (references) a target type."""

    type: str
    paths: tuple[str, ...]
    only: str | None = None  # e.g. `patient` = subject.where(resolve() is Patient)


def _p(type_: str, *paths: str, only: str | None = None) -> Param:
    return Param(type_, paths, only)


_COMMON = {"_tag": _p("token", "meta.tag")}
_PERSON = {
    "identifier": _p("token", "identifier"), "gender": _p("token", "gender"),
    "active": _p("token", "active"), "family": _p("string", "name.family"),
    "given": _p("string", "name.given"), "name": _p("string", "name"),
    "address-city": _p("string", "address.city"),
}
# From the R4 SearchParameter definitions (search-parameters.json), for the types the tests load.
PARAMS: dict[str, dict[str, Param]] = {
    "Patient": {**_COMMON, **_PERSON,
                "birthdate": _p("date", "birthDate"),
                "death-date": _p("date", "deceased[dateTime]"),
                "general-practitioner": _p("reference", "generalPractitioner"),
                "organization": _p("reference", "managingOrganization"),
                "link": _p("reference", "link.other"),
                "language": _p("token", "communication.language")},
    "Practitioner": {**_COMMON, **_PERSON},
    "Organization": {**_COMMON,
                     "identifier": _p("token", "identifier"), "active": _p("token", "active"),
                     "name": _p("string", "name", "alias"), "type": _p("token", "type"),
                     "partof": _p("reference", "partOf"),
                     "address-city": _p("string", "address.city")},
    "Observation": {**_COMMON,
                    "identifier": _p("token", "identifier"), "code": _p("token", "code"),
                    "category": _p("token", "category"), "status": _p("token", "status"),
                    "date": _p("date", "effective[x]"),
                    "subject": _p("reference", "subject"),
                    "patient": _p("reference", "subject", only="Patient"),
                    "encounter": _p("reference", "encounter"),
                    "performer": _p("reference", "performer"),
                    "has-member": _p("reference", "hasMember"),
                    "derived-from": _p("reference", "derivedFrom"),
                    "specimen": _p("reference", "specimen"),
                    "value-concept": _p("token", "value[CodeableConcept]"),
                    "value-date": _p("date", "value[dateTime,Period]"),
                    "value-string": _p("string", "value[string]", "value[CodeableConcept].text"),
                    "component-code": _p("token", "component.code"),
                    "data-absent-reason": _p("token", "dataAbsentReason"),
                    "method": _p("token", "method")},
    "Condition": {**_COMMON,
                  "identifier": _p("token", "identifier"), "code": _p("token", "code"),
                  "clinical-status": _p("token", "clinicalStatus"),
                  "verification-status": _p("token", "verificationStatus"),
                  "category": _p("token", "category"), "severity": _p("token", "severity"),
                  "body-site": _p("token", "bodySite"), "evidence": _p("token", "evidence.code"),
                  "stage": _p("token", "stage.summary"),
                  "onset-date": _p("date", "onset[dateTime,Period]"),
                  "abatement-date": _p("date", "abatement[dateTime,Period]"),
                  "recorded-date": _p("date", "recordedDate"),
                  "onset-info": _p("string", "onset[string]"),
                  "subject": _p("reference", "subject"),
                  "patient": _p("reference", "subject", only="Patient"),
                  "encounter": _p("reference", "encounter"),
                  "asserter": _p("reference", "asserter")},
    "Encounter": {**_COMMON,
                  "identifier": _p("token", "identifier"), "status": _p("token", "status"),
                  "class": _p("token", "class"), "type": _p("token", "type"),
                  "reason-code": _p("token", "reasonCode"),
                  "participant-type": _p("token", "participant.type"),
                  "date": _p("date", "period"),
                  "subject": _p("reference", "subject"),
                  "patient": _p("reference", "subject", only="Patient"),
                  "participant": _p("reference", "participant.individual"),
                  "practitioner": _p("reference", "participant.individual", only="Practitioner"),
                  "service-provider": _p("reference", "serviceProvider"),
                  "part-of": _p("reference", "partOf"),
                  "episode-of-care": _p("reference", "episodeOfCare"),
                  "location": _p("reference", "location.location")},
    "MedicationRequest": {**_COMMON,
                          "identifier": _p("token", "identifier"),
                          "status": _p("token", "status"), "intent": _p("token", "intent"),
                          "priority": _p("token", "priority"),
                          "category": _p("token", "category"),
                          "code": _p("token", "medication[CodeableConcept]"),
                          "medication": _p("reference", "medication[Reference]"),
                          "authoredon": _p("date", "authoredOn"),
                          "subject": _p("reference", "subject"),
                          "patient": _p("reference", "subject", only="Patient"),
                          "requester": _p("reference", "requester"),
                          "encounter": _p("reference", "encounter"),
                          "intended-dispenser": _p("reference", "dispenseRequest.performer")},
    "AllergyIntolerance": {**_COMMON,
                           "identifier": _p("token", "identifier"),
                           "clinical-status": _p("token", "clinicalStatus"),
                           "verification-status": _p("token", "verificationStatus"),
                           "type": _p("token", "type"), "category": _p("token", "category"),
                           "criticality": _p("token", "criticality"),
                           "code": _p("token", "code", "reaction.substance"),
                           "manifestation": _p("token", "reaction.manifestation"),
                           "severity": _p("token", "reaction.severity"),
                           "route": _p("token", "reaction.exposureRoute"),
                           "date": _p("date", "recordedDate"),
                           "onset": _p("date", "reaction.onset"),
                           "last-date": _p("date", "lastOccurrence"),
                           "patient": _p("reference", "patient"),
                           "recorder": _p("reference", "recorder"),
                           "asserter": _p("reference", "asserter")},
    "Procedure": {**_COMMON,
                  "identifier": _p("token", "identifier"), "code": _p("token", "code"),
                  "status": _p("token", "status"), "category": _p("token", "category"),
                  "reason-code": _p("token", "reasonCode"),
                  "date": _p("date", "performed[x]"),
                  "subject": _p("reference", "subject"),
                  "patient": _p("reference", "subject", only="Patient"),
                  "encounter": _p("reference", "encounter"),
                  "performer": _p("reference", "performer.actor"),
                  "location": _p("reference", "location")},
}


class Unsupported(ValueError):
    """A query outside the oracle's subset."""


# ---------------------------------------------------------------- walking resources


def _step(nodes: list[Any], name: str) -> list[Any]:
    """Children `name` of each node; `value[x]` any choice, `value[dateTime,Period]` some."""
    out: list[Any] = []
    choice = re.fullmatch(r"(\w+)\[(.*)\]", name)
    for node in nodes:
        if not isinstance(node, dict):
            continue
        if choice:
            stem, kinds = choice.group(1), choice.group(2)
            for key, value in node.items():
                suffix = key[len(stem):]
                if key.startswith(stem) and suffix[:1].isupper() and (
                        kinds == "x" or suffix in {k[0].upper() + k[1:]
                                                   for k in kinds.split(",")}):
                    out.extend(value if isinstance(value, list) else [value])
        elif name in node:
            value = node[name]
            out.extend(value if isinstance(value, list) else [value])
    return out


def elements(resource: Resource, path: str) -> list[Any]:
    nodes: list[Any] = [resource]
    for name in path.split("."):
        nodes = _step(nodes, name)
    return nodes


# ---------------------------------------------------------------- values per type


def tokens(node: Any) -> Iterator[tuple[str | None, str]]:
    """(system, code) pairs: code, boolean, Coding, CodeableConcept, Identifier."""
    if isinstance(node, bool):
        yield None, "true" if node else "false"
    elif isinstance(node, str):
        yield None, node
    elif isinstance(node, dict):
        if "coding" in node:
            for coding in node["coding"]:
                if "code" in coding:
                    yield coding.get("system"), coding["code"]
        elif "value" in node and isinstance(node["value"], str):  # Identifier
            yield node.get("system"), node["value"]
        elif "code" in node:  # Coding
            yield node.get("system"), node["code"]


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):  # HumanName, Address: every text part
        for key in ("text", "family", "given", "prefix", "suffix", "line", "city", "district",
                    "state", "postalCode", "country"):
            part = node.get(key)
            for text in part if isinstance(part, list) else [part]:
                if isinstance(text, str):
                    yield text


def fold(text: str) -> str:
    """Case- and accent-insensitive form: decompose, drop the marks, fold the case."""
    return "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c)).casefold()


_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?")


def date_range(text: str) -> tuple[Decimal, Decimal]:
    """[low, high) in exact epoch seconds of a date, dateTime or instant, by its precision."""
    m = _DATE.fullmatch(text)
    if not m:
        raise Unsupported(f"not a date: {text!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    y = int(year)
    if month is None:
        return Decimal(calendar.timegm((y, 1, 1, 0, 0, 0))), \
            Decimal(calendar.timegm((y + 1, 1, 1, 0, 0, 0)))
    mo = int(month)
    if day is None:
        nxt = (y + 1, 1) if mo == 12 else (y, mo + 1)
        return Decimal(calendar.timegm((y, mo, 1, 0, 0, 0))), \
            Decimal(calendar.timegm((*nxt, 1, 0, 0, 0)))
    start = calendar.timegm((y, mo, int(day), 0, 0, 0))
    if hour is None:
        return Decimal(start), Decimal(start + 86400)
    offset = 0
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    low = Decimal(start + int(hour) * 3600 + int(minute) * 60 + int(second or 0) - offset)
    if second is None:
        return low, low + 60
    if frac:
        return low + Decimal(frac), low + Decimal(frac) + Decimal(10) ** -(len(frac) - 1)
    return low, low + 1


def ranges(node: Any) -> Iterator[tuple[Decimal, Decimal]]:
    if isinstance(node, str):
        yield date_range(node)
    elif isinstance(node, dict) and ("start" in node or "end" in node):  # Period: open ends
        low = date_range(node["start"])[0] if "start" in node else -INF
        high = date_range(node["end"])[1] if "end" in node else INF
        yield low, high


_REF = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.*)?")


def references(node: Any) -> Iterator[tuple[str, str]]:
    """(type, id) of each literal relative reference (contained and logical ones are not)."""
    if isinstance(node, dict) and isinstance(node.get("reference"), str):
        m = _REF.fullmatch(node["reference"])
        if m:
            yield m.group(1), m.group(2)


# ---------------------------------------------------------------- values of a search


def split_or(text: str) -> list[str]:
    """Comma-separated values; `\\,` `\\|` `\\$` `\\\\` keep the character (escaped)."""
    out, cur, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ",|$\\":
            cur += text[i:i + 2]
            i += 2
        elif text[i] == ",":
            out.append(cur)
            cur, i = "", i + 1
        else:
            cur, i = cur + text[i], i + 1
    return [*out, cur]


def unescape(text: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", text)


def split_pipe(text: str) -> list[str]:
    return [unescape(p) for p in re.split(r"(?<!\\)\|", text)]


def _date_matches(prefix: str, t: tuple[Decimal, Decimal], v: tuple[Decimal, Decimal]) -> bool:
    (lo, hi), (vlo, vhi) = t, v
    contained = lo >= vlo and hi <= vhi
    return {
        "eq": contained,
        "ne": not contained,
        "gt": hi > vhi,
        "lt": lo < vlo,
        "ge": hi > vhi or contained,
        "le": lo < vlo or contained,
        "sa": lo >= vhi,
        "eb": hi <= vlo,
    }[prefix]


PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")


class Oracle:
    """Evaluates searches over `resources` (every resource the searches may touch)."""

    def __init__(self, resources: list[Resource]) -> None:
        self.by_type: dict[str, list[Resource]] = {}
        self.by_key: dict[tuple[str, str], Resource] = {}
        for r in resources:
            self.by_type.setdefault(r["resourceType"], []).append(r)
            self.by_key[(r["resourceType"], r["id"])] = r

    def param(self, type_: str, name: str) -> Param:
        sp = PARAMS.get(type_, {}).get(name)
        if sp is None:
            raise Unsupported(f"{type_}.{name}")
        return sp

    def nodes(self, resource: Resource, sp: Param) -> list[Any]:
        return [n for path in sp.paths for n in elements(resource, path)]

    def refs(self, resource: Resource, sp: Param) -> list[tuple[str, str]]:
        out = [r for n in self.nodes(resource, sp) for r in references(n)]
        return [r for r in out if sp.only is None or r[0] == sp.only]

    # -- one search

    def search(self, type_: str, params: list[tuple[str, str]]) -> set[str]:
        return {r["id"] for r in self.by_type.get(type_, [])
                if all(self.test(r, name, value) for name, value in params)}

    def test(self, resource: Resource, name: str, value: str) -> bool:
        """Does `resource` meet one `name=value` (value: comma-separated alternatives)?"""
        type_ = resource["resourceType"]
        if name.startswith("_has:"):
            _, source, ref_param, rest = name.split(":", 3)
            sp = self.param(source, ref_param)
            me = (type_, resource["id"])
            return any(me in self.refs(other, sp) and self.test(other, rest, value)
                       for other in self.by_type.get(source, []))
        head, dot, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        if dot:  # a chain: some resource `code` points at meets `rest=value`
            sp = self.param(type_, code)
            if sp.type != "reference":
                raise Unsupported(name)
            for ref in self.refs(resource, sp):
                target = self.by_key.get(ref)
                if target is not None and (not modifier or ref[0] == modifier) \
                        and self.test(target, rest, value):
                    return True
            return False
        if code == "_id":
            return resource["id"] in [unescape(v) for v in split_or(value)]
        sp = self.param(type_, code)
        if modifier == "missing":
            # A reference parameter has a value when there is a reference to match: a Reference
            # with only a display or identifier, or one to a #contained resource, has none.
            present = bool(self.refs(resource, sp) if sp.type == "reference"
                           else self.nodes(resource, sp))
            return present != (value == "true")
        alternatives = split_or(value)
        if sp.type == "token":
            pairs = [p for n in self.nodes(resource, sp) for p in tokens(n)]
            hit = any(self._token(pairs, v) for v in alternatives)
            if modifier == "not":
                return not hit
            if modifier:
                raise Unsupported(name)
            return hit
        if sp.type == "string":
            texts = [s for n in self.nodes(resource, sp) for s in strings(n)]
            return any(self._string(texts, unescape(v), modifier) for v in alternatives)
        if sp.type == "date":
            if modifier:
                raise Unsupported(name)
            spans = [s for n in self.nodes(resource, sp) for s in ranges(n)]
            return any(self._date(spans, v) for v in alternatives)
        if sp.type == "reference":
            refs = self.refs(resource, sp)
            return any(self._reference(refs, unescape(v), modifier) for v in alternatives)
        raise Unsupported(name)

    @staticmethod
    def _token(pairs: list[tuple[str | None, str]], value: str) -> bool:
        parts = split_pipe(value)
        if len(parts) == 1:
            return any(code == parts[0] for _, code in pairs)
        system, code = parts[0], "|".join(parts[1:])
        if not system:
            return any(s is None and c == code for s, c in pairs)
        if not code:
            return any(s == system for s, _ in pairs)
        return any(s == system and c == code for s, c in pairs)

    @staticmethod
    def _string(texts: list[str], value: str, modifier: str) -> bool:
        if modifier == "exact":
            return value in texts
        if modifier == "contains":
            return any(fold(value) in fold(t) for t in texts)
        if modifier:
            raise Unsupported(modifier)
        return any(fold(t).startswith(fold(value)) for t in texts)

    @staticmethod
    def _date(spans: list[tuple[Decimal, Decimal]], value: str) -> bool:
        prefix = value[:2] if value[:2] in PREFIXES else "eq"
        text = value[2:] if value[:2] in PREFIXES else value
        wanted = date_range(text)
        return any(_date_matches(prefix, span, wanted) for span in spans)

    @staticmethod
    def _reference(refs: list[tuple[str, str]], value: str, modifier: str) -> bool:
        if "/" in value:
            kind, _, id_ = value.partition("/")
            return (kind, id_) in refs and (not modifier or kind == modifier)
        return any(i == value and (not modifier or t == modifier) for t, i in refs)
