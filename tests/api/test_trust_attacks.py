"""Trust defects found from the attacker's side (issue 16), over HTTP, on both backends.

The network is the one of tests/api/test_access_leaks.py (built afresh for this module):
practices A and B, a GP at each, P1 registered at A with a PSY and an SDV Condition written
by a mental health trust, P2 and P3 at B. Each test is one attack and what must hold.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.api import test_access_leaks as leaks
from tests.api.support import link, outcome
from tests.api.test_access_leaks import REASON, ids, network, same_not_found, search


@pytest.fixture(scope="module")
async def net(client: httpx.AsyncClient, app: Any) -> SimpleNamespace:
    return await network(client, app)


def emergency(who: dict[str, str], reason: str = REASON, **headers: str) -> dict[str, str]:
    return {**who, "X-Break-Glass-Reason": reason, **headers}


# ---- 1. break-glass never opens SDV or V ----------------------------------------------------

async def test_break_glass_does_not_open_sdv_even_to_a_gp(client: httpx.AsyncClient,
                                                          net: SimpleNamespace) -> None:
    """B's GP has no relationship with P1; a GP sees SDV through a relationship, but
    emergency access is no relationship: the SDV entry answers as an unknown id, and is
    neither listed nor counted."""
    who = emergency(net.as_gp_b)
    unknown = uuid.uuid4().hex
    same_not_found(await client.get(f"/Condition/{net.sdv1}", headers=who),
                   await client.get(f"/Condition/{unknown}", headers=who), net.sdv1, unknown)
    assert (await client.get(f"/Condition/{net.psy1}", headers=who)).status_code == 200
    for params in ({"subject": f"Patient/{net.p1}"}, {"patient": net.p1}):
        found = await search(client, {**who, "X-Break-Glass-Patient": net.p1}, "/Condition",
                             {**params, "_total": "accurate"})
        assert ids(found) == [net.psy1] and found["total"] == 1, found
        count = await search(client, {**who, "X-Break-Glass-Patient": net.p1}, "/Condition",
                             {**params, "_summary": "count"})
        assert count["total"] == 1
    r = await client.get(f"/Patient/{net.p1}/$everything", headers=who)
    assert r.status_code == 200, r.text
    found_all = ids(r.json())
    assert net.psy1 in found_all and net.sdv1 not in found_all
    # with the relationship (A's GP), the SDV entry is there: the searches could find it
    assert (await client.get(f"/Condition/{net.sdv1}", headers=net.as_gp_a)).status_code == 200


# ---- 5. $everything decides before its first byte -------------------------------------------

async def test_everything_with_break_glass_but_no_patient_header_is_whole(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    """The reason alone: the patient is the one of the path; the whole Bundle arrives (it used
    to start 200 and drop the connection mid-stream)."""
    r = await client.get(f"/Patient/{net.p1}/$everything", headers=emergency(net.as_gp_b))
    assert r.status_code == 200, r.text
    assert r.json()["resourceType"] == "Bundle" and net.obs1 in ids(r.json())


async def test_everything_for_another_patient_than_the_header_names_is_refused_at_once(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    for target in (net.p1, uuid.uuid4().hex):  # the same answer whether it exists or not
        r = await client.get(f"/Patient/{target}/$everything",
                             headers=emergency(net.as_gp_b, **{"X-Break-Glass-Patient": net.p3}))
        outcome(r, 403, "X-Break-Glass-Patient")
        r = await client.get(f"/Patient/{target}/Observation",
                             headers=emergency(net.as_gp_b, **{"X-Break-Glass-Patient": net.p3}))
        outcome(r, 403, "X-Break-Glass-Patient")


# ---- 6. break-glass reasons are words, kept in the audit -------------------------------------

@pytest.mark.parametrize("reason", ["a" + " " * 10 + "b", "help", "1234567890 1234",
                                    "..........!!!!!", "emergencyaccess", "x y z w v u t s r"])
async def test_a_reason_without_words_is_refused(client: httpx.AsyncClient,
                                                 net: SimpleNamespace, reason: str) -> None:
    r = await client.get(f"/Observation/{net.obs1}", headers=emergency(net.as_gp_b, reason))
    outcome(r, 403, "words")
    r = await client.get(f"/Observation/{uuid.uuid4().hex}",
                         headers=emergency(net.as_gp_b, reason))
    outcome(r, 403, "words")  # before any lookup: it tells nothing of what exists


async def test_the_reason_is_kept_in_the_audit(client: httpx.AsyncClient, app: Any,
                                               net: SimpleNamespace) -> None:
    reason = f"collapsed at home {net.tag}, needs allergies"
    r = await client.get(f"/Observation/{net.obs1}", headers=emergency(net.as_gp_b, reason))
    assert r.status_code == 200, r.text
    await app.state.audit.flush()
    for who in ({}, net.as_p1):  # the privacy officer's view (all) and the patient's own log
        log = await search(client, who, "/AuditEvent",
                           {"patient": f"Patient/{net.p1}", "_count": "1000"})
        kept = [e["resource"] for e in log["entry"]
                if e["resource"]["purposeOfEvent"][0].get("text") == reason]
        assert len(kept) == 1, log
        assert kept[0]["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
        assert kept[0]["agent"][0]["who"]["reference"] == f"Practitioner/{net.gp_b}"


# ---- 3. create-on-update is no existence oracle ----------------------------------------------

async def test_a_put_to_a_hidden_id_answers_as_a_put_to_a_fresh_one(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    """A GP of A puts an Observation of their own patient at the id of P2's entry (B's), and
    at a fresh id: the same answer, with and without If-Match; create-on-update (client-chosen
    ids) is for the network's own systems, so staff create with POST."""
    fresh = uuid.uuid4().hex
    for headers in ({}, {"If-Match": 'W/"1"'}, {"If-Match": 'W/"2"'}):
        answers = []
        for id_ in (net.obs2, fresh):
            body = {**leaks.observation(net.p1, "put-probe"), "id": id_}
            answers.append(await client.put(f"/Observation/{id_}", json=body,
                                            headers={**net.as_gp_a, **headers}))
        same_not_found(answers[0], answers[1], net.obs2, fresh)
        assert "POST" in answers[1].text  # says what to do instead
    assert (await client.get(f"/Observation/{fresh}")).status_code == 404  # nothing created
    assert (await client.get(f"/Observation/{net.obs2}")).json()["valueString"] == "v2"
    # the network's loader still syncs with its own ids
    body = {**leaks.observation(net.p1, "synced"), "id": fresh}
    assert (await client.put(f"/Observation/{fresh}", json=body)).status_code == 201
    # and a GP updates what they may see, at its id
    mine = (await client.get(f"/Observation/{fresh}", headers=net.as_gp_a)).json()
    r = await client.put(f"/Observation/{fresh}", json={**mine, "valueString": "seen"},
                         headers=net.as_gp_a)
    assert r.status_code == 200, r.text


