"""The server's search against an independent evaluator (tests/search_oracle.py), on both backends.

The official R4 examples of a handful of types (npm hl7.fhir.r4.examples 4.0.1, through
tests/r4_examples.py) are PUT under fresh ids (a per-run prefix, references rewritten to match,
a meta.tag to scope every search). Queries are generated from the data itself: every code,
system, string, date and reference present, with the modifiers and all eight date prefixes over
several precisions, chains, `_has` (nested), OR and AND. Each query's answer from the server must
equal the oracle's, which never calls the code under test.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.r4_examples import ROOT, Unavailable, package_dir
from tests.search_oracle import PARAMS, PREFIXES, Oracle, Unsupported, references, strings, tokens

TYPES = ("Patient", "Practitioner", "Organization", "Observation", "Condition", "Encounter",
         "MedicationRequest", "AllergyIntolerance", "Procedure")
TAG_SYSTEM = "urn:oracle"
SAMPLE = 1200  # queries compared per backend (drawn with a fixed seed from all generated)
MIN_COMPARED = 1000
CONCURRENCY = 8
_REF = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})((?:/_history/.*)?)")

Query = tuple[str, tuple[tuple[str, str], ...]]


def _targets() -> dict[tuple[str, str], set[str]]:
    """The target types of each reference parameter, from the official R4 definitions (a chain
    `param:Type.x` names a target type; the examples also point some references elsewhere)."""
    bundle = json.loads((ROOT / "fhir" / "data" / "search-parameters.json").read_text("utf-8"))
    return {(base, e["resource"]["code"]): set(e["resource"].get("target", ()))
            for e in bundle["entry"] for base in e["resource"].get("base", ())}


TARGETS = _targets()


def escape(value: str) -> str:
    """A value as a search writes it: \\ , | $ escaped (https://hl7.org/fhir/R4/search.html#escaping)."""
    return re.sub(r"([\\,|$])", r"\\\1", value)


def _retag(node: Any, prefix: str) -> Any:
    """Every literal reference `Type/id` becomes `Type/prefix-id`."""
    if isinstance(node, list):
        return [_retag(n, prefix) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _retag(v, prefix) for k, v in node.items()}
    ref = node.get("reference")
    if isinstance(ref, str) and (m := _REF.fullmatch(ref)):
        out["reference"] = f"{m.group(1)}/{prefix}-{m.group(2)}{m.group(3)}"
    return out


@pytest.fixture(scope="module")
async def loaded(client: httpx.AsyncClient) -> dict[str, Any]:
    try:
        package = package_dir()
    except Unavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the R4 examples: {exc}")
        pytest.skip(str(exc))
    prefix = uuid.uuid4().hex[:8]
    bodies = []
    for path in sorted(package.glob("*.json")):
        if path.name == "package.json":
            continue
        body = json.loads(path.read_bytes())
        if not isinstance(body, dict) or body.get("resourceType") not in TYPES:
            continue
        if not isinstance(body.get("id"), str) or len(body["id"]) > 55:
            continue
        body = _retag(body, prefix)
        body["id"] = f"{prefix}-{body['id']}"
        meta = dict(body.get("meta") or {})
        meta["tag"] = [*(meta.get("tag") or []), {"system": TAG_SYSTEM, "code": prefix}]
        body["meta"] = meta
        bodies.append(body)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def put(body: dict[str, Any]) -> dict[str, Any] | None:
        async with gate:
            r = await client.put(f"/{body['resourceType']}/{body['id']}", json=body)
        return body if r.status_code in (200, 201) else None

    accepted = [b for b in await asyncio.gather(*(put(b) for b in bodies)) if b]
    assert len(accepted) > 0.9 * len(bodies) > 150, (len(accepted), len(bodies))
    capability = (await client.get("/metadata")).json()
    supported = {r["type"]: {p["name"] for p in r.get("searchParam", ())}
                 for r in capability["rest"][0]["resource"]}
    yield {"prefix": prefix, "resources": accepted, "supported": supported}
    for body in accepted:  # leave the shared database as other tests expect it
        async with gate:
            await client.delete(f"/{body['resourceType']}/{body['id']}")


def _token_queries(code: str, pairs: set[tuple[str | None, str]]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    ordered = sorted(pairs, key=lambda p: (p[0] or "", p[1]))
    for system, value in ordered:
        out.append([(code, escape(value))])
        if system:
            out.append([(code, f"{escape(system)}|{escape(value)}")])
            out.append([(code, f"{escape(system)}|")])
            out.append([(f"{code}:not", f"{escape(system)}|{escape(value)}")])
        else:
            out.append([(code, f"|{escape(value)}")])
            out.append([(f"{code}:not", escape(value))])
    for (_, a), (_, b) in zip(ordered, ordered[1:], strict=False):
        out.append([(code, f"{escape(a)},{escape(b)}")])
    return out


def _string_queries(code: str, texts: set[str]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for text in sorted(t for t in texts if 0 < len(t) <= 100 and t == t.strip()):
        out.append([(code, escape(text))])
        out.append([(code, escape(text[:3].upper()))])
        out.append([(f"{code}:exact", escape(text))])
        out.append([(f"{code}:exact", escape(text.lower()))])
        if len(text) >= 5:
            out.append([(f"{code}:contains", escape(text[1:4]))])
    return out


def _utc(text: str) -> str | None:
    """The same instant written in UTC, when `text` has a zone other than Z."""
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})([+-])(\d{2}):(\d{2})", text)
    if not m:
        return None
    sign = 1 if m.group(5) == "+" else -1
    zone = timezone(sign * timedelta(hours=int(m.group(6)), minutes=int(m.group(7))))
    moment = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}:{m.group(3)}:{m.group(4)}")
    return moment.replace(tzinfo=zone).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _date_queries(code: str, texts: set[str]) -> list[list[tuple[str, str]]]:
    values: set[str] = set()
    for text in texts:
        values.update({text, text[:4]})
        if len(text) >= 7:
            values.add(text[:7])
        if len(text) >= 10:
            values.add(text[:10])
        if (utc := _utc(text)) is not None:
            values.add(utc)
    return [[(code, f"{p}{v}")] for v in sorted(values) for p in PREFIXES]


