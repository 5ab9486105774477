"""The FHIR R4 search language over HTTP, on SQLite and PostgreSQL
(https://hl7.org/fhir/R4/search.html).

Each data set below is written once per backend, marked with its own meta.tag and searched only
within it (`_tag=urn:lang|<tag>`), so every expected answer is worked out by hand from the data
here, never by asking the server. Dates are worked out as [low, high) ranges in UTC; the
comments next to each data set give those ranges.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.api.support import BASE, create, link, outcome, pages, search_ids

Data = dict[str, Any]
TAG_SYSTEM = "urn:lang"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SUBSETTED = "SUBSETTED"


def tagged(tag: str, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}}


async def make(client: httpx.AsyncClient, tag: str, specs: dict[str, dict[str, Any]]) -> Data:
    """Create each spec (in order) under `tag`; the keys name them in expectations."""
    ids = {}
    for key, body in specs.items():
        ids[key] = (await create(client, tagged(tag, body)))["id"]
    return {"tag": tag, "ids": ids, "scope": [("_tag", f"{TAG_SYSTEM}|{tag}")]}


async def found(client: httpx.AsyncClient, type_: str, data: Data,
                *params: tuple[str, str]) -> set[str]:
    """Keys of `data` a scoped search finds, over all pages."""
    ids = await search_ids(client, type_, [*data["scope"], *params])
    back = {v: k for k, v in data["ids"].items()}
    assert all(i in back for i in ids), f"found something outside the data set: {ids}"
    return {back[i] for i in ids}


async def ordered(client: httpx.AsyncClient, type_: str, data: Data,
                  *params: tuple[str, str]) -> list[str]:
    """Keys of `data` in the order a scoped search serves them, over all pages."""
    back = {v: k for k, v in data["ids"].items()}
    return [back[i] for i in await search_ids(client, type_, [*data["scope"], *params])]


async def bundle(client: httpx.AsyncClient, type_: str, params: Any,
                 status: int = 200) -> dict[str, Any]:
    r = await client.get(f"/{type_}", params=params)
    assert r.status_code == status, r.text
    return r.json()


def entries(b: dict[str, Any], mode: str | None = None) -> list[dict[str, Any]]:
    return [e for e in b.get("entry", ()) if mode is None or e["search"]["mode"] == mode]


def keys_of(data: Data, b: dict[str, Any], mode: str) -> set[str]:
    back = {v: k for k, v in data["ids"].items()}
    return {back.get(e["resource"]["id"], e["resource"]["id"]) for e in entries(b, mode)}


# ================================================================ dates

# Observation.effective[x], as UTC ranges [low, high):
#   Y   2020                          [2020-01-01, 2021-01-01)
#   M   2020-03                       [2020-03-01, 2020-04-01)
#   D   2020-03-15                    [2020-03-15, 2020-03-16)
#   S   2020-03-15T10:30:00Z          [10:30:00, 10:30:01) on 03-15
#   MS  2020-03-15T10:30:00.250Z      [10:30:00.250, 10:30:00.251)
#   TZ  2020-03-15T23:30:00-05:00     [2020-03-16T04:30:00, +1 s)   (the 16th in UTC)
#   PC  Period 2020-03-10..2020-03-20 [2020-03-10, 2020-03-21)
#   PO  Period from 03-15T12:00:00Z   [2020-03-15T12:00, open)
#   PS  Period until 2019-06          [open, 2019-07-01)
#   FAR 1990-01-01                    [1990-01-01, 1990-01-02)
#   NONE no effective[x]
ALL_DATES = {"Y", "M", "D", "S", "MS", "TZ", "PC", "PO", "PS", "FAR"}


@pytest.fixture(scope="module")
async def dates(client: httpx.AsyncClient) -> Data:
    def obs(**effective: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "status": "final", "code": {"text": "dates"},
                **effective}

    return await make(client, uuid.uuid4().hex[:12], {
        "Y": obs(effectiveDateTime="2020"),
        "M": obs(effectiveDateTime="2020-03"),
        "D": obs(effectiveDateTime="2020-03-15"),
        "S": obs(effectiveDateTime="2020-03-15T10:30:00Z"),
        "MS": obs(effectiveInstant="2020-03-15T10:30:00.250Z"),
        "TZ": obs(effectiveDateTime="2020-03-15T23:30:00-05:00"),
        "PC": obs(effectivePeriod={"start": "2020-03-10", "end": "2020-03-20"}),
        "PO": obs(effectivePeriod={"start": "2020-03-15T12:00:00Z"}),
        "PS": obs(effectivePeriod={"end": "2019-06"}),
        "FAR": obs(effectiveDateTime="1990-01-01"),
        "NONE": obs(),
    })


DATE_CASES = [
    # a year
    ("2020", "Y M D S MS TZ PC"),
    ("eq2020", "Y M D S MS TZ PC"),
    ("ne2020", "PO PS FAR"),
    ("gt2020", "PO"),  # only an open end reaches past 2020
    ("lt2020", "PS FAR"),
    ("ge2020", "Y M D S MS TZ PC PO"),
    ("le2020", "Y M D S MS TZ PC PS FAR"),
    ("sa2020", ""),
    ("eb2020", "PS FAR"),
    # a day: TZ is the 15th locally but the 16th in UTC
    ("2020-03-15", "D S MS"),
    ("ne2020-03-15", "Y M TZ PC PO PS FAR"),
    ("gt2020-03-15", "Y M TZ PC PO"),
    ("lt2020-03-15", "Y M PC PS FAR"),
    ("ge2020-03-15", "Y M TZ PC PO D S MS"),
    ("le2020-03-15", "Y M PC PS FAR D S MS"),
    ("sa2020-03-15", "TZ"),
    ("eb2020-03-15", "PS FAR"),
    # a second
    ("2020-03-15T10:30:00Z", "S MS"),
    ("ne2020-03-15T10:30:00Z", "Y M D TZ PC PO PS FAR"),
    ("gt2020-03-15T10:30:00Z", "Y M D TZ PC PO"),
    ("lt2020-03-15T10:30:00Z", "Y M D PC PS FAR"),
    ("ge2020-03-15T10:30:00Z", "Y M D TZ PC PO S MS"),
    ("le2020-03-15T10:30:00Z", "Y M D PC PS FAR S MS"),
    ("sa2020-03-15T10:30:00Z", "TZ PO"),
    ("eb2020-03-15T10:30:00Z", "PS FAR"),
    # a millisecond, a minute
    ("2020-03-15T10:30:00.250Z", "MS"),
    ("gt2020-03-15T10:30:00.250Z", "Y M D S TZ PC PO"),
    ("lt2020-03-15T10:30:00.250Z", "Y M D S PC PS FAR"),
    ("2020-03-15T10:30Z", "S MS"),
    # time zones: one instant, four spellings
    ("2020-03-15T23:30:00-05:00", "TZ"),
    ("2020-03-16T04:30:00Z", "TZ"),
    ("2020-03-16T05:30:00+01:00", "TZ"),
    ("2020-03-16", "TZ"),
    ("2020-03-15T11:30+01:00", "S MS"),  # the minute 10:30 UTC
    # a month; Periods with open ends
    ("2020-03", "M D S MS TZ PC"),
    ("gt2100", "PO"),
    ("ge2100", "PO"),
    ("lt1900", "PS"),
    ("le1900", "PS"),
    ("sa2100", ""),
    ("eb1900", ""),
    ("ne2100", " ".join(sorted(ALL_DATES))),
    ("eb2019-07-01", "PS FAR"),  # PS ends exactly where the day starts
    ("sa2020-03-14", "D S MS TZ PO"),
    ("eq2020-03-10", ""),  # PC goes on past the day
    ("ge2020-03-10", "Y M D S MS TZ PC PO"),
    # OR
    ("1990,2019", "FAR"),
    ("1990,2020-03-15", "FAR D S MS"),
]


@pytest.mark.parametrize(("value", "expected"), DATE_CASES)
async def test_date_prefixes_and_precision(client: httpx.AsyncClient, dates: Data, value: str,
                                           expected: str) -> None:
    assert await found(client, "Observation", dates, ("date", value)) == set(expected.split())


async def test_date_and_missing(client: httpx.AsyncClient, dates: Data) -> None:
    # AND by repetition: each condition on its own (a range: ge the day and lt the next)
    assert await found(client, "Observation", dates, ("date", "ge2020-03-15"),
                       ("date", "lt2020-03-16")) == {"Y", "M", "PC", "PO", "D", "S", "MS"}
    assert await found(client, "Observation", dates, ("date:missing", "true")) == {"NONE"}
    assert await found(client, "Observation", dates, ("date:missing", "false")) == ALL_DATES


async def test_date_approximately(client: httpx.AsyncClient, dates: Data) -> None:
    # ap is the server's judgement (search.html#prefix); what overlaps the day must match and
    # 1990 is 30 years away.
    got = await found(client, "Observation", dates, ("date", "ap2020-03-15"))
    assert {"Y", "M", "D", "S", "MS", "TZ", "PC", "PO"} <= got
    assert "FAR" not in got and "NONE" not in got


@pytest.mark.parametrize("value", ["2020-13", "2020-02-30", "2020-03-15T25:00:00Z",
                                   "2020-03-15T10:30:00+25:00", "15/03/2020", "gt", "ge-",
                                   "zz2020", "2020-3-5", "today"])
async def test_malformed_dates_are_400(client: httpx.AsyncClient, value: str) -> None:
    outcome(await client.get("/Observation", params={"date": value}), 400, "date")


# ================================================================ numbers and quantities

# RiskAssessment.prediction.probabilityDecimal
NUMBERS = {"a": 0.0015, "b": 0.25, "c": 0.5, "d": 0.75, "e": 1, "f": 100}


@pytest.fixture(scope="module")
async def numbers(client: httpx.AsyncClient) -> Data:
    pid = (await create(client, {"resourceType": "Patient"}))["id"]

    def risk(p: float | None) -> dict[str, Any]:
        body: dict[str, Any] = {"resourceType": "RiskAssessment", "status": "final",
                                "subject": {"reference": f"Patient/{pid}"}}
        if p is not None:
            body["prediction"] = [{"probabilityDecimal": p}]
        return body

    specs = {k: risk(v) for k, v in NUMBERS.items()}
    specs["g"] = risk(None)
    return await make(client, uuid.uuid4().hex[:12], specs)


NUMBER_CASES = [
    ("0.5", "c"),            # [0.45, 0.55)
    ("0.50", "c"),           # [0.495, 0.505)
    ("1", "c d e"),          # [0.5, 1.5): the implied precision of "1"
    ("1.0", "e"),            # [0.95, 1.05)
    ("100", "f"),
    ("1e2", "f"),
    ("5e-1", "c"),           # one significant figure of 0.5: [0.45, 0.55), not [0, 1)
    ("2.5E-1", "b"),         # [0.245, 0.255)
    ("1.5e-3", "a"),         # [0.00145, 0.00155)
    ("ne0.5", "a b d e f"),
    ("ne1", "a b f"),
    ("gt0.5", "d e f"),
    ("lt0.5", "a b"),
    ("ge0.5", "c d e f"),
    ("le0.5", "a b c"),
    ("sa0.5", "d e f"),
    ("eb0.5", "a b"),
    ("ap0.5", "c"),          # within 10%
    ("ap1", "e"),
    ("ap100", "f"),
    ("0.25,100", "b f"),
]


@pytest.mark.parametrize(("value", "expected"), NUMBER_CASES)
async def test_number_prefixes(client: httpx.AsyncClient, numbers: Data, value: str,
                               expected: str) -> None:
    assert await found(client, "RiskAssessment", numbers, ("probability", value)) == \
        set(expected.split())


async def test_number_and_missing(client: httpx.AsyncClient, numbers: Data) -> None:
    assert await found(client, "RiskAssessment", numbers, ("probability", "gt0.2"),
                       ("probability", "lt0.9")) == {"b", "c", "d"}
    assert await found(client, "RiskAssessment", numbers, ("probability:missing", "true")) \
        == {"g"}
    assert await found(client, "RiskAssessment", numbers,
                       ("probability:missing", "false")) == set(NUMBERS)
    for bad in ("abc", "1_0", "\u0661", "0x10", "nan", "1e999", "0e99999", " 1"):
        outcome(await client.get("/RiskAssessment", params={"probability": bad}), 400,
                "probability")


@pytest.fixture(scope="module")
async def quantities(client: httpx.AsyncClient) -> Data:
    def obs(value: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "status": "final", "code": {"text": "q"},
                **value}

    return await make(client, uuid.uuid4().hex[:12], {
        "q1": obs({"valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": UCUM,
                                     "code": "mmol/L"}}),
        "q2": obs({"valueQuantity": {"value": 7, "unit": "mmol/L", "system": UCUM,
                                     "code": "mmol/L"}}),
        "q3": obs({"valueQuantity": {"value": 5.4, "unit": "mg", "system": UCUM, "code": "mg"}}),
        "q4": obs({"valueQuantity": {"value": 120, "unit": "mmHg", "system": UCUM,
                                     "code": "mm[Hg]"}}),
        "q5": obs({"valueString": "no number"}),
    })


QUANTITY_CASES = [
    (f"5.4|{UCUM}|mmol/L", "q1"),
    (f"ne5.4|{UCUM}|mmol/L", "q2"),
    ("gt5.4||mmol/L", "q2"),
    ("lt7||mmol/L", "q1"),
    ("ge5.4", "q1 q2 q3 q4"),
    ("le5.4", "q1 q3"),
    ("sa6", "q2 q4"),
    ("eb6", "q1 q3"),
    ("ap5", "q1 q3"),       # [4.5, 5.5]
    ("ap120", "q4"),
    ("120||mmHg", "q4"),    # the unit
    ("120||mm[Hg]", "q4"),  # or the code
    (f"120|{UCUM}|mm[Hg]", "q4"),
    (f"120|{UCUM}|mmHg", ""),  # with a system, the code
    ("5.4,120", "q1 q3 q4"),
]


@pytest.mark.parametrize(("value", "expected"), QUANTITY_CASES)
async def test_quantity_prefixes(client: httpx.AsyncClient, quantities: Data, value: str,
                                 expected: str) -> None:
    assert await found(client, "Observation", quantities, ("value-quantity", value)) == \
        set(expected.split())


async def test_quantity_missing(client: httpx.AsyncClient, quantities: Data) -> None:
    assert await found(client, "Observation", quantities,
                       ("value-quantity:missing", "true")) == {"q5"}


# ================================================================ tokens


@pytest.fixture(scope="module")
async def codes(client: httpx.AsyncClient) -> Data:
    def obs(status: str, code: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "status": status, "code": code, **extra}

    lab = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory"}]}]
    return await make(client, uuid.uuid4().hex[:12], {
        "t1": obs("final", {"coding": [{"system": LOINC, "code": "1234-5",
                                        "display": "Glucose Blood"}],
                            "text": "Glucose [Moles/volume] in Blood"}, category=lab),
        "t2": obs("amended", {"coding": [{"system": "http://snomed.info/sct",
                                          "code": "1234-5"}], "text": "Ärzte Überweisung"}),
        "t3": obs("final", {"coding": [{"system": "urn:pipe|sys", "code": "a|b"}],
                            "text": "pipe"}),
        "t4": obs("preliminary", {"coding": [{"code": "x,y"}]}),
        "t5": obs("final", {"text": "Free text only"}),
        "t6": obs("final", {"coding": [{"system": "urn:dollar", "code": "c$d\\e"}]}),
    })


TOKEN_CASES = [
    ("code", "1234-5", "t1 t2"),                        # code in any system
    ("code", f"{LOINC}|1234-5", "t1"),                  # system|code
    ("code", f"{LOINC}|", "t1"),                        # system|: any code of the system
    ("code", "|x\\,y", "t4"),                           # |code: no system; \, escapes
    ("code", "x\\,y", "t4"),
    ("code", "x,y", ""),                                # two values, x and y
    ("code", "urn:pipe\\|sys|a\\|b", "t3"),             # \| inside system and code
    ("code", "a\\|b", "t3"),
    ("code", "urn:dollar|c\\$d\\\\e", "t6"),            # \$ and \\
    ("code", "urn:dollar|c$d\\e", "t6"),                # unescaped $ and \ are plain
    ("code", "1234-5,a\\|b", "t1 t2 t3"),               # OR
    ("code:not", f"{LOINC}|1234-5", "t2 t3 t4 t5 t6"),
    ("code:not", "1234-5,a\\|b", "t4 t5 t6"),
    ("code:text", "glucose", "t1"),                     # display or text, case-insensitive
    ("code:text", "GLUCOSE [moles", "t1"),
    ("code:text", "ärzte", "t2"),
    ("code:text", "ÄRZTE", "t2"),
    ("code:text", "free text", "t5"),
    ("code:text", "blood", ""),                          # starts-with, not contains
    ("code:missing", "false", "t1 t2 t3 t4 t5 t6"),
    ("category:missing", "true", "t2 t3 t4 t5 t6"),
    ("category:missing", "false", "t1"),
    ("status", "final,amended", "t1 t2 t3 t5 t6"),
    ("status:not", "final", "t2 t4"),
]


@pytest.mark.parametrize(("name", "value", "expected"), TOKEN_CASES)
async def test_token_forms_and_modifiers(client: httpx.AsyncClient, codes: Data, name: str,
                                         value: str, expected: str) -> None:
    assert await found(client, "Observation", codes, (name, value)) == set(expected.split())


async def test_token_and(client: httpx.AsyncClient, codes: Data) -> None:
    assert await found(client, "Observation", codes, ("status", "final"),
                       ("code", "1234-5")) == {"t1"}
    assert await found(client, "Observation", codes, ("code:not", "1234-5"),
                       ("code:not", "a\\|b")) == {"t4", "t5", "t6"}


@pytest.mark.parametrize("modifier", ["above", "below", "in", "not-in"])
async def test_token_hierarchy_modifiers_are_a_clear_400(client: httpx.AsyncClient,
                                                          modifier: str) -> None:
    body = outcome(await client.get("/Observation", params={f"code:{modifier}": "1234-5"}),
                   400, f":{modifier}", "code")
    assert "terminology" in body["issue"][0]["diagnostics"]


# ================================================================ strings


@pytest.fixture(scope="module")
async def names(client: httpx.AsyncClient) -> Data:
    def person(family: str | None, *given: str) -> dict[str, Any]:
        name: dict[str, Any] = {"given": list(given) or ["X"]}
        if family is not None:
            name["family"] = family
        return {"resourceType": "Patient", "name": [name]}

    return await make(client, uuid.uuid4().hex[:12], {
        "mueller": person("Müller", "Zoë"),
        "mullerton": person("Mullerton", "Bob"),
        "obrien": person("O'Brien-Smith"),
        "percent": person("50%_off"),
        "slash": person("Back\\slash"),
        "comma": person("Comma, Jr"),
        "dollar": person("Dollar$Sign|Pipe"),
        "nofamily": person(None, "Only"),
    })


STRING_CASES = [
    ("family", "muller", "mueller mullerton"),     # starts-with, accents and case ignored
    ("family", "MÜLL", "mueller mullerton"),
    ("family", "uller", ""),
    ("family:exact", "Müller", "mueller"),
    ("family:exact", "müller", ""),
    ("family:exact", "Mull", ""),
    ("family:contains", "ULLER", "mueller mullerton"),
    ("family:contains", "brien", "obrien"),
    ("family", "o'b", "obrien"),
    ("given", "zoe", "mueller"),
    ("name", "bob", "mullerton"),                  # name covers given names
    ("name:contains", "ob", "mullerton"),          # not O'Brien: the ' is kept
    # LIKE's wildcards are plain characters
    ("family", "50%", "percent"),
    ("family", "5_", ""),
    ("family", "%", ""),
    ("family:contains", "%_o", "percent"),
    ("family:contains", "_", "percent"),
    ("family:contains", "%", "percent"),
    ("family:contains", "0%_", "percent"),
    ("family:contains", "0_%", ""),
    # escapes: \\ \, \$ \|
    ("family", "back\\\\slash", "slash"),
    ("family", "back\\slash", "slash"),            # a lone backslash is itself
    ("family:exact", "Comma\\, Jr", "comma"),
    ("family:exact", "Comma, Jr", ""),             # two values: "Comma" and " Jr"
    ("family", "comma\\,", "comma"),
    ("family:exact", "Dollar\\$Sign\\|Pipe", "dollar"),
    ("family:exact", "Dollar$Sign|Pipe", "dollar"),
    ("family:missing", "true", "nofamily"),
    ("family", "smith,dollar", "dollar"),          # OR (obrien's family starts with O')
]


@pytest.mark.parametrize(("name", "value", "expected"), STRING_CASES)
async def test_string_modifiers_and_escapes(client: httpx.AsyncClient, names: Data, name: str,
                                            value: str, expected: str) -> None:
    assert await found(client, "Patient", names, (name, value)) == set(expected.split())


async def test_string_and_and_bad_modifiers(client: httpx.AsyncClient, names: Data) -> None:
    assert await found(client, "Patient", names, ("family", "mull"),
                       ("given", "bob")) == {"mullerton"}
    assert await found(client, "Patient", names, ("family:missing", "false"),
                       ("family:contains", "er")) == {"mueller", "mullerton"}
    for modifier in ("text", "below", "not", "Patient"):
        outcome(await client.get("/Patient", params={f"family:{modifier}": "x"}), 400,
                "family", f":{modifier}")


# ================================================================ uri


@pytest.fixture(scope="module")
async def uris(client: httpx.AsyncClient) -> Data:
    tag = uuid.uuid4().hex[:12]
    base = f"http://ex.org/fhir/ValueSet/{tag}"

    def vs(url: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"resourceType": "ValueSet", "status": "active"}
        if url:
            body["url"] = url
        return body

    data = await make(client, tag, {
        "u1": vs(base), "u2": vs(f"{base}/child"), "u3": vs(f"http://ex.org/{tag}/a_b"),
        "u4": vs(None),
    })
    data["base"] = base
    return data


async def test_uri_exact_above_below_missing(client: httpx.AsyncClient, uris: Data) -> None:
    base, tag = uris["base"], uris["tag"]
    cases = [
        ("url", base, {"u1"}),
        ("url", f"{base}/chi", set()),
        ("url:below", base, {"u1", "u2"}),
        ("url:below", f"{base}/", {"u2"}),
        ("url:below", base.upper(), set()),              # URIs are case-sensitive
        ("url:below", f"HTTP://EX.ORG/fhir/ValueSet/{tag}", set()),
        ("url:below", f"http://ex.org/{tag}/a%", set()),  # % is a character
        ("url:above", f"{base}/child/grandchild", {"u1", "u2"}),
        ("url:above", f"{base}/child", {"u1", "u2"}),
        ("url:above", base, {"u1"}),
        ("url:above", f"http://ex.org/{tag}/a_b/c", {"u3"}),
        ("url:above", f"http://ex.org/{tag}/aXb/c", set()),  # a stored _ is no wildcard
        ("url:above", f"HTTP://EX.ORG/fhir/ValueSet/{tag}/child", set()),
        ("url:missing", "true", {"u4"}),
        ("url", f"{base},http://ex.org/{tag}/a_b", {"u1", "u3"}),
    ]
    for name, value, expected in cases:
        assert await found(client, "ValueSet", uris, (name, value)) == expected, (name, value)


# ================================================================ references, chains, _has,
#                                                                  _include, _revinclude

# O0 <-partof- O1;  O2
# Pr1 (female, Docname), Pr2 (male, Nurse)
# P1 Alpha: gp Pr1, org O1, female;  P2 Beta: gp O2, org O2, male;  P3 Gamma: gp Pr2, link P1
# G1 a Group;  E1 Encounter of P1 at O1 (finished)
# Ob1 1111-1 of P1, encounter E1, performer Pr1        Ob2 2222-2 of P2, performer Pr2,
# Ob3 1111-1 of G1 (preliminary)                            hasMember Ob1
# Ob4 3333-3 of P3, derivedFrom Ob2


@pytest.fixture(scope="module")
async def graph(client: httpx.AsyncClient) -> Data:
    tag = uuid.uuid4().hex[:12]
    ids: dict[str, str] = {}

    async def add(key: str, body: dict[str, Any]) -> None:
        ids[key] = (await create(client, tagged(tag, body)))["id"]

    def ref(key: str, type_: str) -> dict[str, str]:
        return {"reference": f"{type_}/{ids[key]}"}

    await add("O0", {"resourceType": "Organization", "name": f"Parent{tag}"})
    await add("O1", {"resourceType": "Organization", "name": f"Orgname{tag}",
                     "partOf": ref("O0", "Organization")})
    await add("O2", {"resourceType": "Organization", "name": f"Other{tag}"})
    await add("Pr1", {"resourceType": "Practitioner", "gender": "female",
                      "name": [{"family": f"Docname{tag}"}]})
    await add("Pr2", {"resourceType": "Practitioner", "gender": "male",
                      "name": [{"family": f"Nurse{tag}"}]})
    await add("P1", {"resourceType": "Patient", "gender": "female",
                     "name": [{"family": f"Alpha{tag}"}],
                     "generalPractitioner": [ref("Pr1", "Practitioner")],
                     "managingOrganization": ref("O1", "Organization")})
    await add("P2", {"resourceType": "Patient", "gender": "male",
                     "name": [{"family": f"Beta{tag}"}],
                     "generalPractitioner": [ref("O2", "Organization")],
                     "managingOrganization": ref("O2", "Organization")})
    await add("P3", {"resourceType": "Patient", "gender": "other",
                     "name": [{"family": f"Gamma{tag}"}],
                     "generalPractitioner": [ref("Pr2", "Practitioner")],
                     "link": [{"other": ref("P1", "Patient"), "type": "seealso"}]})
    await add("G1", {"resourceType": "Group", "type": "person", "actual": True})
    await add("E1", {"resourceType": "Encounter", "status": "finished",
                     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                               "code": "AMB"},
                     "subject": ref("P1", "Patient"),
                     "serviceProvider": ref("O1", "Organization")})

    def obs(code: str, status: str = "final", **extra: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "status": status,
                "code": {"coding": [{"system": LOINC, "code": code}]}, **extra}

    await add("Ob1", obs("1111-1", subject=ref("P1", "Patient"), encounter=ref("E1", "Encounter"),
                         performer=[ref("Pr1", "Practitioner")]))
    await add("Ob2", obs("2222-2", subject=ref("P2", "Patient"),
                         performer=[ref("Pr2", "Practitioner")],
                         hasMember=[ref("Ob1", "Observation")]))
    await add("Ob3", obs("1111-1", "preliminary", subject=ref("G1", "Group")))
    await add("Ob4", obs("3333-3", subject=ref("P3", "Patient"),
                         derivedFrom=[ref("Ob2", "Observation")]))
    return {"tag": tag, "ids": ids, "scope": [("_tag", f"{TAG_SYSTEM}|{tag}")]}


async def test_reference_forms(client: httpx.AsyncClient, graph: Data) -> None:
    ids = graph["ids"]
    p1, g1 = ids["P1"], ids["G1"]
    cases = [
        ("subject", f"Patient/{p1}", {"Ob1"}),
        ("subject", p1, {"Ob1"}),
        ("subject:Patient", p1, {"Ob1"}),
        ("subject:Group", p1, set()),
        ("subject", f"Group/{g1}", {"Ob3"}),
        ("patient", g1, set()),  # `patient` only follows Patient references
        ("subject", f"Patient/{p1},Group/{g1}", {"Ob1", "Ob3"}),
        ("encounter:missing", "true", {"Ob2", "Ob3", "Ob4"}),
        ("has-member:missing", "false", {"Ob2"}),
    ]
    for name, value, expected in cases:
        assert await found(client, "Observation", graph, (name, value)) == expected, (name, value)


async def test_chains(client: httpx.AsyncClient, graph: Data) -> None:
    tag, ids = graph["tag"], graph["ids"]
    cases = [
        ("subject:Patient.general-practitioner:Practitioner.name", f"Docname{tag}", {"Ob1"}),
        ("subject:Patient.general-practitioner:Practitioner.family", f"Nurse{tag}", {"Ob4"}),
        # without a type, every target type that has the parameter (here Organization.name)
        ("subject:Patient.general-practitioner.name", f"Other{tag}", {"Ob2"}),
        ("patient.organization.name", f"Orgname{tag}", {"Ob1"}),
        ("patient.organization.partof.name", f"Parent{tag}", {"Ob1"}),
        ("encounter.service-provider.partof.name", f"parent{tag}", {"Ob1"}),
        ("encounter.patient.general-practitioner:Practitioner.gender", "female", {"Ob1"}),
        ("subject:Patient.link:Patient.family", f"Alpha{tag}", {"Ob4"}),
        ("subject:Patient.gender", "male", {"Ob2"}),
        ("subject:Patient.gender", "male,female", {"Ob1", "Ob2"}),
        ("subject:Patient._id", ids["P1"], {"Ob1"}),
        ("subject:Group._id", ids["G1"], {"Ob3"}),
        ("has-member.code", "1111-1", {"Ob2"}),
        ("derived-from.has-member.subject:Patient.family", f"Alpha{tag}", {"Ob4"}),
        # some Practitioner gp whose gender is not female (P2's gp is an Organization)
        ("patient.general-practitioner:Practitioner.gender:not", "female", {"Ob4"}),
    ]
    for name, value, expected in cases:
        assert await found(client, "Observation", graph, (name, value)) == expected, (name, value)
    # AND of two chains: each holds (on the same patient here)
    assert await found(client, "Observation", graph, ("patient.gender", "female"),
                       ("patient.family", f"alpha{tag}")) == {"Ob1"}
    assert await found(client, "Observation", graph, ("patient.gender", "female"),
                       ("patient.family", f"beta{tag}")) == set()


async def test_chain_errors(client: httpx.AsyncClient) -> None:
    for name, text in [("code.name", "code"), ("subject:Basic.name", "Basic"),
                       ("subject:Patient.nonexistent", "nonexistent"),
                       ("patient.gender.name", "gender"),
                       ("subject.nonexistent", "nonexistent")]:
        outcome(await client.get("/Observation", params={name: "x"}), 400, text)


async def test_reverse_chains(client: httpx.AsyncClient, graph: Data) -> None:
    tag = graph["tag"]
    cases = [
        ("Patient", "_has:Observation:patient:code", "1111-1", {"P1"}),  # Ob3 is of a Group
        ("Patient", "_has:Observation:subject:code", f"{LOINC}|2222-2", {"P2"}),
        ("Patient", "_has:Observation:patient:status", "final", {"P1", "P2", "P3"}),
        ("Patient", "_has:Observation:patient:code", "1111-1,3333-3", {"P1", "P3"}),
        ("Patient", "_has:Observation:patient:code:not", "1111-1", {"P2", "P3"}),
        ("Patient", "_has:Observation:patient:performer:Practitioner.family",
         f"Docname{tag}", {"P1"}),                                      # a chain inside
        ("Group", "_has:Observation:subject:status", "preliminary", {"G1"}),
        ("Practitioner", "_has:Patient:general-practitioner:_has:Observation:patient:code",
         "3333-3", {"Pr2"}),                                            # nested
        ("Organization", "_has:Patient:organization:_has:Observation:patient:code", "1111-1",
         {"O1"}),
        ("Organization", "_has:Organization:partof:_has:Patient:organization:family",
         f"Alpha{tag}", {"O0"}),
        ("Organization",
         "_has:Organization:partof:_has:Patient:organization:_has:Observation:patient:code",
         "1111-1", {"O0"}),                                             # three deep
        ("Observation", "_has:Observation:has-member:status", "final", {"Ob1"}),
        ("Encounter", "_has:Observation:encounter:performer", f"Practitioner/{graph['ids']['Pr1']}",
         {"E1"}),
    ]
    for type_, name, value, expected in cases:
        assert await found(client, type_, graph, (name, value)) == expected, (type_, name)
    assert await found(client, "Patient", graph, ("_has:Observation:patient:code", "1111-1"),
                       ("_has:Encounter:patient:status", "finished")) == {"P1"}
    assert await found(client, "Patient", graph, ("_has:Observation:patient:code", "2222-2"),
                       ("_has:Encounter:patient:status", "finished")) == set()


async def test_reverse_chain_errors(client: httpx.AsyncClient) -> None:
    for name, text in [("_has:Observation:code:status", "code"),
                       ("_has:Observation:patient", "_has"),
                       ("_has:Nope:patient:code", "Nope"),
                       ("_has:Observation:encounter:status", "encounter"),
                       ("_has:Observation:patient:nonexistent", "nonexistent")]:
        outcome(await client.get("/Patient", params={name: "x"}), 400, text)


async def test_include(client: httpx.AsyncClient, graph: Data) -> None:
    ids, scope = graph["ids"], graph["scope"]

    async def included(type_: str, *params: tuple[str, str]) -> tuple[set[str], set[str]]:
        b = await bundle(client, type_, [*scope, *params])
        kinds = [e["search"]["mode"] for e in b.get("entry", ())]
        assert kinds == sorted(kinds, key=lambda m: m != "match"), "matches come first"
        seen = [e["fullUrl"] for e in b.get("entry", ())]
        assert len(seen) == len(set(seen)), "each resource once"
        for e in b.get("entry", ()):
            r = e["resource"]
            assert e["fullUrl"] == f"{BASE}/{r['resourceType']}/{r['id']}"
        if any(m == "include" for m in kinds):
            assert b.get("total") in (None, len(entries(b, "match"))), "includes are not counted"
        return keys_of(graph, b, "match"), keys_of(graph, b, "include")

    assert await included("Observation", ("code", "1111-1"),
                          ("_include", "Observation:subject")) == ({"Ob1", "Ob3"}, {"P1", "G1"})
    assert await included("Observation", ("code", "1111-1"),
                          ("_include", "Observation:subject:Patient")) == ({"Ob1", "Ob3"}, {"P1"})
    assert await included("Observation", ("_id", f"{ids['Ob1']},{ids['Ob2']}"),
                          ("_include", "Observation:patient"),
                          ("_include:iterate", "Patient:general-practitioner")) == \
        ({"Ob1", "Ob2"}, {"P1", "P2", "Pr1", "O2"})
    # without :iterate an include from a type that is not searched is refused
    outcome(await client.get("/Observation", params=[("_include", "Observation:patient"),
                                                     ("_include", "Patient:organization")]),
            400, "_include", "iterate")
    assert await included("Observation", ("_id", ids["Ob1"]), ("_include", "*")) == \
        ({"Ob1"}, {"P1", "E1", "Pr1"})
    # :iterate=* follows every reference of everything included, until nothing is new
    assert await included("Observation", ("_id", ids["Ob1"]), ("_include:iterate", "*")) == \
        ({"Ob1"}, {"P1", "E1", "Pr1", "O1", "O0"})
    # a match that is also referenced is served once, as a match
    assert await included("Observation", ("_id", f"{ids['Ob1']},{ids['Ob2']}"),
                          ("_include", "Observation:has-member")) == ({"Ob1", "Ob2"}, set())
    assert await included("Patient", ("_id", f"{ids['P1']},{ids['P2']}"),
                          ("_revinclude", "Observation:subject")) == \
        ({"P1", "P2"}, {"Ob1", "Ob2"})
    assert await included("Patient", ("_id", ids["P1"]), ("_revinclude", "Observation:patient"),
                          ("_revinclude:iterate", "Observation:has-member")) == \
        ({"P1"}, {"Ob1", "Ob2"})
    assert await included("Patient", ("_id", ids["P1"]), ("_revinclude", "Observation:patient"),
                          ("_revinclude", "Observation:has-member")) == ({"P1"}, {"Ob1"})
    assert await included("Patient", ("_id", ids["P1"]), ("_revinclude", "Encounter:patient"),
                          ("_include", "Patient:organization")) == ({"P1"}, {"E1", "O1"})
    assert await included("Patient", ("_id", ids["P3"]), ("_include", "Patient:link"),
                          ("_include:iterate", "Patient:organization")) == ({"P3"}, {"P1", "O1"})
    # includes come with each page, for that page's matches
    got = await pages(client, "/Observation", [*scope, ("code", "1111-1"), ("_sort", "_id"),
                                               ("_count", "1"),
                                               ("_include", "Observation:subject")])
    firsts = sorted([ids["Ob1"], ids["Ob3"]])
    subject_of = {ids["Ob1"]: ids["P1"], ids["Ob3"]: ids["G1"]}
    assert [[e["resource"]["id"] for e in p["entry"]] for p in got] == \
        [[m, subject_of[m]] for m in firsts]
    for name, value in [("_include", "Observation"), ("_include", "Observation:code"),
                        ("_include", "Nope:subject"), ("_include", "Observation:subject:Nope"),
                        ("_include:recurse:x", "Observation:subject"),
                        ("_revinclude", "Observation:nonexistent")]:
        outcome(await client.get("/Observation", params={name: value}), 400)


# ================================================================ _sort and paging

#       family   birthdate     gender    creation order a..f
#   a   baker    1980-05-01    male
#   b   adams    1975          female
#   c   clark    1980-05-01    female
#   d   adams    -             male
#   e   -        1990-01-01    -
#   f   davis    1975-06       unknown


@pytest.fixture(scope="module")
async def people(client: httpx.AsyncClient) -> Data:
    def person(family: str | None, birth: str | None, gender: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"resourceType": "Patient", "name": [{"given": ["X"]}]}
        if family:
            body["name"][0]["family"] = family
        if birth:
            body["birthDate"] = birth
        if gender:
            body["gender"] = gender
        return body

    return await make(client, uuid.uuid4().hex[:12], {
        "a": person("baker", "1980-05-01", "male"),
        "b": person("adams", "1975", "female"),
        "c": person("clark", "1980-05-01", "female"),
        "d": person("adams", None, "male"),
        "e": person(None, "1990-01-01", None),
        "f": person("davis", "1975-06", "unknown"),
    })


SORT_CASES = [
    ("family", "b d a c f e"),            # ties (adams) by creation; missing last
    ("-family", "f c a b d e"),           # missing last descending too
    ("birthdate", "b f a c e d"),         # by the start of each range
    ("-birthdate", "e a c b f d"),        # by the end: 1975 ends after 1975-06
    ("gender", "b c a d f e"),
    ("gender,-birthdate", "c b a d f e"),
    ("-gender,family", "f d a b c e"),
    ("_lastUpdated", "a b c d e f"),
    ("-_lastUpdated", "f e d c b a"),
]


@pytest.mark.parametrize(("sort", "expected"), SORT_CASES)
async def test_sort_and_page_through(client: httpx.AsyncClient, people: Data, sort: str,
                                     expected: str) -> None:
    want = expected.split()
    for count in ("1", "2", "4", "20"):
        got = await pages(client, "/Patient", [*people["scope"], ("_sort", sort),
                                               ("_count", count)])
        back = {v: k for k, v in people["ids"].items()}
        served = [back[e["resource"]["id"]] for p in got for e in p.get("entry", ())]
        assert served == want, (sort, count)
        assert len(got) == -(-len(want) // int(count))  # no empty last page
        for page in got:
            self_link = link(page, "self")
            assert ("_sort", sort) in parse_qsl(urlsplit(self_link).query)
            assert len(page.get("entry", ())) <= int(count)
        assert link(got[-1], "next") is None


async def test_sort_by_id_number_and_date_ranges(client: httpx.AsyncClient, people: Data,
                                                 numbers: Data, dates: Data) -> None:
    by_id = sorted(people["ids"], key=lambda k: people["ids"][k])
    assert await ordered(client, "Patient", people, ("_sort", "_id"), ("_count", "4")) == by_id
    assert await ordered(client, "Patient", people, ("_sort", "-_id"), ("_count", "4")) == \
        by_id[::-1]
    # adams (b, d) tie on family; then by _id, descending
    bd = sorted(["b", "d"], key=lambda k: people["ids"][k], reverse=True)
    assert await ordered(client, "Patient", people, ("_sort", "family,-_id"),
                         ("_count", "3")) == [*bd, "a", "c", "f", "e"]
    assert await ordered(client, "RiskAssessment", numbers, ("_sort", "probability"),
                         ("_count", "2")) == ["a", "b", "c", "d", "e", "f", "g"]
    assert await ordered(client, "RiskAssessment", numbers, ("_sort", "-probability"),
                         ("_count", "2")) == ["f", "e", "d", "c", "b", "a", "g"]
    # Periods: ascending by start (an open start first), descending by end (an open end first)
    assert await ordered(client, "Observation", dates, ("_sort", "date"), ("_count", "3")) == \
        ["PS", "FAR", "Y", "M", "PC", "D", "S", "MS", "PO", "TZ", "NONE"]
    assert await ordered(client, "Observation", dates, ("_sort", "-date"), ("_count", "3")) == \
        ["PO", "Y", "M", "PC", "TZ", "D", "S", "MS", "PS", "FAR", "NONE"]
    for bad in ("nonexistent", "-", "family,,", ",".join(["family"] * 6), "name:exact"):
        outcome(await client.get("/Patient", params={"_sort": bad}), 400, "_sort")


async def test_count_and_total(client: httpx.AsyncClient, people: Data) -> None:
    scope = people["scope"]
    b = await bundle(client, "Patient", [*scope, ("_count", "2")])
    assert len(b["entry"]) == 2 and link(b, "next")
    # _total: none never counts, estimate and accurate count every page
    for total, want in (("none", None), ("estimate", 6), ("accurate", 6)):
        got = await pages(client, "/Patient", [*scope, ("_count", "2"), ("_total", total)])
        assert [p.get("total") for p in got] == [want] * 3, total
    b = await bundle(client, "Patient", [*scope, ("_count", "0")])
    assert b["total"] == 6 and "entry" not in b
    b = await bundle(client, "Patient", [*scope, ("_count", "1000000")])
    assert len(b["entry"]) == 6
    assert ("_count", "1000") in parse_qsl(urlsplit(link(b, "self")).query)  # bounded
    for bad in ("-1", "1.5", "ten", "", "1e3"):
        outcome(await client.get("/Patient", params={"_count": bad}), 400, "_count")
    outcome(await client.get("/Patient", params={"_total": "some"}), 400, "_total")


# ================================================================ _summary and _elements


@pytest.fixture(scope="module")
async def summaries(client: httpx.AsyncClient) -> Data:
    return await make(client, uuid.uuid4().hex[:12], {
        "p": {"resourceType": "Patient", "active": True, "gender": "female",
              "birthDate": "1970-01-01", "name": [{"family": "Summary"}],
              "text": {"status": "generated",
                       "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ms Summary</div>'},
              "maritalStatus": {"text": "married"},
              "communication": [{"language": {"text": "English"}}],
              "contact": [{"name": {"family": "Kin"}}]},
    })


def _subsetted(resource: dict[str, Any]) -> bool:
    return any(t.get("code") == SUBSETTED for t in resource.get("meta", {}).get("tag", ()))


async def test_summary(client: httpx.AsyncClient, summaries: Data) -> None:
    scope = summaries["scope"]

    async def one(**params: str) -> dict[str, Any]:
        b = await bundle(client, "Patient", [*scope, *params.items()])
        assert len(b["entry"]) == 1
        return b["entry"][0]["resource"]

    full = await one()
    assert {"text", "contact", "maritalStatus", "communication"} <= set(full)
    assert not _subsetted(full)
    assert await one(_summary="false") == full

    summary = await one(_summary="true")
    assert set(summary) == {"resourceType", "id", "meta", "active", "gender", "birthDate",
                            "name"}
    assert _subsetted(summary)

    text = await one(_summary="text")
    assert set(text) == {"resourceType", "id", "meta", "text"} and _subsetted(text)

    data = await one(_summary="data")
    assert set(data) == set(full) - {"text"} and _subsetted(data)

    b = await bundle(client, "Patient", [*scope, ("_summary", "count")])
    assert b["total"] == 1 and "entry" not in b

    elements = await one(_elements="gender,birthDate")
    assert set(elements) == {"resourceType", "id", "meta", "gender", "birthDate"}
    assert _subsetted(elements)
    # the tag is added to the resource's own tags, which stay
    assert {"system": TAG_SYSTEM, "code": summaries["tag"]} in elements["meta"]["tag"]
    outcome(await client.get("/Patient", params={"_summary": "maybe"}), 400, "_summary")


async def test_summary_keeps_mandatory_elements(client: httpx.AsyncClient, codes: Data) -> None:
    b = await bundle(client, "Observation", [*codes["scope"], ("_id", codes["ids"]["t1"]),
                                             ("_summary", "text")])
    assert {"status", "code"} <= set(b["entry"][0]["resource"])
    b = await bundle(client, "Observation", [*codes["scope"], ("_id", codes["ids"]["t1"]),
                                             ("_elements", "category")])
    kept = set(b["entry"][0]["resource"])
    assert "category" in kept and "text" not in kept
    assert kept <= {"resourceType", "id", "meta", "category", "status", "code"}


# ================================================================ POST, lenient, errors


async def test_post_search_pages_like_get(client: httpx.AsyncClient, graph: Data) -> None:
    tag = graph["tag"]
    form = {"_tag": f"{TAG_SYSTEM}|{tag}", "patient.gender": "female,male",
            "_sort": "-_id", "_count": "1", "_include": "Observation:patient"}
    r = await client.post("/Observation/_search", data=form)
    assert r.status_code == 200, r.text
    first = r.json()
    want = sorted([graph["ids"]["Ob1"], graph["ids"]["Ob2"]], reverse=True)
    assert [e["resource"]["id"] for e in entries(first, "match")] == want[:1]
    nxt = link(first, "next")
    assert nxt and nxt.startswith(f"{BASE}/Observation?")
    rest = await pages(client, nxt)
    assert [e["resource"]["id"] for p in rest for e in entries(p, "match")] == want[1:]
    assert [len(entries(p, "include")) for p in [first, *rest]] == [1, 1]


async def test_lenient_drops_unknown_parameters(client: httpx.AsyncClient,
                                                people: Data) -> None:
    params = [*people["scope"], ("gender", "male"), ("favourite-colour", "blue"),
              ("_unknown", "1"), ("_sort", "family")]
    for prefer in (None, "handling=strict"):
        headers = {"Prefer": prefer} if prefer else {}
        outcome(await client.get("/Patient", params=params, headers=headers), 400,
                "favourite-colour")
    r = await client.get("/Patient", params=params, headers={"Prefer": "handling=lenient"})
    assert r.status_code == 200, r.text
    back = {v: k for k, v in people["ids"].items()}
    assert [back[e["resource"]["id"]] for e in r.json()["entry"]] == ["d", "a"]
    names = [k for k, _ in parse_qsl(urlsplit(link(r.json(), "self")).query)]
    assert "favourite-colour" not in names and "_unknown" not in names
    assert {"_tag", "gender", "_sort"} <= set(names)


@pytest.mark.parametrize(("type_", "params", "named"), [
    ("Patient", {"nonsense": "1"}, "nonsense"),
    ("Patient", {"birthdate": "2020-99"}, "birthdate"),
    ("Patient", {"gender:missing": "maybe"}, "gender"),
    ("Patient", {"family": ""}, "family"),
    ("Patient", {"_id:exact": "x"}, "_id"),
    ("Patient", {"_lastUpdated": "yesterday"}, "_lastUpdated"),
    ("Patient", {"general-practitioner": "Practitioner/a/b"}, "general-practitioner"),
    ("Patient", {"_sort": "colour"}, "colour"),
    ("Patient", {"_include": "Patient:colour"}, "colour"),
    ("Observation", {"value-quantity": "x|y"}, "value-quantity"),
    ("Observation", {"value-quantity:exact": "5"}, "value-quantity"),
    ("Observation", {"subject:Patient": "Group/1"}, "subject"),
    ("Observation", {"date:exact": "2020"}, "date"),
    ("Observation", {"_cursor": "!!!"}, "_cursor"),
    ("RiskAssessment", {"probability:contains": "1"}, "probability"),
])
async def test_malformed_is_400_naming_the_parameter(client: httpx.AsyncClient, type_: str,
                                                     params: dict[str, str], named: str) -> None:
    outcome(await client.get(f"/{type_}", params=params), 400, named)


# ================================================================ paging under concurrent writes


def _ids(b: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in b.get("entry", ())]


async def test_keyset_pages_under_writes(client: httpx.AsyncClient, tag: str) -> None:
    """Writes between page fetches: what was there throughout is served once, in order.

    Sorted by family, three a page. Between pages: resources sorting before the cursor are
    created (never served) or after it (served in place); unserved ones are deleted (never
    served); served and unserved ones are updated (served once, the latest version); one row
    ties with the cursor's sort value (served after it: ties go by row order). A resource whose
    sort value moves behind the cursor is not served again (keyset: the page after a cursor is
    what sorts after it now).
    """
    scope = [("_tag", f"{TAG_SYSTEM}|{tag}")]

    async def person(family: str) -> str:
        body = tagged(tag, {"resourceType": "Patient", "name": [{"family": family}]})
        return (await create(client, body))["id"]

    async def update(id_: str, **changes: Any) -> None:
        current = (await client.get(f"/Patient/{id_}")).json()
        r = await client.put(f"/Patient/{id_}", json={**current, **changes})
        assert r.status_code == 200, r.text

    k = {f"k{i:02}": await person(f"k{i:02}") for i in range(10)}
    first = await bundle(client, "Patient", [*scope, ("_sort", "family"), ("_count", "3")])
    assert _ids(first) == [k["k00"], k["k01"], k["k02"]]

    k["k005"] = await person("k005")     # before the cursor (k02): never served
    k["k055"] = await person("k055")     # after it: served in its place
    assert (await client.delete(f"/Patient/{k['k04']}")).status_code in (200, 204)
    await update(k["k06"], active=True)  # unserved, updated: served once, as version 2
    await update(k["k01"], active=True)  # served already: not again
    second = (await client.get(link(first, "next"))).json()
    assert _ids(second) == [k["k03"], k["k05"], k["k055"]]

    k["k025"] = await person("k025")     # before the cursor (k055)
    k["k055b"] = await person("k055")    # the cursor's own sort value: after it by row order
    await update(k["k07"], name=[{"family": "k075"}])  # moves, but stays after the cursor
    assert (await client.delete(f"/Patient/{k['k03']}")).status_code in (200, 204)  # served
    third = (await client.get(link(second, "next"))).json()
    assert _ids(third) == [k["k055b"], k["k06"], k["k07"]]
    assert third["entry"][1]["resource"]["meta"]["versionId"] == "2"

    await update(k["k08"], name=[{"family": "k001"}])  # moves behind the cursor: skipped
    last = (await client.get(link(third, "next"))).json()
    assert _ids(last) == [k["k09"]]
    assert link(last, "next") is None


async def test_keyset_pages_under_random_writes(client: httpx.AsyncClient, tag: str) -> None:
    """Many rounds of random creates, deletes and updates between pages of a two-key sort with
    ties: the resources present and unchanged in sort value throughout are each served exactly
    once, in the order worked out here; nothing is served twice or after its deletion."""
    import random
    from datetime import date

    rng = random.Random(20240607)
    scope = [("_tag", f"{TAG_SYSTEM}|{tag}")]
    days = [date(1950, 1, 1), date(1960, 6, 15), date(1960, 6, 16), date(1999, 12, 31)]
    families = ["ash", "birch", "cedar"]

    async def person(born: date | None, family: str) -> str:
        body: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
        if born is not None:
            body["birthDate"] = born.isoformat()
        return (await create(client, tagged(tag, body)))["id"]

    stable: list[tuple[str, date | None, str]] = []
    for _ in range(24):
        born = rng.choice([*days, None])
        family = rng.choice(families)
        stable.append((await person(born, family), born, family))
    # -birthdate (missing last), then family, then creation order
    ranked = sorted(enumerate(stable), key=lambda p: (
        p[1][1] is None, -(p[1][1].toordinal() if p[1][1] else 0), p[1][2], p[0]))
    want = [s[0] for _, s in ranked]

    churn: list[str] = []
    late: str | None = None
    deleted: set[str] = set()
    served: list[str] = []
    b = await bundle(client, "Patient", [*scope, ("_sort", "-birthdate,family"),
                                         ("_count", "5")])
    while True:
        served += _ids(b)
        assert not deleted & set(_ids(b)), "a deleted resource was served"
        nxt = link(b, "next")
        if nxt is None:
            break
        if late is None:  # created after the first page, sorts last: served, at the end
            late = await person(None, "zzz")
        for _ in range(3):
            action = rng.choice(["create", "create", "delete", "update-stable", "update-churn"])
            if action == "create":
                churn.append(await person(rng.choice([*days, None]), rng.choice(families)))
            elif action == "delete" and churn:
                victim = churn.pop(rng.randrange(len(churn)))
                assert (await client.delete(f"/Patient/{victim}")).status_code in (200, 204)
                deleted.add(victim)
            elif action.startswith("update"):
                pool = [s[0] for s in stable] if action == "update-stable" else churn
                if pool:
                    id_ = rng.choice(pool)
                    current = (await client.get(f"/Patient/{id_}")).json()
                    r = await client.put(f"/Patient/{id_}",
                                         json={**current, "active": rng.random() < 0.5})
                    assert r.status_code == 200
        b = (await client.get(nxt)).json()
    assert len(served) == len(set(served)), "a resource was served twice"
    assert [i for i in served if i in set(want)] == want
    assert served[-1] == late