async def test_patch_and_delete_of_a_hidden_id_answer_as_of_an_unknown_one(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    """Neither its version (If-Match) nor its content (a JSON Patch `test`) is looked at."""
    unknown = uuid.uuid4().hex
    patch_headers = {**net.as_gp_a, "Content-Type": "application/json-patch+json"}
    for ops in ([{"op": "test", "path": "/valueString", "value": "v2"}],
                [{"op": "test", "path": "/valueString", "value": "guess"}],
                [{"op": "replace", "path": "/status", "value": "cancelled"}]):
        for headers in ({}, {"If-Match": 'W/"1"'}):
            same_not_found(
                await client.patch(f"/Observation/{net.obs2}", json=ops,
                                   headers={**patch_headers, **headers}),
                await client.patch(f"/Observation/{unknown}", json=ops,
                                   headers={**patch_headers, **headers}), net.obs2, unknown)
    for headers in ({}, {"If-Match": 'W/"1"'}, {"If-Match": 'W/"2"'}):
        same_not_found(
            await client.delete(f"/Observation/{net.obs2}", headers={**net.as_gp_a, **headers}),
            await client.delete(f"/Observation/{unknown}", headers={**net.as_gp_a, **headers}),
            net.obs2, unknown)
    assert (await client.get(f"/Observation/{net.obs2}")).json()["valueString"] == "v2"


# ---- 2. a patient's access log names nothing hidden from them ----------------------------------

def request_ids(event: dict[str, Any]) -> set[str]:
    return {e["what"]["identifier"]["value"] for e in event.get("entity", ())
            if e.get("type", {}).get("code") == "XrequestId"}


async def own_log(client: httpx.AsyncClient, app: Any, net: SimpleNamespace,
                  who: dict[str, str] | None = None) -> list[dict[str, Any]]:
    await app.state.audit.flush()
    headers = who if who is not None else net.as_p1
    r = await client.get("/AuditEvent", params={"patient": f"Patient/{net.p1}", "_count": "500"},
                         headers=headers)
    out = []
    while True:
        assert r.status_code == 200, r.text
        out += [e["resource"] for e in r.json().get("entry", ())]
        following = link(r.json(), "next")
        if following is None:
            return out
        r = await client.get(following, headers=headers)


async def test_a_patients_log_shows_who_looked_but_names_nothing_hidden(
        client: httpx.AsyncClient, app: Any, net: SimpleNamespace) -> None:
    nopat = await leaks.make(client, {**leaks.observation(net.p1, "third-party"), "meta": {
        "security": [{"system": leaks.ACT_CODE, "code": "NOPAT"}], "source": net.trust}})
    very = await leaks.make(client, {**leaks.condition(net.p1, "sealed"), "meta": {
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                      "code": "V"}], "source": net.trust}})
    hidden = {net.sdv1, nopat, very}
    sent: dict[str, str] = {}  # what each request was -> its X-Request-Id (the audit names it)

    async def get(key: str, path: str, who: dict[str, str], status: int) -> None:
        r = await client.get(path, headers=who)
        assert r.status_code == status, r.text
        sent[key] = r.headers["x-request-id"]

    for id_, who in ((net.sdv1, net.as_gp_a), (nopat, net.as_gp_a), (very, {}),
                     (net.psy1, net.as_gp_a)):
        type_ = "Observation" if id_ == nopat else "Condition"
        await get(id_, f"/{type_}/{id_}", who, 200)
    # refused: break-glass on SDV, and a GP without a relationship
    await get("bg", f"/Condition/{net.sdv1}", emergency(net.as_gp_b), 404)
    await get("nobody", f"/Condition/{net.psy1}", net.as_gp_b, 404)
    # the patient's own probes: a sealed entry of theirs, and an id that never existed
    await get("sealed", f"/Condition/{net.sdv1}", net.as_p1, 404)
    await get("unknown", f"/Condition/{uuid.uuid4().hex}", net.as_p1, 404)

    keys = {rid: key for key, rid in sent.items()}
    log = [e for e in await own_log(client, app, net) if request_ids(e) & set(keys)]
    text = str(log)
    for id_ in hidden:
        assert id_ not in text, id_
    assert "refused" not in text and "sealed" not in text and "break-glass" not in text
    by_request = {keys[next(iter(request_ids(e)))]: e for e in log}
    assert set(by_request) == set(sent), sorted(by_request)
    # who looked, when, how and why: all there
    for id_ in (net.sdv1, nopat, net.psy1):
        event = by_request[id_]
        assert event["agent"][0]["who"]["reference"] == f"Practitioner/{net.gp_a}"
        assert event["subtype"][0]["code"] == "read" and event["outcome"] == "0"
        assert event["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    assert f"Condition/{net.psy1}" in str(by_request[net.psy1])  # what they may see: named
    for key in ("bg", "nobody"):
        assert by_request[key]["agent"][0]["who"]["reference"] == f"Practitioner/{net.gp_b}"
        assert by_request[key]["outcome"] == "4"
    assert by_request[very]["agent"][0]["who"]["reference"].startswith("Device/")
    # their own failed read of a sealed entry reads exactly as one of an id that never was
    sealed, missing = by_request["sealed"], by_request["unknown"]

    def shape(event: dict[str, Any]) -> dict[str, Any]:
        entities = [e for e in event.get("entity", ()) if "XrequestId" not in str(e)]
        return {**{k: v for k, v in event.items() if k not in ("id", "meta", "recorded")},
                "entity": entities}

    assert shape(sealed) == shape(missing)
    # the privacy officer sees it all
    full = await search(client, {}, "/AuditEvent", {"entity": f"Condition/{net.sdv1}",
                                                    "_count": "500"})
    assert any(sent["bg"] in str(e) and "refused" in str(e) for e in full["entry"])


async def test_no_other_way_into_the_log_shows_more(client: httpx.AsyncClient, app: Any,
                                                    net: SimpleNamespace) -> None:
    r = await client.get(f"/Condition/{net.sdv1}", headers=net.as_gp_a)
    assert r.status_code == 200
    await app.state.audit.flush()
    full = await search(client, {}, "/AuditEvent", {"entity": f"Condition/{net.sdv1}",
                                                    "patient": f"Patient/{net.p1}",
                                                    "_count": "1"})
    event_id = full["entry"][0]["resource"]["id"]
    # its own read: redacted as in the search
    r = await client.get(f"/AuditEvent/{event_id}", headers=net.as_p1)
    assert r.status_code == 200 and net.sdv1 not in r.text, r.text
    assert net.sdv1 not in (await client.get(f"/AuditEvent/{event_id}/_history/1",
                                             headers=net.as_p1)).text
    # searching by the entries it names would tell which exist: refused
    for params in ({"entity": f"Condition/{net.sdv1}"}, {"entity-type": "2"},
                   {"_sort": "entity"}):
        r = await client.get("/AuditEvent", params={"patient": net.p1, **params},
                             headers=net.as_p1)
        outcome(r, 400, "access log")
    r = await client.get("/Patient", params={
        "_has:AuditEvent:patient:entity": f"Condition/{net.sdv1}"}, headers=net.as_p1)
    outcome(r, 400, "access log")
    # Bundles, history and $everything hold none of it
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"AuditEvent?patient=Patient/{net.p1}"}},
        {"request": {"method": "GET", "url": f"AuditEvent/{event_id}"}}]}
    r = await client.post("", json=bundle, headers=net.as_p1)
    assert r.status_code == 200 and net.sdv1 not in r.text, r.text
    for path in (f"/Patient/{net.p1}/$everything?_type=AuditEvent", "/_history",
                 "/AuditEvent/_history"):
        r = await client.get(path, headers=net.as_p1)
        assert net.sdv1 not in r.text, (path, r.text[:500])