def generate(oracle: Oracle, supported: dict[str, set[str]]) -> list[Query]:
    """Queries drawn from what the data holds, for every parameter both sides know."""
    out: list[Query] = []
    singles: dict[str, list[list[tuple[str, str]]]] = {}
    for type_, resources in sorted(oracle.by_type.items()):
        mine: list[list[tuple[str, str]]] = []
        for code, sp in sorted(PARAMS[type_].items()):
            if code == "_tag" or code not in supported.get(type_, ()):
                continue
            nodes = [n for r in resources for n in oracle.nodes(r, sp)]
            mine.append([(f"{code}:missing", "true")])
            mine.append([(f"{code}:missing", "false")])
            if sp.type == "token":
                mine += _token_queries(code, {p for n in nodes for p in tokens(n)})
            elif sp.type == "string":
                mine += _string_queries(code, {s for n in nodes for s in strings(n)})
            elif sp.type == "date":
                texts = {n for n in nodes if isinstance(n, str)}
                texts |= {n[k] for n in nodes if isinstance(n, dict) for k in ("start", "end")
                          if k in n}
                mine += _date_queries(code, texts)
            elif sp.type == "reference":
                for kind, id_ in sorted({t for r in resources for t in oracle.refs(r, sp)}):
                    mine.append([(code, f"{kind}/{id_}")])
                    if kind in TARGETS.get((type_, code), ()):  # :Type names a target type
                        mine.append([(f"{code}:{kind}", id_)])
                    mine.append([(code, id_)])
        singles[type_] = mine
        out += [(type_, tuple(q)) for q in mine]
    out += _chains(oracle, supported)
    # AND: two generated conditions on the same type at once.
    rng = random.Random(4)
    for type_, mine in sorted(singles.items()):
        for _ in range(60):
            a, b = rng.choice(mine), rng.choice(mine)
            out.append((type_, tuple(a + b)))
    return list(dict.fromkeys(out))


