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
from tests.api.support import outcome
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