# ---- 4. searches reach the access log of the patients they name or return ---------------------

async def test_searches_by_patient_reach_the_patients_log(client: httpx.AsyncClient, app: Any,
                                                          net: SimpleNamespace) -> None:
    searches = {
        "patient": (net.as_gp_a, "/Observation", {"patient": net.p1}),
        "subject": (net.as_gp_a, "/Condition", {"subject": f"Patient/{net.p1}"}),
        "returned": (net.as_gp_a, "/Observation", {"code": "urn:leak|bp"}),
        "name": (net.as_gp_a, "/Patient", {"name": f"Leak{net.tag}One"}),
        "compartment": (net.as_gp_a, f"/Patient/{net.p1}/MedicationRequest", {}),
        "unseen": (net.as_gp_b, "/Observation", {"patient": f"Patient/{net.p1}"}),
    }
    sent = {}
    for key, (who, path, params) in searches.items():
        r = await client.get(path, params=params, headers=who)
        assert r.status_code == 200, r.text
        sent[r.headers["x-request-id"]] = key
    log = {sent[rid]: e for e in await own_log(client, app, net)
           for rid in request_ids(e) if rid in sent}
    assert set(log) == set(searches), sorted(log)
    for key in searches:
        event = log[key]
        gp = net.gp_b if key == "unseen" else net.gp_a
        assert event["agent"][0]["who"]["reference"] == f"Practitioner/{gp}"
        assert event["subtype"][0]["code"] == "search"
        assert {"reference": f"Patient/{net.p1}"} in [e.get("what") for e in event["entity"]]
    query = [e for e in log["patient"]["entity"] if e.get("role", {}).get("code") == "24"][0]
    assert query["description"] == "Observation?patient"  # what kind: names, not values


