"""Generated input through the HTTP API (issue 18): valid resources of several shapes,
mutated by Hypothesis (a primitive of the wrong JSON type, a code outside its required
binding, an empty object or array, a null, a bad reference, an unknown element, deep
nesting, free text, a dropped element), each PUT to a fresh id. Whatever is sent:

- the answer is never a 5xx;
- a mutation that makes the resource invalid is refused (4xx) and nothing is stored;
- a refused resource is not stored; a stored one reads back as valid FHIR that
  `fhir.resources` parses strictly, with every value of the JSON type its element has
  (the model would otherwise coerce it: "yes" for a boolean) and no empty values.

Deterministic (derandomize) and modest: SQLITE_EXAMPLES on SQLite, POSTGRES_EXAMPLES on
PostgreSQL. Hypothesis runs in a worker thread; each request runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from decimal import Decimal
from typing import Any

import httpx
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir import jsontext
from fhir.rules import MAX_DEPTH

SQLITE_EXAMPLES = 300
POSTGRES_EXAMPLES = 80
XHTML = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Seeded <b>resource</b></p></div>'

SEEDS: list[dict[str, Any]] = [
    {"resourceType": "Patient", "active": True, "gender": "female", "birthDate": "1948-02-29",
     "text": {"status": "generated", "div": XHTML},
     "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
     "name": [{"use": "official", "family": "Lovelace", "given": ["Ada", "Augusta"]}],
     "telecom": [{"system": "phone", "value": "01632 960001", "use": "home", "rank": 1}],
     "address": [{"line": ["1 Analytical Row"], "city": "London", "postalCode": "N1 1AA"}],
     "contained": [{"resourceType": "Organization", "id": "org", "name": "Practice"}],
     "managingOrganization": {"reference": "#org"},
     "generalPractitioner": [{"reference": "Practitioner/gp-1"}],
     "multipleBirthInteger": 2,
     "extension": [{"url": "http://example.org/fhir/StructureDefinition/pets",
                    "valueInteger": 3}]},
    {"resourceType": "Observation", "status": "final",
     "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                               "observation-category", "code": "vital-signs"}]}],
     "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}],
              "text": "Blood pressure"},
     "subject": {"reference": "Patient/p-1"}, "effectiveDateTime": "2026-11-30T09:15:00Z",
     "component": [
         {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
          "valueQuantity": {"value": 142, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                            "code": "mm[Hg]"}},
         {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
          "valueQuantity": {"value": 88.5, "comparator": "<", "unit": "mmHg"}}],
     "referenceRange": [{"low": {"value": 90}, "high": {"value": 140}, "text": "normal"}]},
    {"resourceType": "QuestionnaireResponse", "status": "completed",
     "questionnaire": "http://example.org/Questionnaire/frailty",
     "subject": {"reference": "Patient/p-1"}, "authored": "2026-12-01",
     "item": [{"linkId": "1", "text": "Mobility", "item": [
         {"linkId": "1.1", "answer": [{"valueBoolean": False}]},
         {"linkId": "1.2", "answer": [{"valueInteger": 4}, {"valueDecimal": 2.50}]},
         {"linkId": "1.3", "answer": [{"valueCoding": {"system": "http://snomed.info/sct",
                                                       "code": "248171000"}}]}]}]},
    {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
     "medicationCodeableConcept": {"text": "Amlodipine 5 mg tablets"},
     "subject": {"reference": "Patient/p-1"},
     "dosageInstruction": [{"text": "One daily", "timing": {"repeat": {
         "frequency": 1, "period": 1, "periodUnit": "d"}},
         "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}]},
]
# Codes of the required bindings the seeds use (https://hl7.org/fhir/R4/valueset-*.html).
BOUND: dict[str, set[str]] = {
    "gender": {"male", "female", "other", "unknown"},
    "status": {"final", "completed", "active", "generated", "registered", "preliminary",
               "amended", "corrected", "cancelled", "entered-in-error", "unknown",
               "in-progress", "stopped", "on-hold", "draft", "extensions",
               "additional", "empty"},
    "use": {"official", "home", "usual", "temp", "nickname", "anonymous", "old", "maiden",
            "work", "mobile", "billing"},
    "comparator": {"<", "<=", ">=", ">"},
    "intent": {"proposal", "plan", "order", "original-order", "reflex-order", "filler-order",
               "instance-order", "option"},
    "periodUnit": {"s", "min", "h", "d", "wk", "mo", "a"},
}
BAD_REFERENCES = ["Foo/1", "Patient/", "../../x", "#missing", "Patient/a b", "/Patient/1",
                  "Patient?identifier=x", "patient/1", "Patient/1/_history/", "http//x"]

Path = tuple[Any, ...]


def paths(value: Any, prefix: Path = ()) -> list[tuple[Path, Any]]:
    """Every (path, node) below the root, leaves and containers alike."""
    out: list[tuple[Path, Any]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        path = (*prefix, key)
        out.append((path, item))
        if isinstance(item, (dict, list)):
            out += paths(item, path)
    return out


def put_at(resource: dict[str, Any], path: Path, new: Any) -> None:
    node: Any = resource
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def nested_extensions(depth: int) -> list[dict[str, Any]]:
    ext: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "leaf"}
    for _ in range(depth - 1):
        ext = {"url": "http://example.org/branch", "extension": [ext]}
    return [ext]


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


LEAF_VALUES = st.one_of(st.booleans(), st.integers(-10**6, 10**6),
                        st.decimals(-1000, 1000, places=2), st.text(max_size=8),
                        st.just({}), st.just([]), st.just({"value": "x"}), st.just([1]))
FREE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], str, bool]:
    """(a mutated seed, what was done, whether the result must be refused)."""
    resource = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    nodes = [(p, v) for p, v in paths(resource) if p[0] not in ("resourceType", "id")]
    leaves = [(p, v) for p, v in nodes if not isinstance(v, (dict, list))]
    how = draw(st.sampled_from(["retype", "code", "empty", "null", "reference", "unknown",
                                "deep", "text", "drop"]))
    if how == "retype":
        path, old = draw(st.sampled_from(leaves))
        new = draw(LEAF_VALUES.filter(lambda v: kind(v) != kind(old)))
        put_at(resource, path, new)
        return resource, f"{path} = {new!r} (was {old!r})", True
    if how == "code":
        coded = [(p, v) for p, v in leaves if p[-1] in BOUND]
        path, old = draw(st.sampled_from(coded))
        new = draw(st.text(max_size=12).filter(lambda v: v not in BOUND[path[-1]]))
        put_at(resource, path, new)
        return resource, f"{path} = {new!r}", True
    if how == "empty":
        path, old = draw(st.sampled_from([(p, v) for p, v in nodes
                                          if isinstance(v, (dict, list))]))
        put_at(resource, path, {} if isinstance(old, dict) else [])
        return resource, f"{path} emptied", True
    if how == "null":
        path, _ = draw(st.sampled_from(nodes))
        put_at(resource, path, None)
        return resource, f"{path} = null", True
    if how == "reference":
        refs = [(p, v) for p, v in leaves if p[-1] == "reference"]
        path, _ = draw(st.sampled_from(refs))
        new = draw(st.sampled_from(BAD_REFERENCES))
        put_at(resource, path, new)
        return resource, f"{path} = {new!r}", True
    if how == "unknown":
        containers = [((), resource)] + [(p, v) for p, v in nodes if isinstance(v, dict)]
        path, node = draw(st.sampled_from(containers))
        name = draw(st.from_regex(r"\Azz[a-z]{1,8}\Z"))
        node[name] = draw(LEAF_VALUES)
        return resource, f"{path}.{name} added", True
    if how == "deep":
        depth = draw(st.integers(1, 90))
        resource["extension"] = nested_extensions(depth)
        return resource, f"extensions nested {depth} deep", depth_of(resource) > MAX_DEPTH
    if how == "text":
        texts = [(p, v) for p, v in leaves if p[-1] in ("text", "family", "city", "line", 0)
                 and isinstance(v, str) and "div" not in p]
        path, _ = draw(st.sampled_from(texts))
        new = draw(FREE_TEXT)
        put_at(resource, path, new)
        return resource, f"{path} = {new!r}", False
    path, _ = draw(st.sampled_from(nodes))
    node: Any = resource
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return resource, f"{path} dropped", False


def shape(value: Any) -> Any:
    """The JSON kinds of a value's leaves, in its structure."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return kind(value)


