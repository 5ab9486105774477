"""End to end: load 50 generated patients through the ASGI app, then find them by search."""

from __future__ import annotations

from collections import Counter

import httpx

from api.synthetic import generate
from api.synthetic.load import has_patients, load
from fhir.validation import NHS_NUMBER_SYSTEM
from tests.synthetic.conftest import AS_OF

SEED, PATIENTS = 9001, 50


async def total(client: httpx.AsyncClient, path: str, **params: str) -> int:
    r = await client.get(path, params={**params, "_total": "accurate", "_count": "0"})
    assert r.status_code == 200, r.text
    return r.json()["total"]


async def test_load_50_patients_and_find_them(client: httpx.AsyncClient) -> None:
    summary = await load(client=client, seed=SEED, n_patients=PATIENTS, as_of=AS_OF,
                         concurrency=4)
    assert summary.failures == []
    assert summary.patients == PATIENTS
    assert await has_patients(client)

    network, records = generate(SEED, PATIENTS, AS_OF)
    records = list(records)
    assert summary.resources == len(network.resources) + sum(len(r.resources) for r in records)

    for record in records[:10]:
        patient = record.resources[0]
        number = patient["identifier"][0]["value"]
        found = (await client.get("Patient", params={
            "identifier": f"{NHS_NUMBER_SYSTEM}|{number}"})).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [patient["id"]]
        by_type = Counter(r["resourceType"] for r in record.resources)
        ref = f"Patient/{patient['id']}"
        assert await total(client, "Condition", subject=ref) == by_type["Condition"]
        assert await total(client, "Observation", subject=ref) == by_type["Observation"]
        assert await total(client, "Encounter", subject=ref) == by_type["Encounter"]

    practice = network.practices[0]
    registered = sum(r.practice.ref == practice.ref for r in records)
    assert await total(client, "Patient", **{"general-practitioner": practice.ref}) >= registered
    gp_roles = await total(client, "PractitionerRole", organization=practice.ref)
    assert gp_roles == len(practice.gps) + len(practice.nurses)


async def test_loading_again_is_idempotent_by_id(client: httpx.AsyncClient) -> None:
    """PUT with fixed ids: a second load makes new versions, never duplicates."""
    before = await total(client, "Patient")
    summary = await load(client=client, seed=SEED, n_patients=5, as_of=AS_OF)
    assert summary.failures == []
    assert await total(client, "Patient") == before
    first = next(generate(SEED, 5, AS_OF)[1]).resources[0]
    read = (await client.get(f"Patient/{first['id']}")).json()
    assert int(read["meta"]["versionId"]) >= 2


async def test_a_failing_bundle_is_reported_with_its_operation_outcome(
        client: httpx.AsyncClient) -> None:
    from api.synthetic.load import post_bundle

    bad = b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": ' \
          b'{"resourceType": "Patient", "id": "x", "birthDate": "yesterday"}, ' \
          b'"request": {"method": "PUT", "url": "Patient/x"}}]}'
    error = await post_bundle(client, bad)
    assert error is not None and error.startswith("HTTP 4")
    assert "birthDate" in error
