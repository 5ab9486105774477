"""Access control from the attacker's side, over HTTP, on both backends (issue 5).

A small network loaded by the network's backend service (the `client` fixture): practices A
and B, a GP at each, a community nurse of a third organisation; patients P1 (registered at
A), P2 and P3 (at B; P3's care team has the nurse), P4 (at A, a Consent denying sharing
outside the practice, and a care team naming B's GP). Sealed entries come from a mental
health trust, so no caller here sees them as their author. Every expectation below is worked
out by hand from that data and consent/data/*.csv, not by asking the policy.

What must hold: what a caller may not see answers exactly as what does not exist (404 with
the same OperationOutcome), is never counted, included, chained, matched or listed, and
cannot be written to or conditionally matched; emergency access opens it, audited, alerted
on, and shown in the patient's own access log.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from consent.keys import ALG, SigningKeys
from consent.tokens import Grant, issue_access_token
from fhir.store import iso_instant
from tests.api.support import entry_ids, outcome, pages
from tests.tokens import FHIR_BASE, ISSUER, TEST_CLIENT, bearer, mint

Body = dict[str, Any]
SDS = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ALERT_SYSTEM = "https://carenet.invalid/fhir/CodeSystem/privacy-alert"
REASON = "unconscious in ED, needs meds"


def ref(kind: str, id_: str) -> Body:
    return {"reference": f"{kind}/{id_}"}


async def make(client: httpx.AsyncClient, body: Body, **headers: str) -> str:
    r = await client.post(f"/{body['resourceType']}", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def observation(patient: str, code: str, **extra: Any) -> Body:
    return {"resourceType": "Observation", "status": "final", "subject": ref("Patient", patient),
            "code": {"coding": [{"system": "urn:leak", "code": code}]}, **extra}


def condition(patient: str, text: str, label: str | None = None,
              source: str | None = None) -> Body:
    body: Body = {"resourceType": "Condition", "subject": ref("Patient", patient),
                  "code": {"text": text}}
    if label:
        body["meta"] = {"security": [{"system": ACT_CODE, "code": label}], "source": source}
    return body


async def staff(client: httpx.AsyncClient, family: str, org: str, sds_code: str) -> str:
    prac = await make(client, {"resourceType": "Practitioner", "name": [{"family": family}]})
    await make(client, {"resourceType": "PractitionerRole",
                        "practitioner": ref("Practitioner", prac),
                        "organization": ref("Organization", org),
                        "code": [{"coding": [{"system": SDS, "code": sds_code}]}]})
    return prac


@pytest.fixture(scope="module")
async def net(client: httpx.AsyncClient, app: Any) -> SimpleNamespace:
    """The network, its victims' ids and the attackers' tokens."""
    return await network(client, app)


async def network(client: httpx.AsyncClient, app: Any) -> SimpleNamespace:
    """Load the network (as the loader `client`); its ids and the attackers' tokens."""
    tag = uuid.uuid4().hex[:10]
    n = SimpleNamespace(tag=tag, since=iso_instant(time.time() - 1))
    org = {k: await make(client, {"resourceType": "Organization", "name": f"{k} {tag}"})
           for k in ("A", "B", "nursing", "trust")}
    n.org_a, n.trust = org["A"], f"Organization/{org['trust']}"
    n.gp_a = await staff(client, f"GpA{tag}", org["A"], "R0260")
    n.gp_b = await staff(client, f"GpB{tag}", org["B"], "R0260")
    n.nurse = await staff(client, f"Nurse{tag}", org["nursing"], "R0700")
    n.family2 = f"Leak{tag}Two"
    for i, (practice, family) in enumerate(
            [("A", f"Leak{tag}One"), ("B", n.family2), ("B", f"Leak{tag}Three"),
             ("A", f"Leak{tag}Four")], start=1):
        setattr(n, f"p{i}", await make(client, {
            "resourceType": "Patient", "name": [{"family": family}],
            "generalPractitioner": [ref("Organization", org[practice])]}))
    await make(client, {"resourceType": "CareTeam", "status": "active",
                        "subject": ref("Patient", n.p3),
                        "participant": [{"member": ref("Practitioner", n.nurse)}]})
    await make(client, {"resourceType": "CareTeam", "status": "active",
                        "subject": ref("Patient", n.p4),
                        "participant": [{"member": ref("Practitioner", n.gp_b)}]})
    await make(client, {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": ref("Patient", n.p4), "provision": {"type": "deny"}})
    n.med = await make(client, {"resourceType": "Medication", "code": {"text": f"med {tag}"}})
    # P2's record: the victim. Its Observation has a code only it has, an identifier
    # created through If-None-Exist (a conditional key), a second version, and names A's GP
    # as performer (so a _revinclude from A's GP could reach it).
    n.secret = f"secret-{tag}"
    n.ident = f"urn:leak:{tag}|obs2"
    system, _, value = n.ident.partition("|")
    n.obs2 = await make(client, observation(
        n.p2, n.secret, identifier=[{"system": system, "value": value}],
        performer=[ref("Practitioner", n.gp_a)]), **{"If-None-Exist": f"identifier={n.ident}"})
    r = await client.put(f"/Observation/{n.obs2}", json={
        **observation(n.p2, n.secret, identifier=[{"system": system, "value": value}],
                      performer=[ref("Practitioner", n.gp_a)]), "id": n.obs2,
        "valueString": "v2"})
    assert r.status_code == 200, r.text
    n.cond2 = await make(client, condition(n.p2, "asthma"))
    n.medreq2 = await make(client, {"resourceType": "MedicationRequest", "status": "active",
                                    "intent": "order", "subject": ref("Patient", n.p2),
                                    "medicationReference": ref("Medication", n.med)})
    n.enc2 = await make(client, {"resourceType": "Encounter", "status": "finished",
                                 "class": {"code": "AMB"}, "subject": ref("Patient", n.p2)})
    n.task2 = await make(client, {"resourceType": "Task", "status": "completed",
                                  "intent": "order", "for": ref("Patient", n.p2)})
    n.rp2 = await make(client, {"resourceType": "RelatedPerson",
                                "patient": ref("Patient", n.p2), "name": [{"family": "Kin"}]})
    n.prov2 = await make(client, {
        "resourceType": "Provenance", "recorded": "2025-01-01T00:00:00Z",
        "target": [ref("Observation", n.obs2), ref("Patient", n.p2)],
        "agent": [{"who": ref("Practitioner", n.gp_b)}]})
    n.prov2_bare = await make(client, {  # as EHR feeds send it: no Patient among its targets
        "resourceType": "Provenance", "recorded": "2025-01-01T00:00:00Z",
        "target": [ref("Observation", n.obs2)], "agent": [{"who": ref("Practitioner", n.gp_b)}]})
    # P1's record: A's GP sees it all; P1 sees PSY but not SDV. obs1 is derived from obs2
    # (an _include from it must stop at what the caller may see).
    n.obs1 = await make(client, observation(n.p1, "bp", derivedFrom=[ref("Observation", n.obs2)]))
    n.psy1 = await make(client, condition(n.p1, "depression", "PSY", n.trust))
    n.sdv1 = await make(client, condition(n.p1, "safeguarding", "SDV", n.trust))
    n.medreq1 = await make(client, {"resourceType": "MedicationRequest", "status": "active",
                                    "intent": "order", "subject": ref("Patient", n.p1),
                                    "medicationReference": ref("Medication", n.med)})
    n.obs3 = await make(client, observation(n.p3, "wound"))
    n.psy3 = await make(client, condition(n.p3, "psychosis", "PSY", n.trust))
    n.obs4 = await make(client, observation(n.p4, "hba1c"))
    n.hidden = {"Patient": [n.p2, n.p3], "Observation": [n.obs2, n.obs3],
                "Condition": [n.cond2, n.psy3], "MedicationRequest": [n.medreq2],
                "Encounter": [n.enc2], "Task": [n.task2], "RelatedPerson": [n.rp2],
                "Provenance": [n.prov2, n.prov2_bare]}

    async def practitioner(prac: str, scope: str = "user/*.cruds", **kw: Any) -> dict[str, str]:
        return bearer(await mint(app, sub=f"Practitioner/{prac}", scope=scope,
                                 fhir_user=f"Practitioner/{prac}", **kw))

    async def patient(pid: str, scope: str) -> dict[str, str]:
        return bearer(await mint(app, sub=f"Patient/{pid}", scope=scope,
                                 fhir_user=f"Patient/{pid}", patient=pid))

    n.as_gp_a = await practitioner(n.gp_a)
    n.as_gp_b = await practitioner(n.gp_b)
    n.as_nurse = await practitioner(n.nurse)
    n.as_p1 = await patient(n.p1, "patient/*.rs")
    n.as_p1_user = await patient(n.p1, "user/*.cruds")
    n.gp_a_patients_only = await practitioner(n.gp_a, "user/Patient.rs")
    n.gp_a_launched_p1 = await practitioner(n.gp_a, "patient/*.rs", patient=n.p1)
    return n


def same_not_found(hidden: httpx.Response, unknown: httpx.Response, hidden_id: str,
                   unknown_id: str) -> None:
    """The answer about a hidden resource is the answer about one that does not exist."""
    outcome(hidden, 404)
    assert unknown.status_code == 404, unknown.text
    assert hidden.text.replace(hidden_id, "X") == unknown.text.replace(unknown_id, "X")


def ids(bundle: Body) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", ())]


async def search(client: httpx.AsyncClient, who: dict[str, str], path: str,
                 params: Any = None) -> Body:
    r = await client.get(path, params=params, headers=who)
    assert r.status_code == 200, r.text
    return dict(r.json())


# ---- reads ---------------------------------------------------------------------------------

@pytest.mark.parametrize("attacker", ["as_gp_a", "as_p1", "as_p1_user"])
async def test_read_vread_and_history_of_hidden_resources_answer_as_unknown_ones(
        client: httpx.AsyncClient, net: SimpleNamespace, attacker: str) -> None:
    who = getattr(net, attacker)
    for type_, hidden in net.hidden.items():
        for id_ in hidden:
            if attacker == "as_gp_a" and id_ == net.p2 and type_ == "Patient":
                continue  # checked below, with the rest
            unknown = uuid.uuid4().hex
            for suffix in ("", "/_history/1", "/_history"):
                same_not_found(await client.get(f"/{type_}/{id_}{suffix}", headers=who),
                               await client.get(f"/{type_}/{unknown}{suffix}", headers=who),
                               id_, unknown)
    unknown = uuid.uuid4().hex
    same_not_found(await client.get(f"/Observation/{net.obs2}/_history/2", headers=who),
                   await client.get(f"/Observation/{unknown}/_history/2", headers=who),
                   net.obs2, unknown)


async def test_guessed_ids_answer_404(client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    for guess in ("1", "2", "100", "1000", net.p2, net.obs2 + "0"):
        for type_ in ("Observation", "Patient", "Condition"):
            r = await client.get(f"/{type_}/{guess}", headers=net.as_gp_a)
            if (type_, guess) != ("Patient", net.p2):
                assert r.status_code == 404, (type_, guess, r.text)
    outcome(await client.get(f"/Patient/{net.p2}", headers=net.as_gp_a), 404)


async def test_the_fast_read_path_still_hides_after_a_permitted_read(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    """Warm the token cache and the decided-patient cache, then ask for someone else's."""
    for _ in range(2):
        assert (await client.get(f"/Observation/{net.obs1}", headers=net.as_p1)).status_code \
            == 200
        outcome(await client.get(f"/Observation/{net.obs2}", headers=net.as_p1), 404)
        outcome(await client.get(f"/Observation/{net.obs4}", headers=net.as_gp_b), 404)


# ---- searches ------------------------------------------------------------------------------

async def test_searches_find_and_count_nothing_hidden(client: httpx.AsyncClient,
                                                      net: SimpleNamespace) -> None:
    p2 = f"Patient/{net.p2}"
    for params in ({"subject": p2}, {"patient": p2}, {"_id": net.obs2},
                   {"code": f"urn:leak|{net.secret}"}, {"identifier": net.ident},
                   {"subject:Patient.name": net.family2}):
        for extra in ({}, {"_total": "accurate"}, {"_summary": "count"}):
            found = await search(client, net.as_gp_a, "/Observation", {**params, **extra})
            assert ids(found) == [] and found.get("total", 0) == 0, (params, extra, found)
    seen = await search(client, {}, "/Observation", {"code": f"urn:leak|{net.secret}",
                                                     "_summary": "count"})
    assert seen["total"] == 1  # the loader sees it: the searches above could have found it
    r = await client.post("/Observation/_search", data={"subject": p2, "_total": "accurate"},
                          headers=net.as_gp_a)
    assert r.status_code == 200 and ids(r.json()) == [] and r.json()["total"] == 0, r.text


async def test_has_does_not_match_or_count_a_hidden_patient(client: httpx.AsyncClient,
                                                            net: SimpleNamespace) -> None:
    params = {"_has:Observation:subject:code": f"urn:leak|{net.secret}", "_total": "accurate"}
    assert ids(await search(client, {}, "/Patient", params)) == [net.p2]
    for who in (net.as_gp_a, net.as_p1):
        found = await search(client, who, "/Patient", params)
        assert ids(found) == [] and found["total"] == 0, found
        count = await search(client, who, "/Patient", {**params, "_summary": "count"})
        assert count["total"] == 0


async def test_includes_stop_at_what_the_caller_may_see(client: httpx.AsyncClient,
                                                        net: SimpleNamespace) -> None:
    found = await search(client, net.as_gp_a, "/Observation", [
        ("_id", net.obs1), ("_include", "Observation:derived-from"),
        ("_include:iterate", "Observation:subject"), ("_include:iterate", "Observation:performer")])
    assert sorted(ids(found)) == sorted([net.obs1, net.p1]), found  # not obs2, nor P2
    revs = await search(client, net.as_gp_a, "/Practitioner", [
        ("_id", net.gp_a), ("_revinclude", "Observation:performer")])
    assert ids(revs) == [net.gp_a], revs
    meds = await search(client, net.as_gp_a, "/Medication", [
        ("_id", net.med), ("_revinclude", "MedicationRequest:medication"),
        ("_include:iterate", "MedicationRequest:subject")])
    assert sorted(ids(meds)) == sorted([net.med, net.medreq1, net.p1]), meds
    mine = await search(client, net.as_p1, "/Medication", [
        ("_id", net.med), ("_revinclude", "MedicationRequest:medication")])
    assert sorted(ids(mine)) == sorted([net.med, net.medreq1]), mine


async def test_compartment_and_everything_of_another_patient_answer_404(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    unknown = uuid.uuid4().hex
    for who in (net.as_gp_a, net.as_p1):
        for tail in ("/Observation", "/$everything"):
            same_not_found(await client.get(f"/Patient/{net.p2}{tail}", headers=who),
                           await client.get(f"/Patient/{unknown}{tail}", headers=who),
                           net.p2, unknown)


@pytest.mark.parametrize("attacker", ["as_gp_a", "as_p1"])
async def test_own_everything_holds_no_other_patients_rows(
        client: httpx.AsyncClient, net: SimpleNamespace, attacker: str) -> None:
    assert net.sdv1 in entry_ids(await pages(client, f"/Patient/{net.p1}/$everything"))
    r = await client.get(f"/Patient/{net.p1}/$everything", headers=getattr(net, attacker))
    assert r.status_code == 200, r.text
    found = set(ids(r.json()))
    hidden = {i for group in net.hidden.values() for i in group}
    assert net.obs1 in found and net.p1 in found
    assert not found & hidden, found & hidden
    for e in r.json().get("entry", ()):
        res = e["resource"]
        if res["resourceType"] == "Patient":
            assert res["id"] == net.p1
        assert (res.get("subject") or {}).get("reference", f"Patient/{net.p1}") \
            == f"Patient/{net.p1}", res
    assert (net.sdv1 in found) is (attacker == "as_gp_a")  # SDV: never to the patient


async def test_history_lists_no_hidden_versions(client: httpx.AsyncClient,
                                                net: SimpleNamespace) -> None:
    hidden = {i for group in net.hidden.values() for i in group}
    for who in (net.as_gp_a, net.as_p1):
        for path in ("/Observation/_history", "/_history"):
            r = await client.get(path, params={"_since": net.since, "_count": "1000"},
                                 headers=who)
            assert r.status_code == 200, r.text
            found = set(ids(r.json()))
            assert net.obs1 in found and not found & hidden, found & hidden


async def test_a_provenance_of_a_hidden_resource_is_hidden(client: httpx.AsyncClient,
                                                           net: SimpleNamespace) -> None:
    for who in (net.as_gp_a, net.as_p1):
        found = await search(client, who, "/Provenance", {"target": f"Observation/{net.obs2}"})
        assert ids(found) == []


# ---- transactions --------------------------------------------------------------------------

async def test_a_batch_reads_and_searches_nothing_hidden(client: httpx.AsyncClient,
                                                         net: SimpleNamespace) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation/{net.obs2}"}},
        {"request": {"method": "GET", "url": f"Observation?subject=Patient/{net.p2}"}},
        {"request": {"method": "GET", "url": f"Patient?name={net.family2}"}},
        {"request": {"method": "GET", "url": f"Observation/{net.obs1}"}}]}
    r = await client.post("", json=bundle, headers=net.as_gp_a)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"].startswith("404")
    assert ids(entries[1]["resource"]) == [] and ids(entries[2]["resource"]) == []
    assert entries[3]["resource"]["id"] == net.obs1
    bundle["type"] = "transaction"
    del bundle["entry"][0]
    r = await client.post("", json=bundle, headers=net.as_gp_a)
    assert r.status_code == 200, r.text
    assert [ids(e["resource"]) for e in r.json()["entry"][:2]] == [[], []]
    bundle["entry"].insert(0, {"request": {"method": "GET", "url": f"Observation/{net.obs2}"}})
    outcome(await client.post("", json=bundle, headers=net.as_gp_a), 404)


async def test_writes_to_a_hidden_resource_are_refused_and_change_nothing(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    before = (await client.get(f"/Observation/{net.obs2}")).json()
    forged = {**before, "valueString": "tampered"}
    del forged["meta"]
    r = await client.put(f"/Observation/{net.obs2}", json=forged, headers=net.as_gp_a)
    assert r.status_code in (403, 404), r.text
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": forged, "request": {"method": "PUT", "url": f"Observation/{net.obs2}"}}]}
    r = await client.post("", json=bundle, headers=net.as_gp_a)
    assert r.status_code in (403, 404), r.text
    r = await client.patch(f"/Observation/{net.obs2}", headers={
        **net.as_gp_a, "Content-Type": "application/json-patch+json"},
        json=[{"op": "replace", "path": "/status", "value": "cancelled"}])
    assert r.status_code in (403, 404), r.text
    r = await client.delete(f"/Observation/{net.obs2}", headers=net.as_gp_a)
    assert r.status_code in (403, 404), r.text
    after = (await client.get(f"/Observation/{net.obs2}")).json()
    assert after == before


async def test_a_conditional_create_never_answers_with_a_hidden_match(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    system, _, value = net.ident.partition("|")
    body = observation(net.p1, "copy", identifier=[{"system": system, "value": value}])
    r = await client.post("/Observation", json=body, headers={
        **net.as_gp_a, "If-None-Exist": f"identifier={net.ident}"})
    assert r.status_code in (201, 403), r.text
    assert net.obs2 not in r.text and net.secret not in r.text
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": body, "request": {"method": "POST", "url": "Observation",
                                       "ifNoneExist": f"identifier={net.ident}"}}]}
    r = await client.post("", json=bundle, headers=net.as_gp_a)
    assert r.status_code in (200, 403, 412), r.text
    assert net.obs2 not in r.text and net.secret not in r.text
    assert (await client.get(f"/Observation/{net.obs2}")).json()["valueString"] == "v2"


# ---- sealed entries and Consent ------------------------------------------------------------

async def test_sealed_entries_follow_the_label_table(client: httpx.AsyncClient,
                                                     net: SimpleNamespace) -> None:
    async def status(who: dict[str, str], type_: str, id_: str) -> int:
        return (await client.get(f"/{type_}/{id_}", headers=who)).status_code

    assert await status(net.as_gp_a, "Condition", net.psy1) == 200  # a GP sees PSY
    assert await status(net.as_gp_a, "Condition", net.sdv1) == 200
    assert await status(net.as_nurse, "Observation", net.obs3) == 200  # the care team works
    assert await status(net.as_nurse, "Condition", net.psy3) == 404  # but not for PSY
    conditions = await search(client, net.as_nurse, "/Condition",
                              {"subject": f"Patient/{net.p3}", "_total": "accurate"})
    assert ids(conditions) == [] and conditions["total"] == 0
    assert await status(net.as_p1, "Condition", net.psy1) == 200  # a patient sees PSY
    assert await status(net.as_p1, "Condition", net.sdv1) == 404  # never SDV
    own = await search(client, net.as_p1, "/Condition", {"_total": "accurate"})
    assert sorted(ids(own)) == sorted([net.psy1]) and own["total"] == 1


async def test_a_consent_keeps_the_record_from_other_practices(client: httpx.AsyncClient,
                                                               net: SimpleNamespace) -> None:
    assert (await client.get(f"/Observation/{net.obs4}", headers=net.as_gp_a)).status_code \
        == 200
    outcome(await client.get(f"/Observation/{net.obs4}", headers=net.as_gp_b), 404)
    found = await search(client, net.as_gp_b, "/Observation",
                         {"subject": f"Patient/{net.p4}", "_total": "accurate"})
    assert ids(found) == [] and found["total"] == 0
    outcome(await client.get(f"/Patient/{net.p4}/$everything", headers=net.as_gp_b), 404)


# ---- break-glass ---------------------------------------------------------------------------

async def test_break_glass_opens_the_record_audited_and_alerted(
        client: httpx.AsyncClient, app: Any, net: SimpleNamespace) -> None:
    url = f"/Observation/{net.obs1}"
    outcome(await client.get(url, headers=net.as_gp_b), 404)
    unknown = uuid.uuid4().hex
    short = {**net.as_gp_b, "X-Break-Glass-Reason": "help"}
    hidden, missing = (await client.get(url, headers=short),
                       await client.get(f"/Observation/{unknown}", headers=short))
    outcome(hidden, 403)
    assert missing.status_code == 403, "a short reason must not tell what exists"
    probed = await client.get(f"/Observation/{net.obs2}", headers=net.as_p1)  # P1 probes
    outcome(probed, 404)
    r = await client.get(url, headers={**net.as_gp_b, "X-Break-Glass-Reason": REASON})
    assert r.status_code == 200 and r.json()["id"] == net.obs1, r.text
    await app.state.audit.flush()
    flags = [e["resource"] for e in (await search(client, {}, "/Flag", {
        "subject": f"Patient/{net.p1}"}))["entry"]
        if e["resource"]["code"]["coding"][0] == {
            "system": ALERT_SYSTEM, "code": "break-glass", "display": "Emergency access to record"}]
    assert [f["author"]["reference"] for f in flags] == [f"Practitioner/{net.gp_b}"]
    log = await search(client, net.as_p1, "/AuditEvent",
                       {"patient": f"Patient/{net.p1}", "_count": "1000"})
    emergency = [e["resource"] for e in log["entry"]
                 if e["resource"]["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"]
    assert len(emergency) == 1 and emergency[0]["purposeOfEvent"][0]["text"] == REASON
    assert emergency[0]["agent"][0]["who"]["reference"] == f"Practitioner/{net.gp_b}"
    everything = await search(client, net.as_p1, "/AuditEvent", {"_count": "1000"})
    probe = [e["resource"] for e in everything["entry"]
             if probed.headers["x-request-id"] in json.dumps(e["resource"])]
    assert [p["outcome"] for p in probe] == ["4"]  # their own attempts: in their log
    assert net.obs2 not in json.dumps(probe)  # naming no entry they may not see (issue 16)
    for e in everything["entry"]:  # and names no other patient (but the ids it asked for)
        event = e["resource"]
        named = {x["what"]["reference"] for x in event.get("entity", ())
                 if x.get("role", {}).get("code") == "1"}
        named |= set(re.findall(r"Patient/[\w.-]+", event.get("outcomeDesc", "")))
        assert named <= {f"Patient/{net.p1}"}, json.dumps(event)


async def test_break_glass_does_not_open_sdv(client: httpx.AsyncClient,
                                             net: SimpleNamespace) -> None:
    """A community nurse sees neither PSY nor SDV; emergency access opens PSY only (a GP
    would see both anyway)."""
    emergency = {**net.as_nurse, "X-Break-Glass-Reason": REASON}
    outcome(await client.get(f"/Condition/{net.psy1}", headers=net.as_nurse), 404)
    assert (await client.get(f"/Condition/{net.psy1}", headers=emergency)).status_code == 200
    outcome(await client.get(f"/Condition/{net.sdv1}", headers=emergency), 404)
    found = await search(client, {**emergency, "X-Break-Glass-Patient": net.p1}, "/Condition",
                         {"subject": f"Patient/{net.p1}"})
    assert sorted(ids(found)) == sorted([net.psy1]), found


# ---- patient writes ------------------------------------------------------------------------

async def test_a_patient_writes_only_their_own_entries(client: httpx.AsyncClient,
                                                       net: SimpleNamespace) -> None:
    who = net.as_p1_user
    r = await client.post("/Observation", json=observation(net.p1, "home-bp"), headers=who)
    assert r.status_code == 201, r.text
    mine = r.json()
    assert mine["meta"]["source"] == f"Patient/{net.p1}"
    provenance = await search(client, {}, "/Provenance",
                              {"target": f"Observation/{mine['id']}"})
    assert [e["resource"]["agent"][0]["who"]["reference"] for e in provenance["entry"]] \
        == [f"Patient/{net.p1}"]
    mine["valueString"] = "corrected"
    assert (await client.put(f"/Observation/{mine['id']}", json=mine,
                             headers=who)).status_code == 200
    before = (await client.get(f"/Observation/{net.obs1}")).json()
    clinician = {**before, "valueString": "patient says so"}
    r = await client.put(f"/Observation/{net.obs1}", json=clinician, headers=who)
    assert r.status_code in (403, 404), r.text
    assert (await client.get(f"/Observation/{net.obs1}")).json() == before
    r = await client.post("/Observation", json=observation(net.p2, "fake"), headers=who)
    assert r.status_code in (403, 404), r.text
    found = await search(client, {}, "/Observation", {"subject": f"Patient/{net.p2}",
                                                      "code": "urn:leak|fake"})
    assert ids(found) == []


# ---- scopes and authentication -------------------------------------------------------------

async def test_scopes_narrow_what_a_token_reaches(client: httpx.AsyncClient,
                                                  net: SimpleNamespace) -> None:
    narrow = net.gp_a_patients_only
    assert (await client.get(f"/Patient/{net.p1}", headers=narrow)).status_code == 200
    r = await client.get(f"/Observation/{net.obs1}", headers=narrow)
    outcome(r, 403)
    assert "insufficient_scope" in r.headers["www-authenticate"]
    for id_ in (net.obs2, uuid.uuid4().hex):  # the scope is refused before any lookup
        for suffix in ("", "/_history/1", "/_history"):
            r = await client.get(f"/Observation/{id_}{suffix}", headers=narrow)
            assert r.status_code == 403, (suffix, r.text)
    launched = net.gp_a_launched_p1
    assert (await client.get(f"/Observation/{net.obs1}", headers=launched)).status_code == 200
    outcome(await client.get(f"/Observation/{net.obs4}", headers=launched), 404)
    found = await search(client, launched, "/Observation", {"_count": "1000"})
    assert net.obs1 in ids(found) and net.obs4 not in ids(found)


async def _forged(app: Any, net: SimpleNamespace) -> str:
    """A well-formed token naming the server's key id, signed with another key."""
    keys = await app.state.oauth_keys.get(app.state.db)
    other = RSAKey.generate_key(2048, parameters={"alg": ALG, "use": "sig",
                                                  "kid": keys.current.kid}, private=True)
    grant = Grant(subject=f"Practitioner/{net.gp_a}", scope="user/*.cruds",
                  fhir_user=f"Practitioner/{net.gp_a}")
    return issue_access_token(SigningKeys(other, keys.verify), issuer=ISSUER,
                              audience=FHIR_BASE, client_id=TEST_CLIENT, grant=grant,
                              lifetime=3600, fhir_base=FHIR_BASE).token


async def test_bad_tokens_answer_401_with_a_bearer_challenge(
        anonymous: httpx.AsyncClient, app: Any, net: SimpleNamespace) -> None:
    who = {"sub": f"Practitioner/{net.gp_a}", "fhir_user": f"Practitioner/{net.gp_a}",
           "scope": "user/*.cruds"}
    tokens = {"forged": await _forged(app, net),
              "expired": await mint(app, lifetime=-120, **who),
              "audience": await mint(app, audience="https://elsewhere.example/fhir", **who),
              "garbage": "not.a.token"}
    cases = [("none", {})] + [(k, bearer(t)) for k, t in tokens.items()]
    for name, headers in cases:
        for url in (f"/Observation/{net.obs1}", "/Observation", f"/Patient/{net.p1}/$everything"):
            r = await anonymous.get(url, headers=headers)
            outcome(r, 401)
            assert r.headers["www-authenticate"].startswith("Bearer "), (name, r.headers)
            assert net.obs1 not in r.text