def has_empty(value: Any) -> bool:
    if isinstance(value, dict):
        return not value or any(has_empty(v) for v in value.values())
    if isinstance(value, list):
        return not value or any(has_empty(v) for v in value)
    return value is None or value == ""


def read_strictly(text: str) -> None:
    """What a strict client does with a stored resource: parse it with the model (strict),
    and find every value of the JSON type its element has (no coercion) and none empty."""
    stored = json.loads(text, parse_float=Decimal)
    model = get_fhir_model_class(stored["resourceType"])
    parsed = model.model_validate_json(text, strict=True)
    again = json.loads(parsed.model_dump_json(by_alias=True, exclude_none=True),
                       parse_float=Decimal)
    assert shape(stored) == shape(again), (stored, again)
    assert not has_empty(stored), stored


_ids = itertools.count()


async def test_generated_resources_never_5xx_and_only_valid_is_stored(
        client: httpx.AsyncClient, database_url: str, tag: str) -> None:
    loop = asyncio.get_running_loop()
    examples = POSTGRES_EXAMPLES if database_url.startswith("postgres") else SQLITE_EXAMPLES

    async def attempt(resource: dict[str, Any], what: str, invalid: bool) -> None:
        type_, id_ = resource["resourceType"], f"gen-{tag}-{next(_ids)}"
        resource["id"] = id_
        r = await client.put(f"/{type_}/{id_}", content=jsontext.dumps(resource),
                             headers={"Content-Type": "application/fhir+json"})
        assert r.status_code < 500, (what, r.status_code, r.text[:500])
        read = await client.get(f"/{type_}/{id_}")
        if r.status_code >= 400:
            assert r.json()["resourceType"] == "OperationOutcome", (what, r.text[:300])
            assert read.status_code == 404, (what, read.text[:300])
            return
        assert not invalid, (what, "was stored", r.text[:500])
        assert read.status_code == 200, (what, read.text[:300])
        read_strictly(read.text)

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(mutated())
    def run(case: tuple[dict[str, Any], str, bool]) -> None:
        asyncio.run_coroutine_threadsafe(attempt(*case), loop).result(timeout=120)

    await loop.run_in_executor(None, run)


async def test_the_seeds_are_valid_and_read_back_strictly(client: httpx.AsyncClient,
                                                          tag: str) -> None:
    """The generator starts from valid FHIR: each seed is stored and reads back strictly."""
    for i, seed in enumerate(SEEDS):
        body = dict(copy.deepcopy(seed), id=f"seed-{tag}-{i}")
        r = await client.put(f"/{seed['resourceType']}/{body['id']}", json=body)
        assert r.status_code == 201, r.text
        read_strictly((await client.get(f"/{seed['resourceType']}/{body['id']}")).text)

