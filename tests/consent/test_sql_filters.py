"""The access policy as SQL, on SQLite and PostgreSQL, against a small hand-built network.

A network written through the HTTP API: practices A and B, a community nursing team, a
pharmacy, social care and the network, one member of staff each, and eight patients whose
records exercise each relationship, consent and label. `search_filter` runs directly through
the app's `Database`; every expected set below was worked out by hand from the rules.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from consent import context, relationships
from consent.policy import ResourceMeta, decide, search_filter
from consent.principals import BreakGlass, Kind, Principal, Relationship, staff
from fhir.schema import resource
from tests.consent.support import ACT_CODE, SCOPE, actor, types

SDS = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"
NOW = 1_750_000_000.0
STAFF = {  # key -> (organisation key, SDS job role)
    "gpA": ("orgA", "R0260"), "gpB": ("orgB", "R0260"), "cn": ("orgCN", "R0700"),
    "ph": ("orgPH", "R1290"), "sw": ("orgSC", "R1330"), "cm": ("orgNET", "R0600"),
    "admA": ("orgA", "R8009"),
}


class Net:
    """Ids made unique per module run: `net.id('p1')`, `net.ref('Patient', 'p1')`."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.resources: dict[str, dict[str, Any]] = {}

    def id(self, key: str) -> str:
        return f"{key}-{self.tag}"

    def ref(self, type_: str, key: str) -> dict[str, str]:
        return {"reference": f"{type_}/{self.id(key)}"}

    def add(self, key: str, type_: str, **body: Any) -> None:
        self.resources[key] = {"resourceType": type_, "id": self.id(key), **body}


