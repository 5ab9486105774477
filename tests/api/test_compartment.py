"""Patient compartment search and Patient/$everything over HTTP, on both backends.

https://hl7.org/fhir/R4/search.html#compartments and
https://hl7.org/fhir/R4/patient-operation-everything.html. Two patients, A and B, each with
Encounters, Conditions and Observations; one of B's Observations is performed by A, which puts
it in A's compartment too (Observation's compartment parameters are subject and performer).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api.support import BASE, create, entry_ids, link, outcome, pages

Data = dict[str, Any]


def ref(resource: dict[str, Any]) -> dict[str, str]:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def observation(subject: dict[str, Any], when: str | None = None,
                **extra: Any) -> dict[str, Any]:
    body = {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": ref(subject), **extra}
    if when:
        body["effectiveDateTime"] = when
    return body


@pytest.fixture(scope="module")
async def record(client: httpx.AsyncClient) -> Data:
    prac = await create(client, {"resourceType": "Practitioner", "name": [{"family": "Gp"}]})
    prac_old = await create(client, {"resourceType": "Practitioner",
                                     "name": [{"family": "Old"}]})
    prac_b = await create(client, {"resourceType": "Practitioner", "name": [{"family": "Bs"}]})
    org = await create(client, {"resourceType": "Organization", "name": "Surgery"})
    med = await create(client, {"resourceType": "Medication",
                                "code": {"text": "paracetamol"}})
    a = await create(client, {"resourceType": "Patient", "name": [{"family": "A"}],
                              "generalPractitioner": [ref(prac)],
                              "managingOrganization": ref(org)})
    b = await create(client, {"resourceType": "Patient", "name": [{"family": "B"}]})
    out: Data = {"prac": prac, "prac_old": prac_old, "prac_b": prac_b, "org": org, "med": med,
                 "a": a, "b": b}
    out["enc_a"] = await create(client, {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": ref(a), "serviceProvider": ref(org),
        "period": {"start": "2020-01-01T09:00:00Z", "end": "2020-01-01T10:00:00Z"}})
    out["enc_b"] = await create(client, {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": ref(b), "period": {"start": "2020-02-01"}})
    out["cond_a"] = await create(client, {
        "resourceType": "Condition", "subject": ref(a), "onsetDateTime": "2019-05-01",
        "asserter": ref(prac_old), "code": {"text": "asthma"}})
    out["cond_b"] = await create(client, {
        "resourceType": "Condition", "subject": ref(b), "onsetDateTime": "2020-05-01",
        "code": {"text": "eczema"}})
    out["obs_a1"] = await create(client, observation(a, "2020-01-01", performer=[ref(prac)]))
    out["obs_a2"] = await create(client, observation(a, "2021-06-01",
                                                     encounter=ref(out["enc_a"])))
    out["obs_a3"] = await create(client, observation(a))  # no clinical date
    out["obs_b1"] = await create(client, observation(b, "2020-03-01", performer=[ref(prac_b)]))
    # about B, performed by A: in both compartments
    out["obs_b2"] = await create(client, observation(b, "2020-07-01", performer=[ref(a)]))
    out["mr_a"] = await create(client, {
        "resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": ref(a), "medicationReference": ref(med), "authoredOn": "2020-03-01"})
    return out


def ids(data: Data, *keys: str) -> set[str]:
    return {data[k]["id"] for k in keys}


def keys(data: Data, found: list[str]) -> set[str]:
    by_id = {v["id"]: k for k, v in data.items()}
    return {by_id.get(i, i) for i in found}


async def compartment_ids(client: httpx.AsyncClient, patient: str, type_: str,
                          params: Any = None) -> list[str]:
    found = entry_ids(await pages(client, f"/Patient/{patient}/{type_}", params))
    assert len(found) == len(set(found)), found
    return found


# ---------------------------------------------------------------- compartment search


async def test_compartment_holds_only_that_patients_resources(client: httpx.AsyncClient,
                                                              record: Data) -> None:
    a, b = record["a"]["id"], record["b"]["id"]
    assert keys(record, await compartment_ids(client, a, "Observation")) == {
        "obs_a1", "obs_a2", "obs_a3", "obs_b2"}
    assert keys(record, await compartment_ids(client, b, "Observation")) == {
        "obs_b1", "obs_b2"}
    assert keys(record, await compartment_ids(client, a, "Condition")) == {"cond_a"}
    assert keys(record, await compartment_ids(client, b, "Condition")) == {"cond_b"}
    assert keys(record, await compartment_ids(client, a, "Encounter")) == {"enc_a"}
    assert keys(record, await compartment_ids(client, a, "MedicationRequest")) == {"mr_a"}
    assert keys(record, await compartment_ids(client, a, "Patient")) == {"a"}
    assert await compartment_ids(client, b, "MedicationRequest") == []


async def test_compartment_search_takes_normal_parameters(client: httpx.AsyncClient,
                                                          record: Data) -> None:
    a = record["a"]["id"]
    assert keys(record, await compartment_ids(client, a, "Observation", {"date": "ge2020-06"})) \
        == {"obs_a2", "obs_b2"}
    assert keys(record, await compartment_ids(
        client, a, "Observation", {"performer": f"Practitioner/{record['prac']['id']}"})) \
        == {"obs_a1"}
    # subject=B narrows A's compartment to the one resource in both
    assert keys(record, await compartment_ids(
        client, a, "Observation", {"subject": f"Patient/{record['b']['id']}"})) == {"obs_b2"}
    r = await client.get(f"/Patient/{a}/Observation", params={"_total": "accurate",
                                                                "_count": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 4
    r = await client.get(f"/Patient/{a}/Observation",
                         params={"_id": record["obs_a2"]["id"],
                                 "_include": "Observation:encounter"})
    found = {(e["resource"]["id"], e["search"]["mode"]) for e in r.json()["entry"]}
    assert found == {(record["obs_a2"]["id"], "match"), (record["enc_a"]["id"], "include")}
    outcome(await client.get(f"/Patient/{a}/Observation", params={"nonsense": "1"}), 400,
            "nonsense")


async def test_compartment_paging_keeps_the_compartment_path(client: httpx.AsyncClient,
                                                             record: Data) -> None:
    a = record["a"]["id"]
    bundles = await pages(client, f"/Patient/{a}/Observation", {"_count": "1", "_sort": "_id"})
    assert len(bundles) == 4
    for bundle in bundles:
        assert len(bundle["entry"]) == 1
        for item in bundle["link"]:
            assert urlsplit(item["url"]).path == f"/fhir/Patient/{a}/Observation", item
    assert link(bundles[-1], "next") is None
    found = entry_ids(bundles)
    assert found == sorted(found)
    assert keys(record, found) == {"obs_a1", "obs_a2", "obs_a3", "obs_b2"}


async def test_compartment_search_errors(client: httpx.AsyncClient, record: Data) -> None:
    a = record["a"]["id"]
    outcome(await client.get(f"/Patient/{a}/Practitioner"), 400,
            "Practitioner is not in the Patient compartment")
    outcome(await client.get(f"/Patient/{a}/Medication"), 400, "not in the Patient compartment")
    outcome(await client.get("/Patient/no-such-patient/Observation"), 404, "Patient/no-such")
    outcome(await client.get(f"/Patient/{a}/NotAType"), 404, "NotAType")
    outcome(await client.get(f"/Patient/{a}/$nonsense"), 404, "$nonsense")
    gone = await create(client, {"resourceType": "Patient", "name": [{"family": "Gone"}]})
    assert (await client.delete(f"/Patient/{gone['id']}")).status_code == 200
    outcome(await client.get(f"/Patient/{gone['id']}/Observation"), 410, "deleted")


async def test_instance_routes_still_answer(client: httpx.AsyncClient, record: Data) -> None:
    a = record["a"]["id"]
    r = await client.get(f"/Patient/{a}")
    assert r.status_code == 200 and r.json()["id"] == a
    r = await client.get(f"/Patient/{a}/_history")
    assert r.status_code == 200 and r.json()["type"] == "history"
    r = await client.get(f"/Patient/{a}/_history/1")
    assert r.status_code == 200 and r.json()["id"] == a
    r = await client.get(f"/Observation/{record['obs_a1']['id']}/_history")
    assert r.status_code == 200 and r.json()["type"] == "history"


# ---------------------------------------------------------------- $everything


async def everything(client: httpx.AsyncClient, patient: str,
                     params: Any = None) -> list[str]:
    bundles = await pages(client, f"/Patient/{patient}/$everything", params)
    for bundle in bundles:
        assert bundle["type"] == "searchset"
        for item in bundle["link"]:
            assert urlsplit(item["url"]).path == f"/fhir/Patient/{patient}/$everything", item
        for entry in bundle.get("entry", ()):
            res = entry["resource"]
            assert entry["fullUrl"] == f"{BASE}/{res['resourceType']}/{res['id']}"
            assert entry["search"]["mode"] == "match"
    found = entry_ids(bundles)
    assert len(found) == len(set(found)), f"a resource repeats: {found}"
    return found


EVERYTHING_A = {"a", "enc_a", "cond_a", "obs_a1", "obs_a2", "obs_a3", "obs_b2", "mr_a",
                "prac", "prac_old", "org", "med"}


async def test_everything_returns_the_record_and_what_it_references(
        client: httpx.AsyncClient, record: Data) -> None:
    r = await client.get(f"/Patient/{record['a']['id']}/$everything")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    found = await everything(client, record["a"]["id"])
    # B, B's Encounter, Condition, Observation and Practitioner are not A's
    assert keys(record, found) == EVERYTHING_A
    assert keys(record, await everything(client, record["b"]["id"])) == {
        "b", "enc_b", "cond_b", "obs_b1", "obs_b2", "prac_b"}


async def test_everything_pages_by_count(client: httpx.AsyncClient, record: Data) -> None:
    for size in ("1", "3", "5"):
        bundles = await pages(client, f"/Patient/{record['a']['id']}/$everything",
                              {"_count": size})
        assert all(len(b.get("entry", ())) <= int(size) for b in bundles)
        assert len(bundles) == -(-len(EVERYTHING_A) // int(size))
        found = await everything(client, record["a"]["id"], {"_count": size})
        assert keys(record, found) == EVERYTHING_A


async def test_everything_type_filter(client: httpx.AsyncClient, record: Data) -> None:
    a = record["a"]["id"]
    found = await everything(client, a, {"_type": "Observation,Practitioner"})
    assert keys(record, found) == {"obs_a1", "obs_a2", "obs_a3", "obs_b2", "prac", "prac_old"}
    found = await everything(client, a, [("_type", "Patient"), ("_type", "Condition")])
    assert keys(record, found) == {"a", "cond_a"}


async def test_everything_clinical_date_window(client: httpx.AsyncClient,
                                               record: Data) -> None:
    a = record["a"]["id"]
    found = await everything(client, a, {"start": "2020-01-01", "end": "2020-12-31"})
    # cond_a (2019) and obs_a2 (2021) fall outside; prac_old only reached through cond_a;
    # undated resources (the Patient, obs_a3, Practitioner, Organization, Medication) stay
    assert keys(record, found) == EVERYTHING_A - {"cond_a", "obs_a2", "prac_old"}
    found = await everything(client, a, {"end": "2019-12-31"})
    assert keys(record, found) == {"a", "cond_a", "obs_a3", "prac", "prac_old", "org"}
    found = await everything(client, a, {"start": "2021"})
    # enc_a (2020), which obs_a2 points at, is A's own: the window leaves it out
    assert keys(record, found) == {"a", "obs_a2", "obs_a3", "prac", "org"}


async def test_everything_since(client: httpx.AsyncClient, record: Data) -> None:
    a = record["a"]["id"]
    await asyncio.sleep(0.01)
    obs = dict(record["obs_a3"])
    obs["note"] = [{"text": "reviewed"}]
    r = await client.put(f"/Observation/{obs['id']}", json=obs)
    assert r.status_code == 200, r.text
    since = r.json()["meta"]["lastUpdated"]
    assert keys(record, await everything(client, a, {"_since": since})) == {"obs_a3"}
    assert keys(record, await everything(client, a, {"_since": "2000-01-01"})) == EVERYTHING_A


async def test_everything_errors(client: httpx.AsyncClient, record: Data) -> None:
    a = record["a"]["id"]
    outcome(await client.get("/Patient/no-such-patient/$everything"), 404, "Patient/no-such")
    gone = await create(client, {"resourceType": "Patient", "name": [{"family": "Gone"}]})
    await create(client, observation(gone))
    assert (await client.delete(f"/Patient/{gone['id']}")).status_code == 200
    outcome(await client.get(f"/Patient/{gone['id']}/$everything"), 410, "deleted")
    outcome(await client.get(f"/Patient/{a}/$everything", params={"_type": "Nope"}), 400,
            "Nope")
    outcome(await client.get(f"/Patient/{a}/$everything", params={"start": "yesterday"}), 400,
            "start")
    outcome(await client.get(f"/Patient/{a}/$everything", params={"_count": "x"}), 400,
            "_count")
    outcome(await client.get(f"/Patient/{a}/$everything", params={"_cursor": "zz"}), 400,
            "_cursor")
    outcome(await client.get(f"/Patient/{a}/$everything", params={"colour": "red"}), 400,
            "colour")
    outcome(await client.get(f"/Patient/{a}/$everything",
                             params={"start": "2021", "end": "2020"}), 400, "start")


async def test_capability_statement_lists_both(client: httpx.AsyncClient) -> None:
    body = (await client.get("/metadata")).json()
    [rest] = body["rest"]
    assert rest["compartment"] == ["http://hl7.org/fhir/CompartmentDefinition/patient"]
    [patient] = [r for r in rest["resource"] if r["type"] == "Patient"]
    assert {"name": "everything",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"} \
        in patient["operation"]
    others = [r for r in rest["resource"] if r["type"] != "Patient"]
    assert not any("everything" in str(r.get("operation")) for r in others)