def _chains(oracle: Oracle, supported: dict[str, set[str]]) -> list[Query]:
    """Chains and reverse chains over the references the data holds."""
    out: list[Query] = []
    probes = {  # a few target parameters per type, with values the data has
        "Patient": ["gender", "birthdate", "family"],
        "Practitioner": ["family", "gender"],
        "Organization": ["name"],
        "Encounter": ["status", "class"],
        "Observation": ["status", "code"],
        "Condition": ["clinical-status", "code"],
    }

    def values(type_: str, code: str) -> list[str]:
        sp = PARAMS[type_][code]
        seen: list[str] = []
        for r in oracle.by_type.get(type_, []):
            for n in oracle.nodes(r, sp):
                if sp.type == "date" and isinstance(n, str):
                    seen += [f"ge{n[:4]}", f"lt{n[:7]}"]
                elif sp.type == "string" and isinstance(n, str):
                    seen.append(escape(n[:4]))
                elif sp.type == "token":
                        seen += [escape(c) for _, c in tokens(n)]
        return sorted(set(seen))[:6]

    def known(type_: str, code: str) -> bool:
        return code in supported.get(type_, ()) and code in PARAMS.get(type_, {})

    for type_ in sorted(oracle.by_type):
        for code, sp in sorted(PARAMS[type_].items()):
            if sp.type != "reference" or not known(type_, code):
                continue
            kinds = sorted({t for r in oracle.by_type[type_] for t, _ in oracle.refs(r, sp)}
                           & TARGETS.get((type_, code), set()))
            for kind in kinds:
                for target_code in probes.get(kind, []):
                    if not known(kind, target_code):
                        continue
                    for v in values(kind, target_code):
                        out.append((type_, ((f"{code}:{kind}.{target_code}", v),)))
                        if sp.only == kind:
                            out.append((type_, ((f"{code}.{target_code}", v),)))
                        # reverse: the targets some `type_` points at with this condition
                    for v in values(type_, probes.get(type_, ["_tag"])[0])[:3] \
                            if type_ in probes and known(type_, probes[type_][0]) else []:
                        out.append((kind, ((f"_has:{type_}:{code}:{probes[type_][0]}", v),)))
    # Two levels of chain, and nested _has.
    for v in ["male", "female", "other", "unknown"]:
        out.append(("Observation", (("patient.general-practitioner:Practitioner.gender", v),)))
        out.append(("Practitioner",
                    (("_has:Patient:general-practitioner:_has:Observation:patient:status",
                      "final"), ("gender", v))))
    for code in sorted({c for r in oracle.by_type.get("Observation", [])
                        for n in oracle.nodes(r, PARAMS["Observation"]["code"])
                        for _, c in tokens(n)})[:15]:
        out.append(("Patient", (("_has:Observation:patient:code", escape(code)),)))
        out.append(("Organization", (("_has:Patient:organization:_has:Observation:patient:code",
                                      escape(code)),)))
        out.append(("Practitioner", (("_has:Patient:general-practitioner:_has:Observation:"
                                      "subject:code", escape(code)),)))
    for name in sorted({n[:3] for r in oracle.by_type.get("Organization", [])
                        for n in oracle.nodes(r, PARAMS["Organization"]["name"])
                        if isinstance(n, str)}):
        out.append(("Observation", (("patient.organization.name", escape(name)),)))
        out.append(("Encounter", (("subject:Patient.organization.name", escape(name)),)))
    return out


def _refs_all(resources: list[dict[str, Any]]) -> int:
    count = 0

    def walk(node: Any) -> None:
        nonlocal count
        if isinstance(node, dict):
            count += len(list(references(node)))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for r in resources:
        walk(r)
    return count


async def test_server_agrees_with_the_oracle(client: httpx.AsyncClient,
                                             loaded: dict[str, Any]) -> None:
    oracle = Oracle(loaded["resources"])
    assert _refs_all(loaded["resources"]) > 200  # the data is linked: chains mean something
    queries = generate(oracle, loaded["supported"])

    def is_linked(q: Query) -> bool:
        return any("." in n or n.startswith("_has:") for n, _ in q[1])

    # a fixed draw: a quarter chains and reverse chains, the rest everything else
    linked = [q for q in queries if is_linked(q)]
    others = [q for q in queries if not is_linked(q)]
    rng = random.Random(8)
    linked = rng.sample(linked, min(len(linked), SAMPLE // 4))
    sample = linked + rng.sample(others, min(len(others), SAMPLE - len(linked)))
    scope = ("_tag", f"{TAG_SYSTEM}|{loaded['prefix']}")
    gate = asyncio.Semaphore(CONCURRENCY)
    failures: list[str] = []
    kinds: Counter[str] = Counter()
    nonempty = 0

    async def compare(type_: str, params: tuple[tuple[str, str], ...]) -> None:
        nonlocal nonempty
        try:
            want = oracle.search(type_, list(params))
        except Unsupported:
            kinds["unsupported by the oracle"] += 1
            return
        async with gate:
            r = await client.get(f"/{type_}", params=[scope, *params, ("_count", "1000"),
                                                      ("_total", "accurate")])
        if r.status_code != 200:
            failures.append(f"{type_}?{params}: {r.status_code} {r.text[:200]}")
            return
        bundle = r.json()
        got = {e["resource"]["id"] for e in bundle.get("entry", ())}
        if got != want or bundle["total"] != len(want):
            failures.append(f"{type_}?{params}: server {sorted(got - want)} extra, "
                            f"{sorted(want - got)} missing (total {bundle['total']})")
        kinds["compared"] += 1
        nonempty += bool(want)
        name = params[0][0]
        kinds["chain" if "." in name and not name.startswith("_has") else
              "_has" if name.startswith("_has") else
              "AND" if len(params) > 1 else "single"] += 1

    await asyncio.gather(*(compare(t, p) for t, p in sample))
    shown = "\n  ".join(failures[:30])
    assert not failures, f"{len(failures)} of {len(sample)} queries disagree:\n  {shown}"
    # Not vacuous: many queries, most of them finding something, of every kind.
    assert kinds["compared"] >= MIN_COMPARED, kinds
    assert nonempty >= 0.4 * kinds["compared"], (nonempty, kinds)
    assert kinds["compared"] - nonempty >= 0.05 * kinds["compared"], (nonempty, kinds)
    assert min(kinds["chain"], kinds["_has"], kinds["AND"]) >= 20, kinds
    assert len(queries) >= SAMPLE, len(queries)