def _build(net: Net) -> None:
    for key in ("orgA", "orgB", "orgCN", "orgPH", "orgSC", "orgNET"):
        net.add(key, "Organization", name=key)
    for key, (org, code) in STAFF.items():
        net.add(key, "Practitioner", name=[{"family": key}])
        net.add(f"{key}-role", "PractitionerRole", practitioner=net.ref("Practitioner", key),
                organization=net.ref("Organization", org),
                code=[{"coding": [{"system": SDS, "code": code}]}])
    practice = {"p1": "orgA", "p2": "orgA"} | {f"p{i}": "orgB" for i in range(3, 9)}
    for key, org in practice.items():
        net.add(key, "Patient", name=[{"family": key}],
                generalPractitioner=[net.ref("Organization", org)])
        net.add(f"cond{key[1:]}", "Condition", subject=net.ref("Patient", key),
                code={"text": "frailty"})

    def team(key: str, patient: str, status: str, *members: dict[str, str]) -> None:
        net.add(key, "CareTeam", status=status, subject=net.ref("Patient", patient),
                participant=[{"member": m} for m in members])

    def consent(key: str, patient: str, provision: dict[str, Any]) -> None:
        net.add(key, "Consent", status="active", scope=SCOPE,
                category=[{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                patient=net.ref("Patient", patient), provision=provision)

    def labelled(key: str, type_: str, patient: str, label: str | None, source: str | None,
                 **body: Any) -> None:
        meta: dict[str, Any] = {}
        if label:
            meta["security"] = [{"system": ACT_CODE, "code": label}]
        if source:
            meta["source"] = f"Organization/{net.id(source)}"
        net.add(key, type_, **({"meta": meta} if meta else {}),
                subject=net.ref("Patient", patient), **body)

    # p2: registered at A; a care team with the community nurse; sharing outside A refused.
    team("team2", "p2", "active", net.ref("PractitionerRole", "cn-role"))
    consent("consent2", "p2", {"type": "deny"})
    # p3: at B; the community nurse and the pharmacy (as an organisation) in its care team;
    # a mental health entry written by practice B.
    team("team3", "p3", "active", net.ref("PractitionerRole", "cn-role"),
         net.ref("Organization", "orgPH"))
    labelled("cond3psy", "Condition", "p3", "PSY", "orgB", code={"text": "depression"})
    labelled("obs3", "Observation", "p3", None, None, status="final", code={"text": "BP"})
    # p4: at B; an open Task for social care, a completed one for the pharmacy.
    net.add("task4", "Task", status="in-progress", intent="order",
            **{"for": net.ref("Patient", "p4")}, owner=net.ref("Organization", "orgSC"))
    net.add("task4done", "Task", status="completed", intent="order",
            **{"for": net.ref("Patient", "p4")}, owner=net.ref("Organization", "orgPH"))
    # p5: at B; an active referral to the pharmacy; Observations not to be shared.
    net.add("sr5", "ServiceRequest", status="active", intent="order",
            subject=net.ref("Patient", "p5"), performer=[net.ref("Organization", "orgPH")])
    labelled("obs5", "Observation", "p5", None, None, status="final", code={"text": "BP"})
    consent("consent5", "p5", {"type": "permit", "provision": [
        {"type": "deny", "class": types("Observation")}]})
    # p6: at B; the community nurse was in a care team that has ended.
    team("team6", "p6", "inactive", net.ref("PractitionerRole", "cn-role"))
    # p7: at B; the case manager claimed a relationship.
    net.add("claim7", "Basic", code={"coding": [{"system": relationships.ACCESS_SYSTEM,
                                                 "code": relationships.SELF_CLAIM}]},
            subject=net.ref("Patient", "p7"), author=net.ref("Practitioner", "cm"))
    # p8: at B; a carer with a proxy grant for medicines and conditions; a third-party entry
    # and a safeguarding entry.
    net.add("rp8", "RelatedPerson", active=True, patient=net.ref("Patient", "p8"))
    consent("grant8", "p8", {"type": "permit",
                             "actor": [actor(f"RelatedPerson/{net.id('rp8')}")],
                             "class": types("MedicationRequest", "Condition")})
    labelled("cond8nopat", "Condition", "p8", "NOPAT", None, code={"text": "father's illness"})
    labelled("cond8sdv", "Condition", "p8", "SDV", "orgB", code={"text": "safeguarding"})
    labelled("obs8", "Observation", "p8", None, None, status="final", code={"text": "BP"})
    net.add("med8", "MedicationRequest", status="active", intent="order",
            subject=net.ref("Patient", "p8"),
            medicationCodeableConcept={"text": "paracetamol"})


@pytest.fixture(scope="module")
async def net(client: httpx.AsyncClient, app: Any) -> Net:
    import uuid

    network = Net(uuid.uuid4().hex[:8])
    _build(network)
    for body in network.resources.values():
        r = await client.put(f"/{body['resourceType']}/{body['id']}", json=body)
        assert r.status_code == 201, r.text
    return network


def who(net: Net, key: str, *, break_glass: str | None = None) -> Principal:
    """The principal of a key of STAFF, or carer / patient8 / po / sys-net."""
    if key in STAFF:
        bg = BreakGlass.start(net.id(break_glass), "Collapsed at home", NOW - 60) \
            if break_glass else None
        return staff(net.resources[f"{key}-role"], break_glass=bg)
    return {
        "carer": Principal(Kind.CARER, f"RelatedPerson/{net.id('rp8')}"),
        "patient8": Principal(Kind.PATIENT, f"Patient/{net.id('p8')}"),
        "po": Principal(Kind.PRIVACY_OFFICER, "Practitioner/po",
                        (f"Organization/{net.id('orgNET')}",)),
        "sys-net": Principal(Kind.SYSTEM, "Device/risk-job"),
    }[key]


PATIENT_DATA = {  # patient -> the keys of its record
    "p1": ["p1", "cond1"], "p2": ["p2", "cond2", "team2", "consent2"],
    "p3": ["p3", "cond3", "team3", "cond3psy", "obs3"],
    "p4": ["p4", "cond4", "task4", "task4done"],
    "p5": ["p5", "cond5", "sr5", "obs5", "consent5"], "p6": ["p6", "cond6", "team6"],
    "p7": ["p7", "cond7", "claim7"],
    "p8": ["p8", "cond8", "rp8", "grant8", "cond8nopat", "cond8sdv", "obs8", "med8"],
}
ALL = [k for keys in PATIENT_DATA.values() for k in keys]
EXPECTED = {
    "gpA": {"p1", "cond1", "p2", "cond2", "team2", "consent2"},
    "gpB": {k for p in ("p3", "p4", "p5", "p6", "p7", "p8") for k in PATIENT_DATA[p]}
    - {"claim7"},  # a GP does not read Basic
    "cn": {"p3", "cond3", "team3", "obs3"},  # p2 refuses sharing; p6's team ended; PSY sealed
    "ph": {"p3", "cond3", "team3", "obs3", "p5", "cond5", "sr5", "consent5"},  # obs5: consent
    "sw": {"p4", "cond4", "task4", "task4done"},
    "cm": {"p7", "cond7"},
    "admA": {"p1", "p2"},
    "carer": {"cond8", "med8"},
    "patient8": {"p8", "cond8", "rp8", "grant8", "obs8", "med8"},
    "po": {"p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "consent2", "consent5", "grant8",
           "claim7", "rp8"},
    # A network backend service sees sealed entries and is not bound by Consents
    # (consent/data/README.md, consent/policy.py).
    "sys-net": set(ALL),
}


async def visible(app: Any, net: Net, principal: Principal, type_: str | None = None,
                  search: bool = True) -> set[str]:
    """The keys of the network's patient data `search_filter` lets `principal` see."""
    ids = {net.id(k): k for k in ALL}
    async with app.state.db.read() as conn:
        ctx = await context.resolve(conn, principal, now=NOW, search=search)
        where = [resource.c.id.in_(sorted(ids)), resource.c.deleted.is_(False),
                 search_filter(ctx, resource, type_)]
        if type_ is not None:
            where.append(resource.c.type == type_)
        rows = (await conn.execute(sa.select(resource.c.id).where(*where))).scalars()
        return {ids[i] for i in rows}


@pytest.mark.parametrize("key", sorted(EXPECTED))
async def test_each_principal_sees_exactly_what_the_rules_give(app: Any, net: Net,
                                                               key: str) -> None:
    assert await visible(app, net, who(net, key)) == EXPECTED[key]


@pytest.mark.parametrize("key", ["gpA", "gpB", "cn", "ph", "sw", "cm"])
async def test_without_listed_patients_the_selects_give_the_same(
        app: Any, net: Net, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the list limit the relationship SELECTs filter instead: same answer."""
    monkeypatch.setattr(context, "LIST_LIMIT", 0)
    assert await visible(app, net, who(net, key)) == EXPECTED[key]


async def test_search_of_one_type(app: Any, net: Net) -> None:
    assert await visible(app, net, who(net, "ph"), "Observation") == {"obs3"}
    assert await visible(app, net, who(net, "ph"), "Condition") == {"cond3", "cond5"}
    assert await visible(app, net, who(net, "sw"), "Observation") == set()  # not their role
    assert await visible(app, net, who(net, "carer"), "MedicationRequest") == {"med8"}
    assert await visible(app, net, who(net, "carer"), "Observation") == set()


async def test_consents_not_loaded_hide_every_consented_patient(app: Any, net: Net) -> None:
    """Default deny: without the Consents resolved for a search, a consented patient is
    hidden from everyone outside their practice, whatever the Consent says."""
    assert await visible(app, net, who(net, "ph"), search=False) == {
        "p3", "cond3", "team3", "obs3"}  # not p5, whose Consent would allow most of it
    assert await visible(app, net, who(net, "gpA"), search=False) == EXPECTED["gpA"]
    assert await visible(app, net, who(net, "sys-net"), search=False) == set(ALL)


async def test_break_glass_opens_one_patient_but_not_safeguarding(app: Any, net: Net) -> None:
    gp = who(net, "gpA", break_glass="p3")
    assert await visible(app, net, gp) == EXPECTED["gpA"] | set(PATIENT_DATA["p3"])
    ph = who(net, "ph", break_glass="p8")
    assert await visible(app, net, ph) == EXPECTED["ph"] | {
        "p8", "cond8", "rp8", "grant8", "cond8nopat", "obs8", "med8"}  # not cond8sdv
    expired = staff(net.resources["ph-role"],
                    break_glass=BreakGlass("p8", "old", NOW - 7200, NOW - 3600))
    assert await visible(app, net, expired) == EXPECTED["ph"]


async def test_directory_resources_are_visible_to_staff_and_patients(app: Any,
                                                                     net: Net) -> None:
    ids = [net.id(k) for k in ("gpA", "orgPH")]
    for key in ("cn", "admA", "patient8", "carer"):
        async with app.state.db.read() as conn:
            ctx = await context.resolve(conn, who(net, key), now=NOW, search=True)
            found = (await conn.execute(sa.select(resource.c.id).where(
                resource.c.id.in_(ids), search_filter(ctx, resource, None)))).scalars()
            assert sorted(found) == sorted(ids), key


async def test_relationships_for_single_patients(app: Any, net: Net) -> None:
    cases = {
        "cn": {"p2": {Relationship.CARE_TEAM}, "p3": {Relationship.CARE_TEAM}, "p6": set()},
        "ph": {"p3": {Relationship.CARE_TEAM}, "p4": set(), "p5": {Relationship.REFERRAL}},
        "gpA": {"p1": {Relationship.REGISTERED}, "p3": set()},
        "sw": {"p4": {Relationship.REFERRAL}, "p5": set()},
        "cm": {"p7": {Relationship.SELF_CLAIMED}, "p8": set()},
        "carer": {"p8": {Relationship.PROXY}, "p7": set()},
    }
    async with app.state.db.read() as conn:
        for key, expected in cases.items():
            found = await relationships.resolve(conn, who(net, key),
                                                [net.id(p) for p in expected])
            assert {p: set(found[net.id(p)]) for p in expected} == expected, key


@pytest.mark.parametrize("key", sorted(EXPECTED))
async def test_decide_agrees_with_the_filter(app: Any, net: Net, key: str) -> None:
    """A read decided per resource answers as the search filter does, row by row."""
    principal = who(net, key)
    patients = [net.id(p) for p in PATIENT_DATA]
    ids = {net.id(k): k for k in ALL}
    async with app.state.db.read() as conn:
        ctx = await context.resolve(conn, principal, now=NOW, patient_ids=patients)
        rows = (await conn.execute(sa.select(
            resource.c.id, resource.c.type, resource.c.patient_id, resource.c.security,
            resource.c.content).where(resource.c.id.in_(sorted(ids))))).all()
    allowed = set()
    for id_, type_, patient_id, security, content in rows:
        body = orjson.loads(content) if isinstance(content, (str, bytes)) else content
        meta = ResourceMeta.of_row(patient_id, security, (body.get("meta") or {}).get("source"))
        decision = decide(ctx, "read", type_, meta)
        if decision.allowed:
            allowed.add(ids[id_])
    assert allowed == EXPECTED[key]


async def test_many_requests_at_once_list_a_principal_s_reach_once(
        app: Any, net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a GP's app sends many requests at once with the list stale, one lists the
    patients and the others wait for it (no stampede of identical listings)."""
    calls = 0
    real = relationships.listed

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(relationships, "listed", counted)
    context.forget_reaches()
    principal = who(net, "gpA")

    async def one() -> frozenset[str]:
        async with app.state.db.read() as conn:
            ctx = await context.resolve(conn, principal, now=NOW, search=True)
            return ctx.reach.get("registered", frozenset())

    found = await asyncio.gather(*(one() for _ in range(10)))
    assert len(set(found)) == 1 and found[0]  # all ten saw the same list of patients
    assert calls == len(context.STAFF_RELATIONSHIPS)  # listed once: one query per relationship