# ---- 9. friction: a GP registers a patient at their own practice ------------------------------

async def test_a_gp_registers_a_new_patient_at_their_own_practice(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    ours = {"resourceType": "Patient", "name": [{"family": f"New{net.tag}"}],
            "generalPractitioner": [{"reference": f"Organization/{net.org_a}"}]}
    r = await client.post("/Patient", json=ours, headers=net.as_gp_a)
    assert r.status_code == 201, r.text
    new = r.json()["id"]
    assert (await client.get(f"/Patient/{new}", headers=net.as_gp_a)).status_code == 200
    r = await client.post("/Observation", json=leaks.observation(new, "first-visit"),
                          headers=net.as_gp_a)
    assert r.status_code == 201, r.text
    outcome(await client.get(f"/Patient/{new}", headers=net.as_gp_b), 404)  # not B's
    # registering someone at another practice (or at none) is still refused, and stores nothing
    for gp in ([{"reference": "Organization/" + uuid.uuid4().hex}], []):
        name = f"Elsewhere{uuid.uuid4().hex[:8]}"
        body = {"resourceType": "Patient", "name": [{"family": name}], "generalPractitioner": gp}
        if not gp:
            del body["generalPractitioner"]
        r = await client.post("/Patient", json=body, headers=net.as_gp_a)
        outcome(r, 403)
        assert ids(await search(client, {}, "/Patient", {"family": name})) == []
    # nor does an update move someone else's patient into the practice
    theirs = (await client.get(f"/Patient/{net.p3}")).json()
    theirs["generalPractitioner"] = [{"reference": f"Organization/{net.org_a}"}]
    r = await client.put(f"/Patient/{net.p3}", json=theirs, headers=net.as_gp_a)
    assert r.status_code == 404, r.text


async def test_a_batch_searching_a_patient_reaches_their_log(
        client: httpx.AsyncClient, app: Any, net: SimpleNamespace) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation?patient={net.p1}"}},
        {"request": {"method": "GET", "url": f"Patient/{net.p1}/Condition"}}]}
    r = await client.post("", json=bundle, headers=net.as_gp_a)
    assert r.status_code == 200, r.text
    rid = r.headers["x-request-id"]
    found = [e for e in await own_log(client, app, net) if rid in request_ids(e)]
    assert found and all(e["agent"][0]["who"]["reference"] == f"Practitioner/{net.gp_a}"
                         for e in found)


async def test_a_history_returning_a_patients_record_reaches_their_log(
        client: httpx.AsyncClient, app: Any, net: SimpleNamespace) -> None:
    r = await client.get("/Observation/_history", params={"_since": net.since, "_count": "500"},
                         headers=net.as_gp_a)
    assert r.status_code == 200 and net.obs1 in r.text, r.text
    rid = r.headers["x-request-id"]
    assert [e for e in await own_log(client, app, net) if rid in request_ids(e)]
