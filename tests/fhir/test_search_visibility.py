"""Every way a search can reveal a row honours the caller's visibility filter, on both backends.

Two patients, A and B, each with a record; a Practitioner and two Organizations that belong to
no patient; and links across the two records (B's Observation performed by A, A's Task about
B's Condition, B's Provenance naming A's Observation). The caller sees A's record and what
belongs to no patient: first as a plain filter on `patient_id`, then as the real policy of
patient A (`consent.policy.search_filter`), which also hides the Task type from patients.
Each expected answer below was worked out by hand from the data; every query is asked once
without a filter too, so a filter that hid everything would fail.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from consent import context
from consent.policy import search_filter
from consent.principals import Kind, Principal
from fhir import interactions, search
from fhir.errors import NotFound
from fhir.operations import everything
from fhir.visibility import Visibility


class Data:
    """The data set, its ids made unique per module run: `d.id('obsA')`."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.system = f"urn:vis:{self.tag}"
        self.bodies: list[dict[str, Any]] = []
        self.since = 0.0

    def id(self, key: str) -> str:
        return f"{key}-{self.tag}"

    def ref(self, type_: str, key: str) -> dict[str, str]:
        return {"reference": f"{type_}/{self.id(key)}"}

    def code(self, code: str) -> dict[str, Any]:
        return {"coding": [{"system": self.system, "code": code}]}

    def token(self, code: str) -> str:
        return f"{self.system}|{code}"

    def keys(self, rows: Any) -> set[str]:
        """The keys of rows (tuples whose third field is the id) of this data set."""
        suffix = f"-{self.tag}"
        return {r[2].removesuffix(suffix) for r in rows if r[2].endswith(suffix)}


def _build(d: Data) -> None:
    def add(key: str, type_: str, **body: Any) -> None:
        d.bodies.append({"resourceType": type_, "id": d.id(key), **body})

    add("orgA", "Organization", name=f"PracticeA{d.tag}")
    add("orgB", "Organization", name=f"PracticeB{d.tag}")
    add("dr", "Practitioner", name=[{"family": f"Doc{d.tag}"}])
    add("pA", "Patient", name=[{"family": f"Alpha{d.tag}"}],
        generalPractitioner=[d.ref("Organization", "orgA")])
    add("pB", "Patient", name=[{"family": f"Bravo{d.tag}"}],
        generalPractitioner=[d.ref("Organization", "orgB")])
    add("encA", "Encounter", status="finished", subject=d.ref("Patient", "pA"),
        participant=[{"individual": d.ref("Practitioner", "dr")}],
        **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                     "code": "AMB"}})
    add("encB", "Encounter", status="finished", subject=d.ref("Patient", "pB"),
        **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                     "code": "AMB"}})
    add("obsA", "Observation", status="final", code=d.code("hr"),
        subject=d.ref("Patient", "pA"), performer=[d.ref("Practitioner", "dr")],
        encounter=d.ref("Encounter", "encA"))
    add("obsB1", "Observation", status="final", code=d.code("hr"),
        subject=d.ref("Patient", "pB"), performer=[d.ref("Practitioner", "dr")],
        encounter=d.ref("Encounter", "encB"))
    # B's, though A is named as performer: so it is in A's compartment too.
    add("obsB2", "Observation", status="final", code=d.code("secret"),
        subject=d.ref("Patient", "pB"),
        performer=[d.ref("Practitioner", "dr"), d.ref("Patient", "pA")])
    add("condA", "Condition", code=d.code("asthma"), subject=d.ref("Patient", "pA"))
    add("condB", "Condition", code=d.code("hiv"), subject=d.ref("Patient", "pB"),
        asserter=d.ref("Practitioner", "dr"))
    # A's Task, about B's Condition.
    add("taskA", "Task", status="requested", intent="order", **{"for": d.ref("Patient", "pA")},
        focus=d.ref("Condition", "condB"), owner=d.ref("Organization", "orgA"))
    add("provA", "Provenance", recorded="2024-01-01T00:00:00Z",
        target=[d.ref("Patient", "pA"), d.ref("Observation", "obsA")],
        agent=[{"who": d.ref("Practitioner", "dr")}])
    # B's Provenance (B is its patient), which names A's Observation too.
    add("provB", "Provenance", recorded="2024-01-01T00:00:00Z",
        target=[d.ref("Patient", "pB"), d.ref("Observation", "obsA"),
                d.ref("Observation", "obsB1")],
        agent=[{"who": d.ref("Practitioner", "dr")}])
    # Once A's, now B's: its whole history follows the current row.
    add("condMoved", "Condition", code=d.code("moved"), subject=d.ref("Patient", "pA"))


