"""Hostile searches, on SQLite and PostgreSQL: injection attempts, huge and deeply nested
queries, loops, forged cursors and absurd numbers.

Every request is bounded in time (asyncio.wait_for) and must answer 200 or a 4xx
OperationOutcome: never a 500 (the ASGI transport raises the app's exceptions, so a crash fails
the test), never a hang. Afterwards the tables are intact and hold what they held. On PostgreSQL
the statement timeout is checked to be in force on both connection pools.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import orjson
import pytest
import sqlalchemy as sa

from fhir.schema import INDEX_TABLES, resource
from tests.api.support import create, link, outcome

TAG_SYSTEM = "urn:hostile"
LIMIT_S = 10.0
FORM = {"content-type": "application/x-www-form-urlencoded"}

INJECTIONS = [
    "'", "''", '"', "\\", "\\\\", "'; DROP TABLE resource; --", "\"; DROP TABLE sp_token; --",
    "' OR '1'='1", "1' OR 1=1 --", "x' UNION SELECT content FROM resource --", "%", "%%", "_",
    "%_%", "\\%", "[a-z]*", "$1", "?", ":name", "{}", "${jndi:ldap://x}", "<script>", "🙂",
    "\u202etxet", "e\u0301", "\ufb01", "\u0000x"[1:], "\ud7ff", "\uffff", "ǅ", "İ", "ß",
    "a" * 300, "\t\n\r", " ", "+", "&x=y", "#", "/../..", "null", "NaN", "-1",
]


async def bounded(request: Any) -> httpx.Response:
    started = time.monotonic()
    r = await asyncio.wait_for(request, LIMIT_S)
    assert time.monotonic() - started < LIMIT_S
    return r


def sane(r: httpx.Response, *allowed: int) -> dict[str, Any]:
    """A FHIR answer with an allowed status: a Bundle, or an OperationOutcome."""
    assert r.status_code in (allowed or (200, 400)), f"{r.status_code}: {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/fhir+json"), r.headers
    body = r.json()
    if r.status_code == 200:
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    else:
        assert body["resourceType"] == "OperationOutcome"
        text = " ".join(i.get("diagnostics", "") for i in body["issue"])
        assert "Traceback" not in text and "sqlalchemy" not in text.lower(), text
    return body


async def get(client: httpx.AsyncClient, path: str, params: Any = None,
              *allowed: int) -> dict[str, Any]:
    return sane(await bounded(client.get(path, params=params)), *allowed)


async def post(client: httpx.AsyncClient, path: str, form: list[tuple[str, str]],
               *allowed: int) -> dict[str, Any]:
    body = urlencode(form)
    return sane(await bounded(client.post(path, content=body, headers=FORM)), *allowed)


def ids(b: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in b.get("entry", ())}


async def table_counts(app: Any) -> dict[str, int]:
    """Rows per table, leaving out the audit (each request, an attack too, adds AuditEvents)."""
    await app.state.audit.flush()
    audit = sa.select(resource.c.rid).where(resource.c.type == "AuditEvent")
    async with app.state.db.engine.connect() as conn:
        out = {}
        for table in (resource, *INDEX_TABLES.values()):
            out[table.name] = (await conn.execute(
                sa.select(sa.func.count()).select_from(table)
                .where(table.c.rid.not_in(audit)))).scalar_one()
        return out


@pytest.fixture(scope="module")
async def victims(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    """Patients named like attacks; a reference cycle; a long partOf chain closing on itself."""
    tag = uuid.uuid4().hex[:12]
    meta = {"tag": [{"system": TAG_SYSTEM, "code": tag}]}
    scope = [("_tag", f"{TAG_SYSTEM}|{tag}")]
    names = {"drop": "Robert'); DROP TABLE resource;--", "pct": "100%", "under": "a_b",
             "slash": "back\\slash", "emoji": "🙂 Smile", "quote": "O'Hara"}
    people = {}
    for key, family in names.items():
        people[key] = (await create(client, {"resourceType": "Patient", "meta": meta,
                                             "name": [{"family": family}],
                                             "identifier": [{"system": "urn:x", "value": family}]
                                             }))["id"]
    # A <-> B (Patient.link), X <-> Y (Observation.hasMember), X about A
    a = (await create(client, {"resourceType": "Patient", "meta": meta}))["id"]
    b = (await create(client, {"resourceType": "Patient", "meta": meta,
                               "link": [{"other": {"reference": f"Patient/{a}"},
                                         "type": "seealso"}]}))["id"]
    body = (await client.get(f"/Patient/{a}")).json()
    body["link"] = [{"other": {"reference": f"Patient/{b}"}, "type": "seealso"}]
    assert (await client.put(f"/Patient/{a}", json=body)).status_code == 200
    obs = {"resourceType": "Observation", "meta": meta, "status": "final",
           "code": {"text": "cycle"}, "subject": {"reference": f"Patient/{a}"}}
    x = (await create(client, obs))["id"]
    y = (await create(client, {**obs, "hasMember": [{"reference": f"Observation/{x}"}]}))["id"]
    body = (await client.get(f"/Observation/{x}")).json()
    body["hasMember"] = [{"reference": f"Observation/{y}"}]
    assert (await client.put(f"/Observation/{x}", json=body)).status_code == 200
    # O1 -> O2 -> ... -> O10 -> O1
    orgs = [(await create(client, {"resourceType": "Organization", "meta": meta,
                                   "name": f"org{i}"}))["id"] for i in range(10)]
    for i, org in enumerate(orgs):
        body = (await client.get(f"/Organization/{org}")).json()
        body["partOf"] = {"reference": f"Organization/{orgs[(i + 1) % 10]}"}
        assert (await client.put(f"/Organization/{org}", json=body)).status_code == 200
    return {"tag": tag, "scope": scope, "people": people, "names": names, "a": a, "b": b,
            "x": x, "y": y, "orgs": orgs, "counts": await table_counts(app)}


# ---------------------------------------------------------------- injection


async def test_injection_in_values_is_data(client: httpx.AsyncClient,
                                           victims: dict[str, Any]) -> None:
    scope = victims["scope"]
    params = [("Patient", "family"), ("Patient", "family:exact"), ("Patient", "family:contains"),
              ("Patient", "identifier"), ("Patient", "identifier:text"), ("Patient", "gender"),
              ("Patient", "_id"), ("Patient", "general-practitioner"), ("Patient", "birthdate"),
              ("Patient", "_lastUpdated"), ("Patient", "link:Patient.family"),
              ("Patient", "_has:Observation:patient:code"), ("Patient", "_tag"),
              ("Observation", "value-quantity"), ("Observation", "subject"),
              ("RiskAssessment", "probability"), ("ValueSet", "url:below"),
              ("ValueSet", "url:above"), ("Patient", "name:missing")]
    for type_, name in params:
        for value in INJECTIONS:
            await get(client, f"/{type_}", [*scope, (name, value)])
    # the strings are compared as data: each finds exactly its own patient
    people, names = victims["people"], victims["names"]
    for key, family in names.items():
        b = await get(client, "/Patient", [*scope, ("family:exact", family.replace("\\", "\\\\"))])
        assert ids(b) == {people[key]}, key
        b = await get(client, "/Patient", [("identifier", f"urn:x|{family}".replace("\\", "\\\\"))])
        assert ids(b) == {people[key]}, key
    for value, key in [("%", "pct"), ("_", "under"), ("'", "drop"), ("🙂", "emoji"),
                       ("); drop", "drop"), ("\\\\", "slash")]:
        b = await get(client, "/Patient", [*scope, ("family:contains", value)])
        assert ids(b) == {people[key]} | ({people["quote"]} if value == "'" else set()), value
    for value in ("%", "_", "'", "a%", "%b"):
        b = await get(client, "/Patient", [*scope, ("family", value)])
        assert ids(b) == set(), value


async def test_injection_in_names(client: httpx.AsyncClient, victims: dict[str, Any]) -> None:
    for name in ["'; DROP TABLE resource; --", "family'", "family:exact'--", "family;",
                 "family:' OR 1=1", "_has:Patient'--:link:family", "_has:Patient:link:family'",
                 "subject:Patient.name' OR 1=1--", "link:Patient'.family", "_sort'", "_count'",
                 "family.", ".family", "family..name", "::", ":", "_has", "_has:::", "🙂",
                 "family:🙂", "a" * 5000, "_include:iterate:iterate", "family[]", "family%00"]:
        await get(client, "/Patient", [(name, "x")], 400)
    for name, value in [("_sort", "family'; DROP TABLE resource;--"),
                        ("_sort", "-"), ("_sort", "--family"), ("_sort", "family desc"),
                        ("_include", "Patient:link'--"), ("_include", "'; DROP--:link"),
                        ("_revinclude", "Patient:link:Patient'"), ("_summary", "true'"),
                        ("_total", "accurate;"), ("_count", "1; DROP"),
                        ("_cursor", "'; DROP TABLE resource;--"), ("_elements", "")]:
        await get(client, "/Patient", [(name, value)], 200, 400)
    b = await get(client, "/Patient", [*victims["scope"], ("_elements", "name,'; DROP--,🙂")])
    assert len(ids(b)) == 8


async def test_nul_and_broken_unicode(client: httpx.AsyncClient,
                                      victims: dict[str, Any]) -> None:
    outcome(await bounded(client.get("/Patient", params={"family": "a\x00b"})), 400, "NUL")
    outcome(await bounded(client.get("/Patient", params={"fam\x00ily": "a"})), 400, "NUL")
    outcome(await bounded(client.get("/Patient", params={"_sort": "fam\x00ily"})), 400, "NUL")
    await post(client, "/Patient/_search", [("family", "a\x00")], 400)
    # raw query strings: lone surrogates, invalid UTF-8, stray %, + and &
    for raw in ["family=%ED%A0%80", "family=%FF%FE", "family=%C0%AF", "family=%",
                "family=%zz", "family=a+b", "family=&&&", "=x", "family", "%ED%A0%80=x",
                "family=%F0%9F%99%82", "_sort=%ED%A0%80", "_has:Patient:link:family=%FF"]:
        sane(await bounded(client.get(f"/Patient?{raw}")), 200, 400)
    b = await get(client, "/Patient", [*victims["scope"], ("family", "🙂")])
    assert ids(b) == {victims["people"]["emoji"]}


# ---------------------------------------------------------------- size and depth


async def test_thousands_of_values_are_a_clear_400(client: httpx.AsyncClient) -> None:
    many = ",".join(f"v{i}" for i in range(10_000))
    for type_, name, named in [("Patient", "family", "family"), ("Patient", "_id", "_id"),
                               ("Patient", "identifier", "identifier"),
                               ("Patient", "general-practitioner", "general-practitioner"),
                               ("Observation", "subject", "subject"),
                               ("Observation", "code:not", "code"),
                               ("Patient", "link:Patient.family", "family"),
                               ("Patient", "_has:Observation:patient:code", "code")]:
        body = await post(client, f"/{type_}/_search", [(name, many)], 400)
        text = body["issue"][0]["diagnostics"]
        assert "10000 values" in text and "at most 100" in text and f"'{named}'" in text
    dates = ",".join(f"ge2020-01-{i % 28 + 1:02}" for i in range(10_000))
    await post(client, "/Patient/_search", [("birthdate", dates)], 400)


async def test_huge_queries(client: httpx.AsyncClient, victims: dict[str, Any]) -> None:
    scope = victims["scope"]
    # a megabyte in one value, in a token, in a chain: refused, naming the parameter
    for name, named in (("family", "family"), ("identifier", "identifier"),
                        ("link:Patient.family", "family"), ("_id", "_id"),
                        ("birthdate", "birthdate"), ("general-practitioner:missing", None),
                        ("general-practitioner", "general-practitioner"),
                        ("identifier:text", "identifier"), ("name:contains", "name")):
        body = await post(client, "/Patient/_search", [*scope, (name, "x" * 1_000_000)], 400)
        assert named is None or f"'{named}'" in body["issue"][0]["diagnostics"]
    # just under the limit, as a LIKE pattern of every kind (SQLite's limit is 50 kB)
    long = "%_\\" * 1000 + "🙂" * 90
    for name in ("family", "family:contains", "identifier:text", "link:Patient.name"):
        assert ids(await post(client, "/Patient/_search", [*scope, (name, long)])) == set()
    await post(client, "/ValueSet/_search", [("url:below", long), ("url:above", long)])
    # a name of 100,000 characters; thousands of parameters
    await post(client, "/Patient/_search", [("f" * 100_000, "x")], 400)
    body = await post(client, "/Patient/_search", [("family", "x")] * 5000, 400)
    assert "at most 50 parameters" in body["issue"][0]["diagnostics"]
    # the largest search the limits allow, and one that would expand past them
    vals = ",".join(f"v{i}" for i in range(100))
    await post(client, "/Observation/_search", [("focus.name", vals)] * 49 + scope[:1])
    body = await post(client, "/Observation/_search",
                      [("focus.subject", ",".join(f"Patient/{i}" for i in range(100)))] * 50, 400)
    assert "too large" in body["issue"][0]["diagnostics"]
    await post(client, "/Patient/_search", [("_elements", ",".join(["name"] * 20_000))])
    # GET as long as a client will send
    await get(client, "/Patient", [*scope, ("family", "y" * 60_000)])


async def test_deep_chains_and_reverse_chains_are_refused(client: httpx.AsyncClient,
                                                          victims: dict[str, Any]) -> None:
    chain = ".".join(["link:Patient"] * 20) + ".family"
    body = await get(client, "/Patient", [(chain, "x")], 400)
    assert "levels" in body["issue"][0]["diagnostics"]
    has = "".join(["_has:Patient:link:"] * 20) + "family"
    body = await get(client, "/Patient", [(has, "x")], 400)
    assert "levels" in body["issue"][0]["diagnostics"]
    mixed = "_has:Observation:patient:" + ".".join(["subject:Patient.link:Patient"] * 10) \
        + ".family"
    await get(client, "/Patient", [(mixed, "x")], 400)
    # up to the limit works: four links from B lead back round the cycle
    b = await get(client, "/Patient", [*victims["scope"],
                                       ("link:Patient.link:Patient.link:Patient._id",
                                        victims["a"])])
    assert ids(b) == {victims["b"]}
    await get(client, "/Patient", [*victims["scope"], ("_has:Patient:link:" * 4 + "_id",
                                                       victims["a"])])


async def test_include_iterate_on_cycles_is_bounded(client: httpx.AsyncClient,
                                                    victims: dict[str, Any]) -> None:
    scope = victims["scope"]
    a, b, x, y = victims["a"], victims["b"], victims["x"], victims["y"]
    got = await get(client, "/Observation", [*scope, ("_id", x), ("_include:iterate", "*")])
    included = [e["resource"]["id"] for e in got["entry"] if e["search"]["mode"] == "include"]
    assert sorted(included) == sorted([a, y, b])  # X itself is a match, each one once
    got = await get(client, "/Patient", [*scope, ("_id", a), ("_include:iterate", "Patient:link"),
                                         ("_revinclude:iterate", "Patient:link"),
                                         ("_revinclude:iterate", "Observation:subject"),
                                         ("_include:iterate", "Observation:has-member")])
    included = [e["resource"]["id"] for e in got["entry"] if e["search"]["mode"] == "include"]
    assert sorted(included) == sorted([b, x, y])
    # a ten-long cycle: iteration stops, each organisation at most once, never the match
    orgs = victims["orgs"]
    got = await get(client, "/Organization", [*scope, ("_id", orgs[0]),
                                              ("_include:iterate", "Organization:partof"),
                                              ("_revinclude:iterate", "Organization:partof")])
    included = [e["resource"]["id"] for e in got["entry"] if e["search"]["mode"] == "include"]
    assert len(included) == len(set(included)) and orgs[0] not in included
    assert included and set(included) <= set(orgs)
    # every organisation at once, every reference followed both ways: still one page of each
    got = await get(client, "/Organization", [*scope, ("_include:iterate", "*"),
                                              ("_revinclude:iterate", "Organization:partof"),
                                              ("_count", "1000")])
    assert sorted(e["resource"]["id"] for e in got["entry"]) == sorted(orgs)


async def test_count_is_bounded(client: httpx.AsyncClient, victims: dict[str, Any]) -> None:
    for value in ("1000000", "9" * 100, "0" * 50 + "5"):
        b = await get(client, "/Patient", [*victims["scope"], ("_count", value)])
        assert int(dict(parse_qsl(urlsplit(link(b, "self")).query))["_count"]) == \
            min(int(value), 1000)
    for value in ("-1", "1e9", "\u0661", "0x10", "1.0", " 5", "99999999999999999999999999.5"):
        await get(client, "/Patient", [("_count", value)], 400)


async def test_forged_cursors_are_400(client: httpx.AsyncClient,
                                      victims: dict[str, Any]) -> None:
    def cursor(value: Any) -> str:
        text = value if isinstance(value, bytes) else orjson.dumps(value)
        return base64.urlsafe_b64encode(text).decode().rstrip("=")

    cases = [
        ("birthdate", cursor(["abc", 5])), ("birthdate", cursor([None, 5])),
        ("birthdate", cursor([True, 5])), ("birthdate", cursor(b"[1" + b"0" * 400 + b",5]")),
        ("birthdate", cursor([[1], 5])), ("birthdate", cursor([1.5, -1])),
        ("birthdate", cursor(b"[1.5,18446744073709551616]")),
        ("birthdate", cursor(b"[1e999,5]")), ("birthdate", cursor([1.5, "5"])),
        ("family", cursor([1.5, 5])), ("family", cursor(["a\x00", 5])),
        ("_id", cursor([{"a": 1}, 5])), ("_id", cursor([7, 5])),
        ("_lastUpdated", cursor(["now", 5])), ("family,_id", cursor(["a", 5])),
        (None, cursor([True])), (None, cursor([])), (None, cursor({"a": 1})),
        (None, cursor("x")), (None, "%%%"), (None, "A" * 10_000), (None, "e30"),
        (None, base64.urlsafe_b64encode(b"\xff\xfe").decode()),
    ]
    for sort, value in cases:
        params = [("_cursor", value)] + ([("_sort", sort)] if sort else [])
        outcome(await bounded(client.get("/Patient", params=params)), 400, "_cursor")
    # a genuine cursor still works
    first = await get(client, "/Patient", [*victims["scope"], ("_sort", "family"),
                                           ("_count", "2")])
    await get(client, link(first, "next"))


async def test_extreme_dates_and_numbers(client: httpx.AsyncClient) -> None:
    for value in ("0001", "ge0001-01-01", "9999", "le9999-12-31T23:59:59.999999999Z",
                  "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "ap0001", "ap9999",
                  "0000", "10000", "-2020", "2020-01-01T00:00:00.000000000000000000001Z",
                  "2020-02-29", "2021-02-29", "1970-01-01T00:00:00+23:59", "sa9999", "eb0001"):
        await get(client, "/Patient", [("birthdate", value)])
        await get(client, "/Patient", [("_lastUpdated", value)])
    for value in ("1" * 5000, "0." + "0" * 5000 + "1", "1e-400", "-0", "+5", "1e308",
                  "9" * 400, "1e-99999", "0e99999", "ap0", "ap-5", "ne1e308", "sa-1e308",
                  "1.", ".5", "5e", "--5", "1e+5"):
        await get(client, "/RiskAssessment", [("probability", value)])
        await get(client, "/Observation", [("value-quantity", f"{value}|urn:x|mg")])
    for value in ("Patient/", "/", "Patient//x", "a/b/c", "http://evil.example/Patient/1",
                  "Patient/" + "x" * 5000, "urn:uuid:" + str(uuid.uuid4()), ":", "Patient/ x"):
        await get(client, "/Observation", [("subject", value)])


async def test_concurrent_hostile_requests_do_not_hang(client: httpx.AsyncClient,
                                                       victims: dict[str, Any]) -> None:
    chain = ".".join(["link:Patient"] * 4) + ".family"
    requests = []
    for i in range(40):
        params = [*victims["scope"], (chain, INJECTIONS[i % len(INJECTIONS)]),
                  ("_include:iterate", "*"), ("_revinclude:iterate", "Patient:link"),
                  ("_sort", "-family,birthdate"), ("_total", "accurate")]
        requests.append(client.get("/Patient", params=params))
    for r in await asyncio.wait_for(asyncio.gather(*requests), LIMIT_S * 2):
        sane(r)


# ---------------------------------------------------------------- afterwards


async def test_tables_are_intact(client: httpx.AsyncClient, app: Any,
                                 victims: dict[str, Any]) -> None:
    """Runs after the attacks in this module: every table answers and holds what it held."""
    assert await table_counts(app) == victims["counts"]
    b = await get(client, "/Patient", [*victims["scope"], ("_total", "accurate")])
    assert b["total"] == 8
    made = await create(client, {"resourceType": "Patient", "name": [{"family": "after"}]})
    assert (await client.get(f"/Patient/{made['id']}")).status_code == 200
    assert (await client.delete(f"/Patient/{made['id']}")).status_code in (200, 204)


async def test_postgres_statement_timeout_is_in_force(app: Any) -> None:
    db = app.state.db
    if db.is_sqlite:
        pytest.skip("a PostgreSQL setting")
    want = app.state.settings.statement_timeout_ms
    assert 0 < want <= 60_000
    async with db.engine.connect() as conn:
        shown = (await conn.execute(sa.text("SHOW statement_timeout"))).scalar_one()
    assert _ms(shown) == want
    async with db.raw_pool.acquire() as conn:
        assert _ms(await conn.fetchval("SHOW statement_timeout")) == want
    # And it stops a statement: the same engine set-up with a 200 ms limit cancels a 5 s sleep.
    from fhir.db import Database
    short = Database(db.url, pool_size=1, statement_timeout_ms=200)
    try:
        started = time.monotonic()
        with pytest.raises(sa.exc.DBAPIError, match="statement timeout"):
            async with short.engine.connect() as conn:
                await conn.execute(sa.text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 3
    finally:
        await short.dispose()


def _ms(shown: str) -> int:
    units = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
    for unit in sorted(units, key=len, reverse=True):
        if shown.endswith(unit):
            return int(shown[: -len(unit)]) * units[unit]
    return int(shown)
