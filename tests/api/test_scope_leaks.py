"""SMART scopes narrowed by search parameters, from the attacker's side (issue 9).

A GP of practice A holds a token narrowed to `user/Observation.rs?category=laboratory
user/Patient.rs`. Their patient P has a laboratory Observation and a vital-signs one. The
vital-signs Observation must not reach that token by any path: a search, an id read,
`$everything`, `_revinclude`, `_has`, or an entry of a batch or transaction Bundle. Before
issue 9 the last three returned it.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.api.support import outcome
from tests.tokens import bearer, mint

Body = dict[str, Any]
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
NARROW = "user/Observation.rs?category=laboratory user/Patient.rs"


def ref(kind: str, id_: str) -> Body:
    return {"reference": f"{kind}/{id_}"}


async def make(client: httpx.AsyncClient, body: Body) -> str:
    r = await client.post(f"/{body['resourceType']}", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def observation(patient: str, category: str, code: str) -> Body:
    return {"resourceType": "Observation", "status": "final", "subject": ref("Patient", patient),
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": "urn:scope-leak", "code": code}]}}


@pytest.fixture(scope="module")
async def net(client: httpx.AsyncClient, app: Any) -> SimpleNamespace:
    tag = uuid.uuid4().hex[:10]
    n = SimpleNamespace(tag=tag)
    org = await make(client, {"resourceType": "Organization", "name": f"A {tag}"})
    gp = await make(client, {"resourceType": "Practitioner", "name": [{"family": f"Gp{tag}"}]})
    await make(client, {"resourceType": "PractitionerRole", "practitioner": ref("Practitioner", gp),
                        "organization": ref("Organization", org), "code": [{"coding": [{
                            "system": "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode",
                            "code": "R0260"}]}]})
    n.patient = await make(client, {"resourceType": "Patient", "name": [{"family": f"S{tag}"}],
                                    "generalPractitioner": [ref("Organization", org)]})
    n.lab = await make(client, observation(n.patient, "laboratory", f"hba1c-{tag}"))
    n.vital = await make(client, observation(n.patient, "vital-signs", f"bp-{tag}"))
    n.vital_code = f"urn:scope-leak|bp-{tag}"
    n.narrow = bearer(await mint(app, sub=f"Practitioner/{gp}", scope=NARROW,
                                 fhir_user=f"Practitioner/{gp}"))
    n.launched = bearer(await mint(
        app, sub=f"Practitioner/{gp}", fhir_user=f"Practitioner/{gp}", patient=n.patient,
        scope="patient/Observation.rs?category=laboratory patient/Patient.rs"))
    n.full = bearer(await mint(app, sub=f"Practitioner/{gp}", scope="user/*.cruds",
                               fhir_user=f"Practitioner/{gp}"))
    return n


def ids(bundle: Body) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", ()) if "resource" in e}


async def get(client: httpx.AsyncClient, who: dict[str, str], path: str,
              params: Any = None) -> Body:
    r = await client.get(path, params=params, headers=who)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_the_whole_record_is_there_for_an_unnarrowed_token(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    """The data the leaks below would reveal exists and is reachable by the same GP."""
    found = ids(await get(client, net.full, f"/Patient/{net.patient}/$everything"))
    assert {net.lab, net.vital, net.patient} <= found


@pytest.mark.parametrize("who", ["narrow", "launched"])
async def test_a_search_and_a_read_stay_within_the_scope_conditions(
        client: httpx.AsyncClient, net: SimpleNamespace, who: str) -> None:
    token = getattr(net, who)
    outcome(await client.get("/Observation", params={"subject": f"Patient/{net.patient}"},
                             headers=token), 403)
    labs = await get(client, token, "/Observation", {"category": "laboratory",
                                                     "subject": f"Patient/{net.patient}",
                                                     "_total": "accurate"})
    assert ids(labs) == {net.lab} and labs["total"] == 1
    assert (await client.get(f"/Observation/{net.lab}", headers=token)).status_code == 200
    hidden = await client.get(f"/Observation/{net.vital}", headers=token)
    unknown_id = uuid.uuid4().hex
    unknown = await client.get(f"/Observation/{unknown_id}", headers=token)
    outcome(hidden, 404)
    assert hidden.text.replace(net.vital, "X") == unknown.text.replace(unknown_id, "X")
    for suffix in ("/_history", "/_history/1"):
        outcome(await client.get(f"/Observation/{net.vital}{suffix}", headers=token), 404)


@pytest.mark.parametrize("who", ["narrow", "launched"])
async def test_everything_leaves_out_what_the_scopes_do_not_grant(
        client: httpx.AsyncClient, net: SimpleNamespace, who: str) -> None:
    found = ids(await get(client, getattr(net, who), f"/Patient/{net.patient}/$everything"))
    assert net.lab in found and net.patient in found
    assert net.vital not in found


@pytest.mark.parametrize("who", ["narrow", "launched"])
async def test_revinclude_and_has_leave_out_what_the_scopes_do_not_grant(
        client: httpx.AsyncClient, net: SimpleNamespace, who: str) -> None:
    token = getattr(net, who)
    for revinclude in ("_revinclude", "_revinclude:iterate"):
        for value in ("Observation:subject", "Observation:patient"):
            found = ids(await get(client, token, "/Patient", [("_id", net.patient),
                                                              (revinclude, value)]))
            assert found == {net.patient, net.lab}, (revinclude, value, found)
    found = ids(await get(client, token, "/Observation", [
        ("category", "laboratory"), ("subject", f"Patient/{net.patient}"),
        ("_include", "Observation:subject"),
        ("_revinclude:iterate", "Observation:subject")]))
    assert found == {net.patient, net.lab}
    found = ids(await get(client, token, "/Observation", [
        ("category", "laboratory"), ("_id", net.lab), ("_include:iterate", "*"),
        ("_revinclude:iterate", "*")]))
    assert net.vital not in found
    has = await get(client, token, "/Patient", {"_has:Observation:subject:code": net.vital_code,
                                                "_total": "accurate"})
    assert ids(has) == set() and has["total"] == 0
    assert ids(await get(client, net.full, "/Patient", {
        "_has:Observation:subject:code": net.vital_code})) == {net.patient}


@pytest.mark.parametrize("kind", ["batch", "transaction"])
@pytest.mark.parametrize("who", ["narrow", "launched"])
async def test_bundle_get_entries_leave_out_what_the_scopes_do_not_grant(
        client: httpx.AsyncClient, net: SimpleNamespace, kind: str, who: str) -> None:
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [
        {"request": {"method": "GET", "url": f"Observation?subject=Patient/{net.patient}"}},
        {"request": {"method": "GET", "url": f"Observation?code={net.vital_code}"}},
        {"request": {"method": "GET",
                     "url": f"Patient?_id={net.patient}&_revinclude=Observation:subject"}},
        {"request": {"method": "GET", "url": f"Observation/{net.lab}"}}]}
    r = await client.post("", json=bundle, headers=getattr(net, who))
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert net.vital not in r.text
    assert ids(entries[0]["resource"]) <= {net.lab}
    assert ids(entries[1]["resource"]) == set()
    assert ids(entries[2]["resource"]) == {net.patient, net.lab}
    assert entries[3]["resource"]["id"] == net.lab
    if kind == "batch":
        bundle["entry"] = [{"request": {"method": "GET", "url": f"Observation/{net.vital}"}}]
        r = await client.post("", json=bundle, headers=getattr(net, who))
        assert r.status_code == 200 and net.vital not in r.text.replace(
            f"Observation/{net.vital} is not known", ""), r.text
        assert r.json()["entry"][0]["response"]["status"].startswith("404")