@pytest.fixture(scope="module")
async def data(app: Any) -> Data:
    d = Data()
    _build(d)
    d.since = time.time() - 1
    async with app.state.db.write() as conn:
        for body in d.bodies:
            assert (await interactions.update(conn, body["resourceType"], body["id"],
                                              body)).status == 201
        for key in ("obsA", "obsB1"):  # a second version of each
            stored = await interactions.read(conn, "Observation", d.id(key))
            body = {**next(b for b in d.bodies if b["id"] == stored.id), "status": "amended"}
            assert (await interactions.update(conn, "Observation", stored.id, body)).status == 200
        moved = {**next(b for b in d.bodies if b["id"] == d.id("condMoved")),
                 "subject": d.ref("Patient", "pB")}
        assert (await interactions.update(conn, "Condition", d.id("condMoved"),
                                          moved)).status == 200
    return d


def only(d: Data, patient: str) -> Visibility:
    """Rows of `patient` (a key: pA, pB), and rows of no patient."""
    def visible(row: Any, _type: str | None) -> Any:
        return sa.or_(row.c.patient_id == d.id(patient), row.c.patient_id.is_(None))
    return visible


async def policy_of_a(app: Any, d: Data) -> Visibility:
    """What the access policy lets patient A see."""
    async with app.state.db.read() as conn:
        ctx = await context.resolve(conn, Principal(Kind.PATIENT, f"Patient/{d.id('pA')}"),
                                    search=True)
    return lambda row, type_: search_filter(ctx, row, type_)


async def find(app: Any, d: Data, type_: str, params: list[tuple[str, str]],
               visible: Visibility | None) -> tuple[set[str], set[str], search.Page]:
    """(the keys of the matches, of the included, the page) of one search."""
    async with app.state.db.read() as conn:
        page = await search.run(conn, search.parse(type_, params, visible=visible))
    return d.keys(page.matches), d.keys(page.included), page


async def test_plain_search_id_total_and_count(app: Any, data: Data) -> None:
    d, hidden = data, only(data, "pA")
    hr = [("code", d.token("hr"))]
    assert (await find(app, d, "Observation", hr, None))[0] == {"obsA", "obsB1"}
    assert (await find(app, d, "Observation", hr, hidden))[0] == {"obsA"}
    by_id = [("_id", f"{d.id('obsA')},{d.id('obsB1')},{d.id('obsB2')}")]
    assert (await find(app, d, "Observation", by_id, None))[0] == {"obsA", "obsB1", "obsB2"}
    assert (await find(app, d, "Observation", by_id, hidden))[0] == {"obsA"}
    assert (await find(app, d, "Patient", [("_id", d.id("pB"))], hidden))[0] == set()
    # totals and counts count only what the caller sees, whether or not the page holds it all
    every = [("code", f"{d.token('hr')},{d.token('secret')}")]
    for visible, total in ((None, 3), (hidden, 1)):
        _, _, page = await find(app, d, "Observation",
                                [*every, ("_total", "accurate"), ("_count", "1")], visible)
        assert page.total == total
        assert (page.next is not None) == (total > 1)
        _, _, page = await find(app, d, "Observation", [*every, ("_summary", "count")], visible)
        assert (page.total, page.matches) == (total, [])
        async with app.state.db.read() as conn:
            assert await search.count(conn, search.parse("Observation", every,
                                                         visible=visible)) == total


