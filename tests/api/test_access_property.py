"""Every way a search can reveal a resource agrees with a read of it by id (issue 9).

For several principals (GPs of two practices, a community nurse, a patient, a carer, the
network's backend service, and tokens whose SMART scopes are narrowed by type, by search
conditions or to a launch patient), every search feature is run over one small network —
plain searches, paging links, `_total`, `_summary=count`, chains, `_has`,
`_include`/`_revinclude` with `:iterate` and `*`, `$everything`, history at each level, and
the GET entries of batch and transaction Bundles — and:
- every resource returned is one the same token reads by id (200): nothing is revealed that
  a read would hide;
- for plain searches, the matches (over every page) and the counts are exactly the
  resources the backend service's search finds that the principal reads by id: the filter
  hides nothing a read would show, and counts only what it shows.
Conditional create, update and delete never match what the caller may not read.
"""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from fhir.store import iso_instant
from tests.api.support import link
from tests.tokens import bearer, mint

Body = dict[str, Any]
SDS = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
TAG = "urn:property"
PROXY_ROLE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
AUDITS = 10  # AuditEvents read back per answer (see Checker.sound)


def ref(kind: str, id_: str) -> Body:
    return {"reference": f"{kind}/{id_}"}


@pytest.fixture(scope="module")
async def net(client: httpx.AsyncClient, app: Any) -> SimpleNamespace:
    """Practices A and B; P1 and P3 at A (P3's Consent keeps the record in the practice, and
    B's GP is in P3's care team), P2 and P4 at B (a community nurse in P4's care team); P1's
    daughter holds a proxy grant for Conditions and Observations; sealed entries."""
    tag = uuid.uuid4().hex[:10]
    n = SimpleNamespace(tag=tag, since=iso_instant(time.time() - 1))
    meta = {"tag": [{"system": TAG, "code": tag}]}

    async def make(body: Body, **extra: Any) -> str:
        body = {**body, "meta": {**meta, **extra}}
        r = await client.post(f"/{body['resourceType']}", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    org = {k: await make({"resourceType": "Organization", "name": f"{k} {tag}"})
           for k in ("A", "B", "N", "trust")}
    staff = {}
    for who, where, code in (("gp_a", "A", "R0260"), ("gp_b", "B", "R0260"),
                             ("nurse", "N", "R0700")):
        staff[who] = await make({"resourceType": "Practitioner", "name": [{"family": who}]})
        await make({"resourceType": "PractitionerRole",
                    "practitioner": ref("Practitioner", staff[who]),
                    "organization": ref("Organization", org[where]),
                    "code": [{"coding": [{"system": SDS, "code": code}]}]})
    n.staff = staff
    n.patients = {}
    for name, practice in (("p1", "A"), ("p2", "B"), ("p3", "A"), ("p4", "B")):
        n.patients[name] = await make({
            "resourceType": "Patient", "name": [{"family": f"Prop{name}{tag}"}],
            "generalPractitioner": [ref("Organization", org[practice])]})
    p = n.patients
    await make({"resourceType": "CareTeam", "status": "active", "subject": ref("Patient", p["p3"]),
                "participant": [{"member": ref("Practitioner", staff["gp_b"])}]})
    await make({"resourceType": "CareTeam", "status": "active", "subject": ref("Patient", p["p4"]),
                "participant": [{"member": ref("Practitioner", staff["nurse"])}]})
    privacy = {"scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                "consentscope", "code": "patient-privacy"}]},
               "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}]}
    await make({"resourceType": "Consent", "status": "active", **privacy,
                "patient": ref("Patient", p["p3"]), "provision": {"type": "deny"}})
    daughter = await make({"resourceType": "RelatedPerson", "active": True,
                           "patient": ref("Patient", p["p1"])})
    await make({"resourceType": "Consent", "status": "active", **privacy,
                "patient": ref("Patient", p["p1"]), "provision": {
                    "type": "permit", "actor": [{
                        "role": {"coding": [{"system": PROXY_ROLE, "code": "IRCP"}]},
                        "reference": ref("RelatedPerson", daughter)}],
                    "class": [{"system": "http://hl7.org/fhir/resource-types", "code": t}
                              for t in ("Condition", "Observation")]}})
    medication = await make({"resourceType": "Medication", "code": {"text": f"med {tag}"}})
    for name, pid in p.items():
        for category in ("laboratory", "vital-signs"):
            await make({"resourceType": "Observation", "status": "final",
                        "subject": ref("Patient", pid),
                        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
                        "code": {"coding": [{"system": "urn:prop", "code": f"{category}-{name}"}]},
                        "performer": [ref("Practitioner", staff["gp_a"])]})
        await make({"resourceType": "Condition", "subject": ref("Patient", pid),
                    "identifier": [{"system": "urn:prop", "value": f"{tag}-{name}"}],
                    "code": {"text": f"asthma {name}"}})
        await make({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                    "subject": ref("Patient", pid),
                    "medicationReference": ref("Medication", medication)})
        encounter = await make({"resourceType": "Encounter", "status": "finished",
                                "class": {"code": "AMB"}, "subject": ref("Patient", pid)})
        await make({"resourceType": "Provenance", "recorded": "2025-01-01T00:00:00Z",
                    "target": [ref("Encounter", encounter), ref("Patient", pid)],
                    "agent": [{"who": ref("Practitioner", staff["gp_b"])}]})
    for label in ("PSY", "SDV"):
        await make({"resourceType": "Condition", "subject": ref("Patient", p["p1"]),
                    "code": {"text": f"sealed {label}"}},
                   security=[{"system": ACT, "code": label}],
                   source=f"Organization/{org['trust']}")

    async def token(sub: str, scope: str, **kw: Any) -> dict[str, str]:
        if sub.startswith(("Practitioner/", "Patient/", "RelatedPerson/")):
            kw.setdefault("fhir_user", sub)
        return bearer(await mint(app, sub=sub, scope=scope, **kw))

    gp_a = f"Practitioner/{staff['gp_a']}"
    n.who = {
        "gp_a": await token(gp_a, "user/*.cruds"),
        "gp_b": await token(f"Practitioner/{staff['gp_b']}", "user/*.cruds"),
        "nurse": await token(f"Practitioner/{staff['nurse']}", "user/*.rs"),
        "patient": await token(f"Patient/{p['p1']}", "patient/*.rs", patient=p["p1"]),
        "carer": await token(f"RelatedPerson/{daughter}", "user/*.rs"),
        "backend": await token("carenet-test-suite", "system/*.rs"),
        "gp_a_labs": await token(gp_a, "user/Observation.rs?category=laboratory "
                                       "user/Patient.rs"),
        "gp_a_launched": await token(gp_a, "patient/*.rs", patient=p["p1"]),
        "gp_a_mixed": await token(gp_a, "user/Patient.rs user/Condition.rs "
                                        "patient/Observation.rs", patient=p["p1"]),
        "backend_vitals": await token("carenet-test-suite", "system/Patient.rs "
                                      "system/Observation.rs?category=vital-signs "
                                      "system/Condition.rs system/Encounter.rs"),
    }
    return n


def _plain(n: SimpleNamespace) -> list[tuple[str, list[tuple[str, str]]]]:
    """Searches whose answer must be exactly what the principal reads of the whole answer."""
    tagged = [("_tag", f"{TAG}|{n.tag}")]
    return [(t, tagged) for t in ("Observation", "Condition", "Patient", "Encounter",
                                  "MedicationRequest", "Provenance")] + [
        ("Observation", [*tagged, ("category", "laboratory")]),
        ("Observation", [*tagged, ("category", "vital-signs")]),
        ("Observation", [*tagged, ("subject", f"Patient/{n.patients['p1']}")]),
    ]


def _revealing(n: SimpleNamespace) -> list[tuple[str, list[tuple[str, str]]]]:
    """Searches that reach beyond their matches: chains, _has, includes."""
    tagged = [("_tag", f"{TAG}|{n.tag}")]
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for obs in ([], [("category", "laboratory")], [("category", "vital-signs")]):
        out += [
            ("Observation", [*tagged, *obs, ("subject:Patient.name", f"Propp1{n.tag}")]),
            ("Observation", [*tagged, *obs, ("_include", "Observation:subject"),
                             ("_include:iterate", "Patient:general-practitioner"),
                             ("_revinclude:iterate", "Provenance:target")]),
            ("Observation", [*tagged, *obs, ("_include", "*"), ("_revinclude:iterate", "*")]),
        ]
    out += [
        ("Patient", [*tagged, ("_has:Observation:subject:category", "vital-signs")]),
        ("Patient", [*tagged, ("_has:Condition:subject:code:text", "asthma")]),
        ("Patient", [*tagged, ("_revinclude", "Observation:subject"),
                     ("_revinclude", "Condition:subject"),
                     ("_revinclude:iterate", "Provenance:target")]),
        ("Patient", [*tagged, ("_revinclude:iterate", "*")]),
        ("Practitioner", [("_id", n.staff["gp_a"]), ("_revinclude", "Observation:performer")]),
        ("Encounter", [*tagged, ("_revinclude", "Provenance:target"),
                       ("_include:iterate", "Provenance:agent")]),
        ("MedicationRequest", [*tagged, ("_include", "MedicationRequest:medication"),
                               ("_include", "MedicationRequest:subject")]),
    ]
    return out


class Checker:
    """Follows one principal's answers and checks each resource against a read by id."""

    def __init__(self, client: httpx.AsyncClient, who: dict[str, str]) -> None:
        self.client, self.who = client, who
        self.readable: dict[str, bool] = {}

    async def reads(self, key: str) -> bool:
        if key not in self.readable:
            r = await self.client.get(f"/{key}", headers=self.who)
            assert r.status_code in (200, 403, 404), r.text
            self.readable[key] = r.status_code == 200
        return self.readable[key]

    async def sound(self, resources: list[Body], where: str) -> None:
        # Every request here leaves an AuditEvent naming its patient, which `*` includes
        # then reach by the hundred for an all-seeing principal: a sample of them is read
        # (they are decided alike); every other resource is read.
        audits = [r for r in resources if r["resourceType"] == "AuditEvent"]
        for res in [r for r in resources if r["resourceType"] != "AuditEvent"] + audits[:AUDITS]:
            key = f"{res['resourceType']}/{res['id']}"
            assert await self.reads(key), f"{where} revealed {key}, which a read hides"

    async def pages(self, path: str) -> list[Body] | None:
        """Every page of a search (None when it is refused as a whole: 403 or 404)."""
        r = await self.client.get(path, headers=self.who)
        if r.status_code in (403, 404):
            return None
        assert r.status_code == 200, (path, r.text)
        out = [r.json()]
        while (nxt := link(out[-1], "next")) is not None:
            assert len(out) < 100, "runaway paging"
            r = await self.client.get(nxt, headers=self.who)
            assert r.status_code == 200, r.text
            out.append(r.json())
        return out


def resources(bundle: Body) -> list[Body]:
    """Every resource in a Bundle, and in the Bundles of its entries (batch answers)."""
    out = []
    for e in bundle.get("entry", ()):
        res = e.get("resource")
        if res is None:
            continue
        if res["resourceType"] == "Bundle":
            out += resources(res)
        elif res["resourceType"] != "OperationOutcome":
            out.append(res)
    return out


def keys(found: list[Body]) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in found}


PRINCIPALS = ["gp_a", "gp_b", "nurse", "patient", "carer", "backend", "gp_a_labs",
              "gp_a_launched", "gp_a_mixed", "backend_vitals"]


@pytest.mark.parametrize("name", PRINCIPALS)
async def test_every_search_feature_agrees_with_a_read_by_id(
        client: httpx.AsyncClient, net: SimpleNamespace, name: str) -> None:
    check = Checker(client, net.who[name])
    everyone = Checker(client, net.who["backend"])
    for type_, params in _plain(net):
        all_pages = await everyone.pages(f"/{type_}?{urlencode(params)}")
        assert all_pages is not None
        whole = keys([r for page in all_pages for r in resources(page)])
        assert whole, (type_, params)  # the data is there to be found
        paged = [*params, ("_count", "3"), ("_total", "accurate")]
        mine = await check.pages(f"/{type_}?{urlencode(paged)}")
        if mine is None:
            continue  # the token may not search this way at all
        found = [r for page in mine for r in resources(page)]
        assert len(found) == len(keys(found)), "a resource repeats across pages"
        expected = {k for k in whole if await check.reads(k)}
        assert keys(found) == expected, (type_, params)
        assert mine[0]["total"] == len(expected), (type_, params, mine[0]["total"])
        r = await client.get(f"/{type_}", params=[*params, ("_summary", "count")],
                             headers=net.who[name])
        assert r.status_code == 200 and r.json()["total"] == len(expected), r.text
    for type_, params in _revealing(net):
        found = await check.pages(f"/{type_}?{urlencode([*params, ('_count', '3')])}")
        for page in found or ():
            await check.sound(resources(page), f"{type_}?{urlencode(params)}")
    for pid in net.patients.values():
        found = await check.pages(f"/Patient/{pid}/$everything?_count=7")
        for page in found or ():
            await check.sound(resources(page), f"Patient/{pid}/$everything")
    for path in ("/_history", "/Observation/_history", "/Condition/_history"):
        found = await check.pages(f"{path}?{urlencode({'_since': net.since, '_count': '50'})}")
        for page in found or ():
            await check.sound(resources(page), path)
    for key in sorted(k for k in check.readable if k.startswith(("Observation/", "Patient/"))):
        history = await check.pages(f"/{key}/_history")
        assert (history is not None) is check.readable[key], key
    urls = [f"{t}?{urlencode(p)}" for t, p in _plain(net) + _revealing(net)]
    urls += [f"Patient/{pid}/Observation" for pid in net.patients.values()]
    for kind in ("batch", "transaction"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [
            {"request": {"method": "GET", "url": url}} for url in urls]}
        r = await client.post("", json=bundle, headers=net.who[name])
        # A transaction is all or nothing: one entry refused (a compartment the principal
        # may not see answers 404) refuses it; a batch answers entry by entry.
        assert r.status_code in ((200,) if kind == "batch" else (200, 403, 404)), r.text
        if r.status_code == 200:
            await check.sound(resources(r.json()), kind)
    if kind == "batch":  # reads of what the principal reads, and of what it does not
        bundle["type"] = "batch"
        bundle["entry"] = [{"request": {"method": "GET", "url": k}} for k in sorted(check.readable)]
        r = await client.post("", json=bundle, headers=net.who[name])
        assert r.status_code == 200, r.text
        for entry, key in zip(r.json()["entry"], sorted(check.readable), strict=True):
            assert entry["response"]["status"].startswith("200") is check.readable[key], key


@pytest.mark.parametrize("name", ["gp_b", "nurse", "carer", "gp_a_launched"])
async def test_conditional_writes_never_match_what_the_caller_cannot_read(
        client: httpx.AsyncClient, net: SimpleNamespace, name: str) -> None:
    """P1's Condition (identifier urn:prop|[tag]-p1) is hidden from B's GP and the nurse;
    P2's from the carer and the launched app."""
    who = net.who[name]
    target = "p2" if name in ("carer", "gp_a_launched") else "p1"
    ident = f"urn:prop|{net.tag}-{target}"
    before = (await client.get("/Condition", params={"identifier": ident})).json()
    (hidden,) = resources(before)
    assert (await client.get(f"/Condition/{hidden['id']}", headers=who)).status_code == 404
    body = {"resourceType": "Condition", "code": {"text": "copy"},
            "subject": ref("Patient", net.patients["p2" if target == "p1" else "p1"]),
            "identifier": [{"system": "urn:prop", "value": f"{net.tag}-{target}"}]}
    attempts = [
        await client.post("/Condition", json=body, headers={**who, "If-None-Exist":
                                                            f"identifier={ident}"}),
        await client.put("/Condition", params={"identifier": ident}, json=body, headers=who),
        await client.delete("/Condition", params={"identifier": ident}, headers=who),
    ]
    for r in attempts:
        assert r.status_code in (200, 201, 403, 404, 412), r.text
        assert hidden["id"] not in r.text, r.text
    after = (await client.get(f"/Condition/{hidden['id']}")).json()
    assert after == hidden  # neither changed nor deleted
