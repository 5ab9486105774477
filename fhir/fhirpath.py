"""A compiler for the subset of FHIRPath that the R4 SearchParameter expressions use.

The official definitions (https://hl7.org/fhir/R4/searchparameter-registry.html) need only:
paths, unions ``a | b``, type casts ``(x as T)`` / ``x.as(T)`` / ``x.ofType(T)``,
``where(resolve() is T)`` and ``where(field='literal')``. An expression outside the subset
raises `Unsupported`, and the registry leaves that parameter out (and so does the
CapabilityStatement): nothing is advertised that is not indexed.

Evaluation works on parsed JSON. Nodes are ``(value, type)`` pairs; ``type`` is known where a
choice element (``value[x]``) names it in its JSON key, which is all the casts need.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Node = tuple[Any, str | None]
Step = Callable[[list[Node]], list[Node]]


class Unsupported(ValueError):
    """The expression uses FHIRPath outside the supported subset."""


# FHIR data type names that can follow a choice element's name in a JSON key (valueQuantity).
_PRIMITIVES = frozenset(
    "Base64Binary Boolean Canonical Code Date DateTime Decimal Id Instant Integer Markdown Oid "
    "PositiveInt String Time UnsignedInt Uri Url Uuid".split()
)
_CHOICE_TYPES = tuple(sorted(_PRIMITIVES)) + tuple(
    "Address Age Annotation Attachment CodeableConcept Coding ContactPoint Count Distance "
    "Duration HumanName Identifier Money Period Quantity Range Ratio Reference SampledData "
    "Signature Timing ContactDetail Contributor DataRequirement Expression ParameterDefinition "
    "RelatedArtifact TriggerDefinition UsageContext Dosage Meta".split()
)
# The FHIR type name of a JSON key suffix: primitives are lower camel case
# (valueDateTime: dateTime).
_TYPE_OF_SUFFIX = {t: t[0].lower() + t[1:] if t in _PRIMITIVES else t for t in _CHOICE_TYPES}

_TOKEN = re.compile(r"\s*(?:(\()|(\))|(\|)|(\.)|(=)|'((?:[^'\\]|\\.)*)'|([A-Za-z_][A-Za-z0-9_]*))")


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot read FHIRPath at {text[pos:pos + 20]!r}")
        lit = m.group(6)
        out.append("'" + lit if lit is not None else m.group(0).strip())
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


# Every element name declared `[x]` in the R4 resource and data type StructureDefinitions
# (profiles-resources.json, profiles-types.json): only these have typed JSON keys.
_CHOICE_NAMES = frozenset(
    "abatement additive age allowed amount answer asNeeded author born bounds characteristic "
    "chargeItem code collected content created date deceased defaultValue definingSubstance "
    "definition detail diagnosis dose doseNumber due duration effective entity event example "
    "fastingStatus fixed identified indication instances item legallyBinding location "
    "manufacturer maxValue medication minValue minimumVolume module multipleBirth name occurred "
    "occurrence offset onset participantEffective pattern performed probability procedure "
    "product quantity rate reported scheduled seriesDoses serviced source start statusReason "
    "studyEffective subject substance target time timing topic used value when".split()
)


def _children(value: Any, name: str) -> list[Node]:
    if not isinstance(value, dict):
        return []
    found = value.get(name)
    if found is not None:
        return [(v, None) for v in found] if isinstance(found, list) else [(found, None)]
    if name not in _CHOICE_NAMES:
        return []
    size = len(name)
    for key, found in value.items():
        if key.startswith(name) and key[size:] in _TYPE_OF_SUFFIX:
            kind = _TYPE_OF_SUFFIX[key[size:]]
            return [(v, kind) for v in found] if isinstance(found, list) else [(found, kind)]
    return []


def _reference_type(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    if value.get("type"):
        return value["type"]
    ref = value.get("reference")
    if not isinstance(ref, str) or ref.startswith(("#", "urn:")):
        return None
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else None


class _Parser:
    def __init__(self, text: str, resource_type: str | None, *, relative: bool = False) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.resource_type = resource_type
        self.relative = relative

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise Unsupported(f"expected {expected!r}, found {tok!r}")
        self.i += 1
        return tok

    def union(self) -> list[Step]:
        branches = [self.term()]
        while self.peek() == "|":
            self.take("|")
            branches.append(self.term())
        if len(branches) == 1:
            return branches[0]

        def run(nodes: list[Node], branches: list[list[Step]] = branches) -> list[Node]:
            out: list[Node] = []
            for b in branches:
                out.extend(_run(b, nodes))
            return out

        return [run]

    def term(self) -> list[Step]:
        steps: list[Step] = []
        if self.peek() == "(":
            self.take("(")
            steps.extend(self.union())
            if self.peek() == "as":
                self.take("as")
                steps.append(_cast(self.take()))
            self.take(")")
        elif self.relative:  # a path from the node in hand: `code`, `value.as(Quantity)`
            steps.append(self.step())
        else:
            first = self.take()
            if not first[0].isupper():
                raise Unsupported(f"an expression must start at a resource type, not {first!r}")
            steps.append(_type_filter(first))
        while self.peek() == ".":
            self.take(".")
            steps.append(self.step())
        if self.peek() == "as":
            self.take("as")
            steps.append(_cast(self.take()))
        return steps

    def step(self) -> Step:
        name = self.take()
        if self.peek() != "(":
            return _child(name)
        self.take("(")
        if name in ("as", "ofType"):
            step = _cast(self.take())
        elif name == "where":
            step = self.where()
        else:
            raise Unsupported(f"function {name}() is not supported")
        self.take(")")
        return step

    def where(self) -> Step:
        if self.peek() == "resolve":
            self.take("resolve")
            self.take("(")
            self.take(")")
            self.take("is")
            target = self.take()
            return lambda nodes: [n for n in nodes if _reference_type(n[0]) == target]
        field = self.take()
        self.take("=")
        literal = self.take()
        if not literal.startswith("'"):
            raise Unsupported("where() compares with a string literal only")
        want = literal[1:]
        return lambda nodes: [
            n for n in nodes if isinstance(n[0], dict) and n[0].get(field) == want
        ]


def _type_filter(resource_type: str) -> Step:
    if resource_type in ("Resource", "DomainResource"):
        return lambda nodes: nodes
    return lambda nodes: [n for n in nodes if n[0].get("resourceType") == resource_type]


def _child(name: str) -> Step:
    def step(nodes: list[Node]) -> list[Node]:
        if len(nodes) == 1:
            return _children(nodes[0][0], name)
        return [c for v, _ in nodes for c in _children(v, name)]

    return step


def _cast(type_name: str) -> Step:
    # Primitive type names are lower camel case (dateTime), but the definitions also write
    # them as the JSON key suffix does (value.as(DateTime)): both name the same type.
    names = {type_name, _TYPE_OF_SUFFIX.get(type_name[:1].upper() + type_name[1:], type_name)}
    return lambda nodes: [n for n in nodes if n[1] is None or n[1] in names]


def _run(steps: list[Step], nodes: list[Node]) -> list[Node]:
    for step in steps:
        nodes = step(nodes)
        if not nodes:
            break
    return nodes


def compile_path(expression: str) -> Callable[[dict[str, Any]], list[Node]]:
    """Compile `expression`; the result maps a resource (parsed JSON) to its matching nodes."""
    parser = _Parser(expression, None)
    steps = parser.union()
    if parser.peek() is not None:
        raise Unsupported(f"unexpected {parser.peek()!r} in {expression!r}")

    def evaluate(resource: dict[str, Any]) -> list[Node]:
        return _run(steps, [(resource, None)])

    return evaluate


def compile_relative(expression: str) -> Callable[[Node], list[Node]]:
    """Compile a path relative to a node, as a composite parameter's components are written
    (``code``, ``value.as(Quantity) | value.as(Period)``); the result maps a node to its nodes."""
    parser = _Parser(expression, None, relative=True)
    steps = parser.union()
    if parser.peek() is not None:
        raise Unsupported(f"unexpected {parser.peek()!r} in {expression!r}")

    def evaluate(node: Node) -> list[Node]:
        return _run(steps, [node])

    return evaluate