async def test_paging_never_reaches_hidden_rows(app: Any, data: Data) -> None:
    d = data
    params = [("_id", ",".join(d.id(k) for k in ("obsA", "obsB1", "obsB2"))), ("_count", "1"),
              ("_sort", "_id")]
    seen: list[str] = []
    async with app.state.db.read() as conn:
        query = search.parse("Observation", params, visible=only(d, "pA"))
        while True:
            page = await search.run(conn, query)
            seen += sorted(d.keys(page.matches))
            if page.next is None:
                break
            query.cursor = page.next
    assert seen == ["obsA"]


async def test_includes_and_iterate(app: Any, data: Data) -> None:
    d, hidden = data, only(data, "pA")
    task = [("_id", d.id("taskA"))]
    # _include=*: the Task's patient, owner and focus; B's Condition is hidden
    assert (await find(app, d, "Task", [*task, ("_include", "*")], None))[1] == {
        "pA", "orgA", "condB"}
    assert (await find(app, d, "Task", [*task, ("_include", "*")], hidden))[1] == {
        "pA", "orgA"}
    # _include and then :iterate from what it found: a hidden row is not iterated from
    chain = [*task, ("_include", "Task:focus"), ("_include:iterate", "Condition:subject"),
             ("_include:iterate", "Patient:general-practitioner")]
    assert (await find(app, d, "Task", chain, None))[1] == {"condB", "pB", "orgB"}
    assert (await find(app, d, "Task", chain, hidden))[1] == set()
    # _revinclude, and :iterate through it: B's Observations and Provenance stay out
    dr = [("_id", d.id("dr")), ("_revinclude", "Observation:performer"),
          ("_revinclude:iterate", "Provenance:target")]
    assert (await find(app, d, "Practitioner", dr, None))[1] == {
        "obsA", "obsB1", "obsB2", "provA", "provB"}
    assert (await find(app, d, "Practitioner", dr, hidden))[1] == {"obsA", "provA"}
    obs = [("_id", d.id("obsA")), ("_revinclude", "Provenance:target")]
    assert (await find(app, d, "Observation", obs, None))[1] == {"provA", "provB"}
    assert (await find(app, d, "Observation", obs, hidden))[1] == {"provA"}


async def test_chains_pass_only_through_visible_rows(app: Any, data: Data) -> None:
    d, hidden = data, only(data, "pA")
    cases = [  # (type, params, every match, the matches A's viewer gets)
        ("Observation", [("subject.name", f"Bravo{d.tag}")], {"obsB1", "obsB2"}, set()),
        ("Observation", [("subject.name", f"Alpha{d.tag}")], {"obsA"}, {"obsA"}),
        ("Observation", [("subject:Patient.general-practitioner:Organization.name",
                          f"PracticeB{d.tag}")], {"obsB1", "obsB2"}, set()),
        ("Observation", [("subject:Patient.general-practitioner:Organization.name",
                          f"PracticeA{d.tag}")], {"obsA"}, {"obsA"}),
        # A's Task, through B's Condition (hidden) to the Practitioner (visible)
        ("Task", [("focus:Condition.asserter:Practitioner.name", f"Doc{d.tag}")],
         {"taskA"}, set()),
        ("Task", [("focus:Condition.code", d.token("hiv"))], {"taskA"}, set()),
        ("Task", [("owner:Organization.name", f"PracticeA{d.tag}")], {"taskA"}, {"taskA"}),
    ]
    for type_, params, everyone, a_sees in cases:
        assert (await find(app, d, type_, params, None))[0] == everyone, params
        assert (await find(app, d, type_, params, hidden))[0] == a_sees, params


