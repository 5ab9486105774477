"""The network directory: locations with positions, services, staff expertise and languages,
schedules and slots from the opening patterns; then found through the API by the questions a
patient or clinician asks (service type, specialty, expertise, distance)."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.synthetic import Network, generate, transaction
from api.synthetic.directory import SCT, SERVICE_SYSTEM, centroids, sessions
from fhir.search.near import haversine_km
from fhir.validation import check_resource
from tests.synthetic.conftest import AS_OF

SEED = 4242


def of_type(network: Network, type_: str) -> list[dict[str, Any]]:
    return [r for r in network.resources if r["resourceType"] == type_]


def by_ref(network: Network) -> dict[str, dict[str, Any]]:
    return {f"{r['resourceType']}/{r['id']}": r for r in network.resources}


def codes(concepts: list[dict[str, Any]], system: str) -> set[str]:
    return {c["code"] for cc in concepts for c in cc.get("coding", ()) if c["system"] == system}


def test_same_seed_same_directory() -> None:
    a, _ = generate(SEED, 300, AS_OF)
    b, _ = generate(SEED, 300, AS_OF)
    assert a.resources == b.resources
    c, _ = generate(SEED, 300, date(2025, 6, 8))
    assert [s["start"] for s in of_type(c, "Slot")] != [s["start"] for s in of_type(a, "Slot")]


def test_every_organisation_has_a_located_location(
        small_network: tuple[Network, list[Any]]) -> None:
    network, _ = small_network
    refs = by_ref(network)
    located = {loc["managingOrganization"]["reference"]: loc
               for loc in of_type(network, "Location")}
    for org in of_type(network, "Organization"):
        loc = located[f"Organization/{org['id']}"]
        district = org["address"][0]["postalCode"].split()[0]
        assert (loc["position"]["latitude"], loc["position"]["longitude"]) == centroids()[district]
    for resource in network.resources:
        check_resource(resource)  # every directory resource is valid R4
    # the frailty clinic is in its practice's building
    clinic = next(o for o in of_type(network, "Organization") if o["name"].startswith("Frailty"))
    assert clinic["address"] == refs[clinic["partOf"]["reference"]]["address"]


def test_services_staff_expertise_and_languages(
        small_network: tuple[Network, list[Any]]) -> None:
    network, _ = small_network
    refs = by_ref(network)
    services = Counter(next(iter(codes(h["type"], SERVICE_SYSTEM)))
                       for h in of_type(network, "HealthcareService"))
    assert services == {"gp-appointment": len(network.practices),
                        "medication-review": len(network.pharmacies), "frailty-clinic": 1,
                        "community-physiotherapy": 2, "social-prescribing": 1}
    parkinsons = [r for r in of_type(network, "PractitionerRole")
                  if "49049000" in codes(r.get("specialty", []), SCT)]
    assert len(parkinsons) == 1
    assert codes(parkinsons[0]["specialty"], SCT) == {"722138006", "49049000"}
    assert parkinsons[0]["availableTime"][0]["daysOfWeek"] == ["tue", "thu"]
    service = refs[parkinsons[0]["healthcareService"][0]["reference"]]
    assert "49049000" in codes(service["specialty"], SCT)
    for practitioner in of_type(network, "Practitioner"):
        spoken = codes(practitioner["communication"], "urn:ietf:bcp:47")
        assert "en" in spoken
    assert any(len(p["communication"]) > 1 for p in of_type(network, "Practitioner"))
    # every practice GP works at the practice's location for its GP appointments
    for practice in network.practices:
        for staff in practice.gps:
            role = refs[staff.practitioner_role]
            location = refs[role["location"][0]["reference"]]
            assert location["managingOrganization"]["reference"] == practice.ref


def test_slots_follow_the_opening_patterns(small_network: tuple[Network, list[Any]]) -> None:
    network, _ = small_network
    refs = by_ref(network)
    slots = of_type(network, "Slot")
    assert {s["status"] for s in slots} == {"free", "busy"}
    for bookable in network.directory.bookable:
        schedule = refs[bookable.schedule]
        own = [refs[s] for s in bookable.slots]
        assert own and all(s["schedule"]["reference"] == bookable.schedule for s in own)
        for slot in own:
            start, end = (datetime.fromisoformat(slot[k]) for k in ("start", "end"))
            assert start.date() > AS_OF
            assert start.date() <= date.fromisoformat(schedule["planningHorizon"]["end"])
            day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[start.weekday()]
            assert any(day in days and opens <= start.timetz().replace(tzinfo=None)
                       and end.timetz().replace(tzinfo=None) <= closes
                       for days, opens, closes in sessions()[bookable.service]), slot
            assert end - start > timedelta(0)
        # slots of one schedule never overlap
        ordered = sorted(own, key=lambda s: s["start"])
        assert all(a["end"] <= b["start"] for a, b in zip(ordered, ordered[1:], strict=False))


# ---------------------------------------------------------------- through the API


@pytest.fixture(scope="module")
async def loaded(client: httpx.AsyncClient) -> Network:
    network, _ = generate(SEED, 300, AS_OF)
    r = await client.post("", json=transaction(network.resources))
    assert r.status_code == 200, r.text[:500]
    return network


async def ids(client: httpx.AsyncClient, type_: str, **params: str) -> list[str]:
    r = await client.get(f"/{type_}", params={**params, "_count": "1000"})
    assert r.status_code == 200, r.text
    return [e["resource"]["id"] for e in r.json().get("entry", ())]


async def test_find_parkinsons_physiotherapist_near_a_postcode(
        client: httpx.AsyncClient, loaded: Network) -> None:
    refs = by_ref(loaded)
    role = next(r for r in of_type(loaded, "PractitionerRole")
                if "49049000" in codes(r.get("specialty", []), SCT))
    where = refs[role["location"][0]["reference"]]["position"]
    found = await ids(client, "PractitionerRole", specialty=f"{SCT}|49049000",
                      **{"location.near": f"{where['latitude']}|{where['longitude']}|1|km"})
    assert role["id"] in found
    # from the centroid of NB1, the physiotherapy base is at a hand-checked distance
    lat, lon = centroids()["NB1"]
    km = haversine_km(lat, lon, where["latitude"], where["longitude"])
    inside = await ids(client, "PractitionerRole", specialty=f"{SCT}|49049000",
                       **{"location.near": f"{lat}|{lon}|{km + 0.05:.3f}|km"})
    outside = await ids(client, "PractitionerRole", specialty=f"{SCT}|49049000",
                        **{"location.near": f"{lat}|{lon}|{max(km - 0.05, 0):.3f}|km"})
    assert role["id"] in inside and role["id"] not in outside


async def test_services_by_type_nearest_first(client: httpx.AsyncClient, loaded: Network) -> None:
    refs = by_ref(loaded)
    lat, lon = centroids()["NB14"]
    # Locations of medication review services, nearest first, are the pharmacies' locations
    reviews = [h for h in of_type(loaded, "HealthcareService")
               if "medication-review" in codes(h["type"], SERVICE_SYSTEM)]
    found = await ids(client, "Location", near=f"{lat}|{lon}|30|km",
                      **{"_has:HealthcareService:location:service-type":
                         f"{SCT}|182836005"})
    mine = [i for i in found if f"Location/{i}" in refs]
    expected = sorted((refs[h["location"][0]["reference"]] for h in reviews),
                      key=lambda loc: haversine_km(lat, lon, loc["position"]["latitude"],
                                                   loc["position"]["longitude"]))
    assert [loc["id"] for loc in expected] == [i for i in mine if i in
                                               {loc["id"] for loc in expected}]
    hs = await ids(client, "HealthcareService", **{"service-type": f"{SERVICE_SYSTEM}|"
                                                   "frailty-clinic"})
    assert [h["id"] for h in of_type(loaded, "HealthcareService")
            if "frailty-clinic" in codes(h["type"], SERVICE_SYSTEM)][0] in hs
    speakers = [p for p in of_type(loaded, "Practitioner")
                if "pa" in codes(p["communication"], "urn:ietf:bcp:47")]
    found = await ids(client, "Practitioner", communication="urn:ietf:bcp:47|pa")
    assert {p["id"] for p in speakers} <= set(found)
