"""Search basics over HTTP (https://hl7.org/fhir/R4/search.html): every parameter type,
modifiers and prefixes, AND/OR, escaping, paging, POST _search, strict and lenient handling.

Each module fixture writes its own small data set marked with a fresh tag and every search is
scoped to it, so the expected answers are worked out by hand from the data below.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.api.support import BASE, TEST_SYSTEM, create, link, outcome, pages, patient, search_ids

Data = dict[str, Any]


async def found(client: httpx.AsyncClient, type_: str, scope: list[tuple[str, str]],
                *params: tuple[str, str]) -> set[str]:
    ids = await search_ids(client, type_, [*scope, *params])
    return set(ids)


# ---------------------------------------------------------------- Patients


@pytest.fixture(scope="module")
async def people(client: httpx.AsyncClient) -> Data:
    tag = uuid.uuid4().hex[:12]

    def person(key: str, **extra: Any) -> dict[str, Any]:
        ids = [{"system": "urn:test", "value": tag}] + extra.pop("more_ids", [])
        return {"resourceType": "Patient", "identifier": ids, **extra}

    specs = {
        # identifiers, gender, names and birth dates, each chosen for the cases below
        "mueller": person("mueller", gender="female", birthDate="1940-05-02", active=True,
                          more_ids=[{"system": "urn:mrn", "value": f"A-{tag}"}],
                          name=[{"family": "Müller", "given": ["Zoë"]}]),
        "mullerton": person("mullerton", gender="male", birthDate="1940", active=False,
                            more_ids=[{"value": f"B-{tag}"}],
                            name=[{"family": "Mullerton", "given": ["Bob"]}]),
        "smith": person("smith", birthDate="1941-01-01",
                        more_ids=[{"system": "urn:other", "value": f"A-{tag}"}],
                        name=[{"family": "Smith-Muller", "given": ["Cat"]}]),
        "older": person("older", gender="female", birthDate="1939-12-31",
                        more_ids=[{"system": "urn:mrn", "value": f"{tag},x"}],
                        name=[{"family": "O'Brien", "given": ["Dee"]}]),
    }
    ids = {key: (await create(client, body))["id"] for key, body in specs.items()}
    return {"tag": tag, "ids": ids, "scope": [("identifier", f"urn:test|{tag}")]}


def who(people: Data, *keys: str) -> set[str]:
    return {people["ids"][k] for k in keys}


async def test_token_system_and_code(client: httpx.AsyncClient, people: Data) -> None:
    tag = people["tag"]
    assert await found(client, "Patient", [], ("identifier", f"urn:mrn|A-{tag}")) == \
        who(people, "mueller")
    # code alone: any system
    assert await found(client, "Patient", [], ("identifier", f"A-{tag}")) == \
        who(people, "mueller", "smith")
    # |code: no system
    assert await found(client, "Patient", [], ("identifier", f"|B-{tag}")) == \
        who(people, "mullerton")
    assert await found(client, "Patient", [], ("identifier", f"|A-{tag}")) == set()
    # system|: any code in that system
    assert await found(client, "Patient", people["scope"], ("identifier", "urn:other|")) == \
        who(people, "smith")
    # codes are case-sensitive
    assert await found(client, "Patient", [], ("identifier", f"urn:mrn|a-{tag}")) == set()


async def test_token_code_and_boolean(client: httpx.AsyncClient, people: Data) -> None:
    scope = people["scope"]
    assert await found(client, "Patient", scope, ("gender", "female")) == \
        who(people, "mueller", "older")
    assert await found(client, "Patient", scope, ("active", "true")) == who(people, "mueller")
    assert await found(client, "Patient", scope, ("active", "false")) == who(people, "mullerton")


async def test_token_not(client: httpx.AsyncClient, people: Data) -> None:
    # :not also finds the resources without any gender
    assert await found(client, "Patient", people["scope"], ("gender:not", "female")) == \
        who(people, "mullerton", "smith")
    assert await found(client, "Patient", people["scope"], ("gender:not", "female,male")) == \
        who(people, "smith")


async def test_string_default_is_starts_with_ignoring_case_and_accents(
        client: httpx.AsyncClient, people: Data) -> None:
    scope = people["scope"]
    for value in ("muller", "MÜLLER", "Mull", "müll"):
        assert await found(client, "Patient", scope, ("family", value)) == \
            who(people, "mueller", "mullerton"), value
    assert await found(client, "Patient", scope, ("family", "uller")) == set()
    # name covers given names too
    assert await found(client, "Patient", scope, ("name", "zoe")) == who(people, "mueller")
    assert await found(client, "Patient", scope, ("given", "ZO")) == who(people, "mueller")
    assert await found(client, "Patient", scope, ("family", "o'b")) == who(people, "older")


async def test_string_exact_and_contains(client: httpx.AsyncClient, people: Data) -> None:
    scope = people["scope"]
    assert await found(client, "Patient", scope, ("family:exact", "Müller")) == \
        who(people, "mueller")
    assert await found(client, "Patient", scope, ("family:exact", "muller")) == set()
    assert await found(client, "Patient", scope, ("family:exact", "Mull")) == set()
    assert await found(client, "Patient", scope, ("family:contains", "ULLER")) == \
        who(people, "mueller", "mullerton", "smith")
    assert await found(client, "Patient", scope, ("name:contains", "ob")) == \
        who(people, "mullerton")  # Bob


@pytest.mark.parametrize(("value", "expected"), [
    ("1940", {"mueller", "mullerton"}),  # a day in 1940 is in 1940
    ("eq1940", {"mueller", "mullerton"}),
    ("1940-05", {"mueller"}),
    ("1940-05-02", {"mueller"}),  # "1940" (a whole year) is not within the day
    ("ge1940-05-02", {"mueller", "mullerton", "smith"}),
    ("le1940-05-02", {"mueller", "mullerton", "older"}),
    ("gt1940-05-02", {"mullerton", "smith"}),
    ("lt1940-05-02", {"mullerton", "older"}),
    ("gt1940", {"smith"}),
    ("lt1940", {"older"}),
    ("sa1940", {"smith"}),
    ("eb1940", {"older"}),
    ("ne1940", {"smith", "older"}),
    ("1939,1941", {"older", "smith"}),
    ("1940-05-02T00:00:00Z", set()),  # a second does not contain a whole day
])
async def test_date_prefixes_and_precision(client: httpx.AsyncClient, people: Data,
                                           value: str, expected: set[str]) -> None:
    assert await found(client, "Patient", people["scope"], ("birthdate", value)) == \
        who(people, *expected)


async def test_date_range_by_and(client: httpx.AsyncClient, people: Data) -> None:
    assert await found(client, "Patient", people["scope"], ("birthdate", "ge1940"),
                       ("birthdate", "lt1941")) == who(people, "mueller", "mullerton")


async def test_and_by_repetition_or_by_commas(client: httpx.AsyncClient, people: Data) -> None:
    tag = people["tag"]
    scope = people["scope"]
    assert await found(client, "Patient", scope, ("gender", "female"),
                       ("birthdate", "1940")) == who(people, "mueller")
    assert await found(client, "Patient", scope, ("gender", "female,male")) == \
        who(people, "mueller", "mullerton", "older")
    assert await found(client, "Patient", [], ("identifier", f"urn:mrn|A-{tag},|B-{tag}")) == \
        who(people, "mueller", "mullerton")
    assert await found(client, "Patient", scope, ("family", "smith,o")) == \
        who(people, "smith", "older")


async def test_escaped_comma_is_part_of_the_value(client: httpx.AsyncClient,
                                                  people: Data) -> None:
    tag = people["tag"]
    assert await found(client, "Patient", [], ("identifier", f"urn:mrn|{tag}\\,x")) == \
        who(people, "older")
    # unescaped, the comma separates two values, neither of which is the identifier
    assert await found(client, "Patient", people["scope"],
                       ("identifier", f"urn:mrn|{tag},x")) == set()


async def test_escaped_pipe_in_a_token(client: httpx.AsyncClient, tag: str) -> None:
    """\\| is a pipe inside a system or code, not the separator between them."""
    a = (await create(client, {"resourceType": "Patient",
                               "identifier": [{"value": f"p|{tag}"}]}))["id"]
    b = (await create(client, {"resourceType": "Patient",
                               "identifier": [{"system": "p", "value": tag}]}))["id"]
    c = (await create(client, {"resourceType": "Patient",
                               "identifier": [{"system": "urn:x|y", "value": f"q\\{tag}"}]}))["id"]
    assert await found(client, "Patient", [], ("identifier", f"p\\|{tag}")) == {a}
    assert await found(client, "Patient", [], ("identifier", f"|p\\|{tag}")) == {a}
    assert await found(client, "Patient", [], ("identifier", f"p|{tag}")) == {b}
    assert await found(client, "Patient", [], ("identifier", f"{tag}")) == {b}
    assert await found(client, "Patient", [], ("identifier", f"urn:x\\|y|q\\\\{tag}")) == {c}
    # a backslash before anything else is just a backslash
    assert await found(client, "Patient", [], ("identifier", f"q\\{tag}")) == {c}


async def test_id_and_last_updated(client: httpx.AsyncClient, people: Data) -> None:
    ids = people["ids"]
    scope = people["scope"]
    assert await found(client, "Patient", [], ("_id", f"{ids['smith']},{ids['older']}")) == \
        who(people, "smith", "older")
    assert await found(client, "Patient", [], ("_id", ids["smith"])) == who(people, "smith")
    first = (await client.get(f"/Patient/{ids['mueller']}")).json()["meta"]["lastUpdated"]
    last = (await client.get(f"/Patient/{ids['older']}")).json()["meta"]["lastUpdated"]
    everyone = who(people, "mueller", "mullerton", "smith", "older")
    assert await found(client, "Patient", scope, ("_lastUpdated", f"ge{first}")) == everyone
    assert await found(client, "Patient", scope, ("_lastUpdated", f"lt{first}")) == set()
    assert await found(client, "Patient", scope, ("_lastUpdated", f"gt{last}")) == set()
    assert await found(client, "Patient", scope, ("_lastUpdated", f"le{last}")) == everyone
    assert await found(client, "Patient", scope, ("_lastUpdated", "gt2000-01-01")) == everyone


async def test_count_and_paging(client: httpx.AsyncClient, people: Data) -> None:
    got = await pages(client, "/Patient", [*people["scope"], ("_count", "3")])
    assert len(got) == 2
    assert [len(p["entry"]) for p in got] == [3, 1]
    assert link(got[-1], "next") is None
    for page in got:
        assert page["type"] == "searchset"
        assert page.get("total", 4) == 4
        for e in page["entry"]:
            assert e["search"]["mode"] == "match"
            assert e["fullUrl"] == f"{BASE}/Patient/{e['resource']['id']}"
    ids = [e["resource"]["id"] for p in got for e in p["entry"]]
    assert sorted(ids) == sorted(people["ids"].values())
    one_each = await pages(client, "/Patient", [*people["scope"], ("_count", "1")])
    assert [e["resource"]["id"] for p in one_each for e in p["entry"]] == ids
    # _count=0: the total only
    r = await client.get("/Patient", params=[*people["scope"], ("_count", "0")])
    assert r.json()["total"] == 4 and not r.json().get("entry")


async def test_self_link_repeats_the_search(client: httpx.AsyncClient, people: Data) -> None:
    r = await client.get("/Patient", params=[*people["scope"], ("family", "müll"),
                                             ("birthdate", "ge1940")])
    bundle = r.json()
    self_link = link(bundle, "self")
    assert self_link.startswith(f"{BASE}/Patient?")
    names = [k for k, _ in parse_qsl(urlsplit(self_link).query)]
    assert {"identifier", "family", "birthdate"} <= set(names)
    again = (await client.get(self_link)).json()
    assert [e["resource"]["id"] for e in again["entry"]] == \
        [e["resource"]["id"] for e in bundle["entry"]]
    assert {e["resource"]["id"] for e in bundle["entry"]} == who(people, "mueller", "mullerton")


async def test_post_search_with_form_body(client: httpx.AsyncClient, people: Data) -> None:
    tag = people["tag"]
    r = await client.post("/Patient/_search",
                          data={"identifier": f"urn:test|{tag}", "gender": "female"})
    assert r.status_code == 200, r.text
    assert {e["resource"]["id"] for e in r.json()["entry"]} == who(people, "mueller", "older")
    # Query string and form body combine.
    r = await client.post("/Patient/_search", params={"birthdate": "1940"},
                          data={"identifier": f"urn:test|{tag}", "gender": "female"})
    assert {e["resource"]["id"] for e in r.json()["entry"]} == who(people, "mueller")
    outcome(await client.post("/Patient/_search", json={"gender": "female"}), 415)
    outcome(await client.post("/Patient/_search", data={"nonsense": "1"}), 400, "nonsense")


async def test_unknown_parameter_strict_and_lenient(client: httpx.AsyncClient,
                                                    people: Data) -> None:
    params = [*people["scope"], ("gender", "male"), ("favourite-colour", "blue")]
    outcome(await client.get("/Patient", params=params), 400, "favourite-colour")
    r = await client.get("/Patient", params=params, headers={"Prefer": "handling=strict"})
    outcome(r, 400, "favourite-colour")
    r = await client.get("/Patient", params=params, headers={"Prefer": "handling=lenient"})
    assert r.status_code == 200, r.text
    assert {e["resource"]["id"] for e in r.json()["entry"]} == who(people, "mullerton")
    self_link = link(r.json(), "self")
    assert "favourite-colour" not in self_link and "gender=male" in self_link
    # A parameter of another type is unknown here.
    outcome(await client.get("/Patient", params={"value-quantity": "5"}), 400, "value-quantity")


async def test_malformed_values_are_400(client: httpx.AsyncClient, people: Data) -> None:
    for value in ("1940-13", "1940-02-30", "yesterday", "ge", "19400"):
        outcome(await client.get("/Patient", params={"birthdate": value}), 400, "birthdate")
    outcome(await client.get("/Patient", params={"_lastUpdated": "gtnow"}), 400)
    outcome(await client.get("/Patient", params={"_count": "lots"}), 400, "_count")
    outcome(await client.get("/Patient", params={"_count": "-1"}), 400, "_count")
    outcome(await client.get("/Patient", params={"family:fuzzy": "x"}), 400, "fuzzy")
    outcome(await client.get("/Patient", params={"birthdate:exact": "1940"}), 400)
    outcome(await client.get("/Patient", params={"family": ""}), 400, "family")
    outcome(await client.get("/Patient", params={"_cursor": "not-a-cursor"}), 400)


# ---------------------------------------------------------------- Observations


@pytest.fixture(scope="module")
async def observations(client: httpx.AsyncClient) -> Data:
    tag = uuid.uuid4().hex[:12]
    pid = (await create(client, {"resourceType": "Patient",
                                 "identifier": [{"system": "urn:test", "value": tag}]}))["id"]
    ucum = "http://unitsofmeasure.org"

    def obs(**extra: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "status": "final",
                "identifier": [{"system": "urn:test", "value": tag}], **extra}

    specs = {
        "bp": obs(code={"text": "Blood pressure", "coding": [
                      {"system": "http://loinc.org", "code": "85354-9",
                       "display": "Blood pressure panel"}]},
                  subject={"reference": f"Patient/{pid}"},
                  valueQuantity={"value": 5.4, "unit": "mmol/L", "system": ucum,
                                 "code": "mmol/L"}),
        "hr": obs(code={"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                    "display": "Heart rate"}]},
                  subject={"reference": f"Group/{pid}"},  # a Group with the same id
                  valueQuantity={"value": 7.0, "unit": "mmol/L", "system": ucum,
                                 "code": "mmol/L"}),
        "mg": obs(code={"coding": [{"system": "http://snomed.info/sct", "code": "8867-4"}]},
                  subject={"reference": f"Patient/{pid}"},
                  valueQuantity={"value": 5.4, "unit": "mg", "system": ucum, "code": "mg"}),
    }
    ids = {key: (await create(client, body))["id"] for key, body in specs.items()}
    return {"tag": tag, "ids": ids, "patient": pid,
            "scope": [("identifier", f"urn:test|{tag}")]}


def which(data: Data, *keys: str) -> set[str]:
    return {data["ids"][k] for k in keys}


async def test_token_on_codeable_concept(client: httpx.AsyncClient, observations: Data) -> None:
    scope = observations["scope"]
    assert await found(client, "Observation", scope, ("code", "http://loinc.org|8867-4")) == \
        which(observations, "hr")
    assert await found(client, "Observation", scope, ("code", "8867-4")) == \
        which(observations, "hr", "mg")
    assert await found(client, "Observation", scope, ("code", "http://loinc.org|")) == \
        which(observations, "bp", "hr")
    assert await found(client, "Observation", scope, ("code:not", "http://loinc.org|8867-4")) \
        == which(observations, "bp", "mg")


async def test_token_text(client: httpx.AsyncClient, observations: Data) -> None:
    scope = observations["scope"]
    # CodeableConcept.text, and Coding.display, case-insensitive
    assert await found(client, "Observation", scope, ("code:text", "blood")) == \
        which(observations, "bp")
    assert await found(client, "Observation", scope, ("code:text", "HEART")) == \
        which(observations, "hr")
    assert await found(client, "Observation", scope, ("code:text", "nothing like it")) == set()


async def test_reference(client: httpx.AsyncClient, observations: Data) -> None:
    scope = observations["scope"]
    pid = observations["patient"]
    assert await found(client, "Observation", scope, ("subject", f"Patient/{pid}")) == \
        which(observations, "bp", "mg")
    assert await found(client, "Observation", scope, ("subject", f"Group/{pid}")) == \
        which(observations, "hr")
    # A bare id on a parameter with several target types: any of them
    assert await found(client, "Observation", scope, ("subject", pid)) == \
        which(observations, "bp", "hr", "mg")
    assert await found(client, "Observation", scope, ("subject:Patient", pid)) == \
        which(observations, "bp", "mg")
    assert await found(client, "Observation", scope, ("subject:Group", pid)) == \
        which(observations, "hr")
    # `patient` only targets Patient
    assert await found(client, "Observation", scope, ("patient", pid)) == \
        which(observations, "bp", "mg")
    assert await found(client, "Observation", scope, ("patient", f"Patient/{pid}")) == \
        which(observations, "bp", "mg")
    assert await found(client, "Observation", scope, ("subject", "Patient/nobody")) == set()
    outcome(await client.get("/Observation", params={"subject:Basic": pid}), 400)


@pytest.mark.parametrize(("value", "expected"), [
    ("5.4", {"bp", "mg"}),
    ("5", {"bp", "mg"}),  # 5 stands for [4.5, 5.5)
    ("5.40", {"bp", "mg"}),
    ("5.5", set()),
    ("5.4|http://unitsofmeasure.org|mmol/L", {"bp"}),
    ("5.4||mg", {"mg"}),
    ("gt6|http://unitsofmeasure.org|mmol/L", {"hr"}),
    ("le5.4", {"bp", "mg"}),
    ("lt5.4", set()),
    ("ge5.4||mmol/L", {"bp", "hr"}),
    ("5.4,7", {"bp", "mg", "hr"}),
])
async def test_quantity(client: httpx.AsyncClient, observations: Data, value: str,
                        expected: set[str]) -> None:
    assert await found(client, "Observation", observations["scope"],
                       ("value-quantity", value)) == which(observations, *expected)


# ---------------------------------------------------------------- number and uri


async def test_number(client: httpx.AsyncClient, tag: str) -> None:
    pid = (await create(client, {"resourceType": "Patient"}))["id"]
    ids = {}
    for p in (0.2, 0.47, 0.8):
        ids[p] = (await create(client, {
            "resourceType": "RiskAssessment", "status": "final",
            "identifier": [{"system": "urn:test", "value": tag}],
            "subject": {"reference": f"Patient/{pid}"},
            "prediction": [{"probabilityDecimal": p}]}))["id"]
    scope = [("identifier", f"urn:test|{tag}")]
    cases = {"0.47": {0.47}, "0.5": {0.47}, "0.4": set(), "gt0.3": {0.47, 0.8},
             "lt0.5": {0.2, 0.47}, "ge0.8": {0.8}, "le0.2": {0.2}, "ne0.47": {0.2, 0.8},
             "0.2,0.8": {0.2, 0.8}}
    for value, expected in cases.items():
        assert await found(client, "RiskAssessment", scope, ("probability", value)) == \
            {ids[p] for p in expected}, value
    outcome(await client.get("/RiskAssessment", params={"probability": "high"}), 400)


async def test_uri(client: httpx.AsyncClient, tag: str) -> None:
    base = f"http://example.org/fhir/ValueSet/{tag}"
    a = (await create(client, {"resourceType": "ValueSet", "status": "active",
                               "url": base}))["id"]
    b = (await create(client, {"resourceType": "ValueSet", "status": "active",
                               "url": f"{base}/child"}))["id"]
    assert await found(client, "ValueSet", [], ("url", base)) == {a}
    assert await found(client, "ValueSet", [], ("url", f"{base}/child")) == {b}
    assert await found(client, "ValueSet", [], ("url:below", base)) == {a, b}
    assert await found(client, "ValueSet", [], ("url", f"{base}/chi")) == set()
    assert await found(client, "ValueSet", [], ("url", f"{base}/child,{base}")) == {a, b}


async def test_pages_stay_consistent_while_others_write(client: httpx.AsyncClient,
                                                        tag: str) -> None:
    ids = [(await create(client, {"resourceType": "Patient", "gender": "male",
                                  "identifier": [{"system": "urn:test", "value": tag}]}))["id"]
           for _ in range(3)]
    scope = {"identifier": f"urn:test|{tag}", "_count": "2"}
    first = (await client.get("/Patient", params=scope)).json()
    assert [e["resource"]["id"] for e in first["entry"]] == ids[:2]
    # Between pages: one seen resource is updated, one new resource is created.
    seen = (await client.get(f"/Patient/{ids[0]}")).json()
    assert (await client.put(f"/Patient/{ids[0]}", json=dict(seen, gender="female"))).is_success
    new = (await create(client, {"resourceType": "Patient",
                                 "identifier": [{"system": "urn:test", "value": tag}]}))["id"]
    rest = await pages(client, link(first, "next"))
    later = [e["resource"]["id"] for p in rest for e in p["entry"]]
    assert later == [ids[2], new]


async def test_update_reindexes(client: httpx.AsyncClient, tag: str) -> None:
    made = await create(client, {"resourceType": "Patient", "birthDate": "1950",
                                 "identifier": [{"system": "urn:test", "value": tag}],
                                 "name": [{"family": "Before"}]})
    changed = dict(made, name=[{"family": "After"}], birthDate="1960")
    assert (await client.put(f"/Patient/{made['id']}", json=changed)).status_code == 200
    scope = [("identifier", f"urn:test|{tag}")]
    assert await found(client, "Patient", scope, ("family", "before")) == set()
    assert await found(client, "Patient", scope, ("birthdate", "1950")) == set()
    assert await found(client, "Patient", scope, ("family", "after")) == {made["id"]}
    assert await found(client, "Patient", scope, ("birthdate", "1960")) == {made["id"]}


async def test_previous_links_walk_back_and_stay_right_while_others_write(
        client: httpx.AsyncClient, tag: str) -> None:
    """self/next/previous over a keyset: a page's `previous` is the rows just before it in the
    data as it is now, so a Patient added behind the reader shows up, and none is repeated
    or skipped (https://hl7.org/fhir/R4/http.html#paging)."""
    names = ["Adams", "Baker", "Clark", "Dixon", "Evans", "Fox", "Green"]
    for name in names:
        await create(client, patient(tag, name=[{"family": f"{name}{tag}"}]))

    async def get(url: str) -> dict[str, Any]:
        r = await client.get(url.removeprefix(BASE))
        assert r.status_code == 200, r.text
        return r.json()

    def families(bundle: dict[str, Any]) -> list[str]:
        return [e["resource"]["name"][0]["family"].removesuffix(tag) for e in bundle["entry"]]

    first = await get(f"{BASE}/Patient?identifier={TEST_SYSTEM}|{tag}&_sort=family&_count=3")
    assert families(first) == ["Adams", "Baker", "Clark"]
    assert link(first, "previous") is None
    second = await get(link(first, "next"))
    assert families(second) == ["Dixon", "Evans", "Fox"]
    back = await get(link(second, "previous"))
    assert families(back) == ["Adams", "Baker", "Clark"]
    assert link(back, "previous") is None  # nothing before Adams
    assert families(await get(link(back, "next"))) == ["Dixon", "Evans", "Fox"]

    await create(client, patient(tag, name=[{"family": f"Cole{tag}"}]))  # behind the reader
    back = await get(link(second, "previous"))
    assert families(back) == ["Baker", "Clark", "Cole"]
    assert families(await get(link(back, "previous"))) == ["Adams"]
    third = await get(link(second, "next"))
    assert families(third) == ["Green"]
    assert link(third, "next") is None
    assert families(await get(link(third, "previous"))) == ["Dixon", "Evans", "Fox"]


async def test_descending_sort_pages_back_too(client: httpx.AsyncClient, tag: str) -> None:
    for name in ("Ash", "Birch", "Cedar", "Daisy", "Elm"):
        await create(client, patient(tag, name=[{"family": f"{name}{tag}"}]))
    r = await client.get("/Patient", params={"identifier": f"{TEST_SYSTEM}|{tag}",
                                             "_sort": "-family", "_count": "2"})
    second = (await client.get(link(r.json(), "next").removeprefix(BASE))).json()
    assert [e["resource"]["name"][0]["family"][:-len(tag)] for e in second["entry"]] == [
        "Cedar", "Birch"]
    back = (await client.get(link(second, "previous").removeprefix(BASE))).json()
    assert [e["resource"]["name"][0]["family"][:-len(tag)] for e in back["entry"]] == [
        "Elm", "Daisy"]


async def test_forged_backward_cursors_are_400(client: httpx.AsyncClient) -> None:
    import base64

    def token(value: str) -> str:
        return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")

    for forged in ('{"before": "x"}', '{"before": [1.5]}', '{"before": [], "x": 1}',
                   '{"after": [3]}'):
        outcome(await client.get("/Patient", params={"_cursor": token(forged)}), 400, "_cursor")
    outcome(await client.get("/Patient/_history", params={"_cursor": token('{"before": [3]}')}),
            400, "_cursor")