async def test_has_counts_only_visible_referrers(app: Any, data: Data) -> None:
    d, hidden = data, only(data, "pA")
    ab = [("_id", f"{d.id('pA')},{d.id('pB')}")]
    cases = [  # (type, params, every match, the matches A's viewer gets)
        # A matches only through B's Observation, which names A as performer
        ("Patient", [*ab, ("_has:Observation:performer:code", d.token("secret"))], {"pA"},
         set()),
        ("Patient", [*ab, ("_has:Observation:subject:code", d.token("hr"))], {"pA", "pB"},
         {"pA"}),
        ("Patient", [*ab, ("_has:Condition:subject:code", d.token("hiv"))], {"pB"}, set()),
        ("Practitioner", [("_has:Observation:performer:code", d.token("secret"))], {"dr"},
         set()),
        ("Practitioner", [("_has:Observation:performer:code", d.token("hr"))], {"dr"},
         {"dr"}),
        # nested: the Practitioner performed an Observation that a Provenance names
        ("Practitioner", [("_has:Observation:performer:_has:Provenance:target:_id",
                           d.id("provB"))], {"dr"}, set()),
        ("Practitioner", [("_has:Observation:performer:_has:Provenance:target:_id",
                           d.id("provA"))], {"dr"}, {"dr"}),
        # a _has inside a chain: Observations of a patient some Condition with `hiv` is about
        ("Observation", [("subject:Patient._has:Condition:subject:code", d.token("hiv"))],
         {"obsB1", "obsB2"}, set()),
    ]
    for type_, params, everyone, a_sees in cases:
        assert (await find(app, d, type_, params, None))[0] == everyone, params
        assert (await find(app, d, type_, params, hidden))[0] == a_sees, params


async def test_conditional_matching(app: Any, data: Data) -> None:
    d, hidden = data, only(data, "pA")
    async with app.state.db.read() as conn:
        async def ids(code: str, visible: Visibility | None) -> set[str]:
            found = await search.match_ids(conn, "Observation", [("code", d.token(code))],
                                           limit=5, visible=visible)
            return d.keys((None, None, i) for i in found)

        assert await ids("secret", None) == {"obsB2"}
        assert await ids("secret", hidden) == set()  # a conditional create would create
        assert await ids("hr", None) == {"obsA", "obsB1"}
        assert await ids("hr", hidden) == {"obsA"}  # one match: a conditional update is sure


async def everything_of(app: Any, d: Data, patient: str, visible: Visibility | None,
                        count: int = 100) -> list[str]:
    """The keys of Patient/[patient]/$everything, every page, in order."""
    query = everything.parse(d.id(patient), [("_count", str(count))], visible=visible)
    keys: list[str] = []
    async with app.state.db.read(snapshot=True) as conn:
        while True:
            stop = await everything.next_page(conn, query)
            keys += [r[2].removesuffix(f"-{d.tag}")
                     async for r in everything.rows(conn, query, stop)]
            if stop is None:
                return keys
            query.first = stop


async def test_everything(app: Any, data: Data) -> None:
    d, hidden = data, only(data, "pA")
    a_record = {"pA", "encA", "obsA", "condA", "taskA", "provA", "orgA", "dr"}
    assert set(await everything_of(app, d, "pA", None)) == a_record | {"obsB2"}
    assert set(await everything_of(app, d, "pA", hidden)) == a_record
    assert set(await everything_of(app, d, "pB", None)) == {
        "pB", "encB", "obsB1", "obsB2", "condB", "provB", "condMoved", "orgB", "dr"}
    # nothing of B, not even the directory entries only B's record points at
    assert await everything_of(app, d, "pB", hidden) == []
    # paged one row at a time: the same rows, each once, and no empty page at the end
    paged = await everything_of(app, d, "pA", hidden, count=1)
    assert sorted(paged) == sorted(a_record)


async def history_keys(app: Any, d: Data, type_: str | None,
                       visible: Visibility | None) -> list[tuple[str, int]]:
    async with app.state.db.read() as conn:
        rows, _ = await interactions.history(conn, type_=type_, id_=None, since=d.since,
                                             count=1000, before=None, visible=visible)
    suffix = f"-{d.tag}"
    return sorted((r[2].removesuffix(suffix), r[3]) for r in rows if r[2].endswith(suffix))


async def test_history(app: Any, data: Data) -> None:
    d, hidden = data, only(data, "pA")
    assert await history_keys(app, d, "Observation", None) == [
        ("obsA", 1), ("obsA", 2), ("obsB1", 1), ("obsB1", 2), ("obsB2", 1)]
    assert await history_keys(app, d, "Observation", hidden) == [("obsA", 1), ("obsA", 2)]
    # condMoved was A's at version 1; it is B's now, so none of its versions shows
    assert await history_keys(app, d, "Condition", hidden) == [("condA", 1)]
    everyone = await history_keys(app, d, None, None)
    assert len(everyone) == len(d.bodies) + 3
    a_sees = {("orgA", 1), ("orgB", 1), ("dr", 1), ("pA", 1), ("encA", 1), ("obsA", 1),
              ("obsA", 2), ("condA", 1), ("taskA", 1), ("provA", 1)}
    assert set(await history_keys(app, d, None, hidden)) == a_sees
    async with app.state.db.read() as conn:
        rows, _ = await interactions.history(conn, type_="Observation", id_=d.id("obsA"),
                                             since=None, count=10, before=None, visible=hidden)
        assert sorted(r[3] for r in rows) == [1, 2]
        for type_, key in (("Observation", "obsB1"), ("Condition", "condMoved")):
            with pytest.raises(NotFound):  # as if it did not exist
                await interactions.history(conn, type_=type_, id_=d.id(key), since=None,
                                           count=10, before=None, visible=hidden)


async def test_the_policy_of_patient_a(app: Any, data: Data) -> None:
    """The real policy: A's own record and the directory; not B's, and no Tasks at all."""
    d = data
    mine = await policy_of_a(app, d)
    every = [("code", f"{d.token('hr')},{d.token('secret')}"), ("_total", "accurate")]
    matches, _, page = await find(app, d, "Observation", every, mine)
    assert (matches, page.total) == ({"obsA"}, 1)
    assert (await find(app, d, "Observation", [("subject.name", f"Bravo{d.tag}")],
                       mine))[0] == set()
    assert (await find(app, d, "Observation", [
        ("subject:Patient.general-practitioner:Organization.name", f"PracticeA{d.tag}")],
        mine))[0] == {"obsA"}
    assert (await find(app, d, "Patient", [
        ("_id", f"{d.id('pA')},{d.id('pB')}"),
        ("_has:Observation:performer:code", d.token("secret"))], mine))[0] == set()
    assert (await find(app, d, "Practitioner", [
        ("_has:Observation:performer:code", d.token("secret"))], mine))[0] == set()
    assert (await find(app, d, "Task", [("_id", d.id("taskA"))], mine))[0] == set()
    assert (await find(app, d, "Practitioner", [
        ("_id", d.id("dr")), ("_revinclude", "Observation:performer"),
        ("_revinclude:iterate", "Provenance:target")], mine))[1] == {"obsA", "provA"}
    assert (await find(app, d, "Observation", [
        ("_id", d.id("obsA")), ("_include", "*")], mine))[1] == {"pA", "dr", "encA"}
    assert set(await everything_of(app, d, "pA", mine)) == {
        "pA", "encA", "obsA", "condA", "provA", "orgA", "dr"}
    assert await everything_of(app, d, "pB", mine) == []
    assert await history_keys(app, d, "Observation", mine) == [("obsA", 1), ("obsA", 2)]
    async with app.state.db.read() as conn:
        found = await search.match_ids(conn, "Observation", [("code", d.token("secret"))],
                                       visible=mine)
        assert found == []


async def test_one_callers_filter_never_serves_another(app: Any, data: Data) -> None:
    """The same searches, one caller after another: each gets its own answer (no statement
    or cache built for one caller's filter answers the next)."""
    d = data
    callers = {"A": only(d, "pA"), "B": only(d, "pB"), "all": None}
    chain = [("subject:Patient.general-practitioner:Organization.name",
              f"PracticeA{d.tag},PracticeB{d.tag}")]
    has = [("_has:Observation:performer:code", d.token("secret"))]
    expected = {  # (the chain's matches, the _has matches, B's $everything holds condB)
        "A": ({"obsA"}, set(), False),
        "B": ({"obsB1", "obsB2"}, set(), True),  # B's Observation names A; A is hidden
        "all": ({"obsA", "obsB1", "obsB2"}, {"pA"}, True),
    }
    for who in ("A", "B", "all", "B", "A", "all", "A"):
        obs, patients, cond_b = expected[who]
        assert (await find(app, d, "Observation", chain, callers[who]))[0] == obs, who
        assert (await find(app, d, "Patient", has, callers[who]))[0] == patients, who
        assert ("condB" in await everything_of(app, d, "pB", callers[who])) == cond_b, who
