"""The special search parameter `near` on Location, and chains to it.

https://hl7.org/fhir/R4/location.html#positional. Distances are worked out by hand: along a
meridian a sphere's great-circle distance is R x (difference of latitude in radians), so with
R = 6371.0088 km a tenth of a degree is 6371.0088 x pi / 1800 = 11.11951 km; k tenths are
k x 11.11951 km. One point east-west at latitude 60 checks that longitude is scaled by
cos(latitude): 0.2 degrees of longitude there is 2R asin(cos 60 x sin 0.1 deg) = 11.11946 km.
HTTP tests run on both backends (the `client` fixture), scoped to a fresh identifier tag.
"""

from __future__ import annotations

import math
import random
import uuid
from typing import Any

import httpx
import pytest

from fhir.errors import BadRequest
from fhir.index import extract
from fhir.registry import registry
from fhir.search import near
from tests.api.support import create, outcome, pages, search_ids

TENTH_KM = 11.11951  # 0.1 degree of latitude on the sphere of mean radius


def location(tag: str, name: str, lat: float, lon: float) -> dict[str, Any]:
    return {"resourceType": "Location", "status": "active", "name": name,
            "identifier": [{"system": "urn:test", "value": tag}],
            "position": {"latitude": lat, "longitude": lon}}


@pytest.fixture(scope="module")
async def places(client: httpx.AsyncClient) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:12]
    # k tenths of a degree north of (52, -1), written in a shuffled order: k = 0..6
    ks = list(range(7))
    random.Random(7).shuffle(ks)
    ids: dict[str, str] = {}
    for k in ks:
        made = await create(client, location(tag, f"north-{k}", round(52 + k / 10, 1), -1.0))
        ids[f"north-{k}"] = made["id"]
    made = await create(client, location(tag, "east-60", 60.0, 0.2))
    ids["east-60"] = made["id"]
    made = await create(client, location(tag, "origin-60", 60.0, 0.0))
    ids["origin-60"] = made["id"]
    nowhere = await create(client, {"resourceType": "Location", "name": "no position",
                                    "identifier": [{"system": "urn:test", "value": tag}]})
    ids["nowhere"] = nowhere["id"]
    service = await create(client, {
        "resourceType": "HealthcareService", "name": "clinic at north-1",
        "identifier": [{"system": "urn:test", "value": tag}],
        "location": [{"reference": f"Location/{ids['north-1']}"}]})
    far_service = await create(client, {
        "resourceType": "HealthcareService", "name": "clinic at north-5",
        "identifier": [{"system": "urn:test", "value": tag}],
        "location": [{"reference": f"Location/{ids['north-5']}"}]})
    role = await create(client, {
        "resourceType": "PractitionerRole", "identifier": [{"system": "urn:test", "value": tag}],
        "location": [{"reference": f"Location/{ids['north-2']}"}]})
    return {"tag": tag, "ids": ids, "service": service["id"], "far_service": far_service["id"],
            "role": role["id"]}


def _names(places: dict[str, Any], found: list[str]) -> list[str]:
    by_id = {v: k for k, v in places["ids"].items()}
    return [by_id[i] for i in found]


async def _near(client: httpx.AsyncClient, places: dict[str, Any], value: str,
                **extra: str) -> list[str]:
    params = {"identifier": f"urn:test|{places['tag']}", "near": value, **extra}
    return _names(places, await search_ids(client, "Location", params))


async def test_within_distance_nearest_first(client: httpx.AsyncClient, places: Any) -> None:
    # 25 km reaches k = 0, 1, 2 (0, 11.12, 22.24 km) but not k = 3 (33.36 km)
    assert await _near(client, places, "52|-1|25|km") == ["north-0", "north-1", "north-2"]
    # a point half way between k=3 and k=4, 12 km: k=3 and k=4 are 5.56 km away, k=2 and
    # k=5 16.68 km (outside)
    assert sorted(await _near(client, places, "52.35|-1|12|km")) == ["north-3", "north-4"]
    # the boundary: 22.24 km is in at 22.25 km, out at 22.23 km
    assert await _near(client, places, "52|-1|22.25") == ["north-0", "north-1", "north-2"]
    assert await _near(client, places, "52|-1|22.23") == ["north-0", "north-1"]


async def test_units(client: httpx.AsyncClient, places: Any) -> None:
    # 40 km reaches k <= 3 (33.36 km), not k = 4 (44.48 km); 40 km = 24.855 mi = 40000 m
    expected = ["north-0", "north-1", "north-2", "north-3"]
    assert await _near(client, places, "52|-1|40|km") == expected
    assert await _near(client, places, "52|-1|24.86|mi") == expected
    assert await _near(client, places, "52|-1|24.86|[mi_i]") == expected
    assert await _near(client, places, "52|-1|40000|m") == expected
    # 20.8 mi = 33.47 km: k = 3 in; 20.7 mi = 33.31 km: out
    assert (await _near(client, places, "52|-1|20.8|mi"))[-1] == "north-3"
    assert (await _near(client, places, "52|-1|20.7|mi"))[-1] == "north-2"
    # no units: km; no distance: the server's 50 km (k <= 4, 44.48 km)
    assert await _near(client, places, "52|-1|40") == expected
    assert await _near(client, places, "52|-1") == [*expected, "north-4"]


async def test_longitude_scaled_by_latitude(client: httpx.AsyncClient, places: Any) -> None:
    # 0.2 degrees east at latitude 60 is 11.119 km (not 22.24 km)
    assert await _near(client, places, "60|0|11.2") == ["origin-60", "east-60"]
    assert await _near(client, places, "60|0|11.1") == ["origin-60"]


async def test_sort_near_and_paging(client: httpx.AsyncClient, places: Any) -> None:
    everything = [f"north-{k}" for k in range(7)]
    assert await _near(client, places, "52|-1|100", _sort="near") == everything
    assert await _near(client, places, "52|-1|100", _sort="-near") == everything[::-1]
    # from the far end: k = 6 is nearest
    assert await _near(client, places, "52.6|-1|100") == everything[::-1]
    # pages of two keep the distance order across next links
    params = {"identifier": f"urn:test|{places['tag']}", "near": "52.3|-1|100", "_count": "2"}
    found = [e["resource"]["id"] for page in await pages(client, "/Location", params)
             for e in page.get("entry", ())]
    names = _names(places, found)
    assert names[0] == "north-3" and sorted(names[1:3]) == ["north-2", "north-4"]
    assert sorted(names[5:7]) == ["north-0", "north-6"] and len(names) == 7
    # a location without a position is never near anything
    assert "nowhere" not in await _near(client, places, "52|-1|20000")


async def test_chains_to_locations(client: httpx.AsyncClient, places: Any) -> None:
    tag = f"urn:test|{places['tag']}"
    found = await search_ids(client, "HealthcareService",
                             {"identifier": tag, "location.near": "52|-1|15"})
    assert found == [places["service"]]
    found = await search_ids(client, "HealthcareService",
                             {"identifier": tag, "location.near": "52|-1|60"})
    assert sorted(found) == sorted([places["service"], places["far_service"]])
    assert await search_ids(client, "PractitionerRole",
                            {"identifier": tag, "location.near": "52|-1|25|km"}) \
        == [places["role"]]
    assert await search_ids(client, "PractitionerRole",
                            {"identifier": tag, "location.near": "52|-1|20|km"}) == []
    # _has the other way round: locations a service of the tag points at
    found = await search_ids(client, "Location", {
        "_has:HealthcareService:location:identifier": tag, "near": "52|-1|100"})
    assert _names(places, found) == ["north-1", "north-5"]


@pytest.mark.parametrize(("value", "says"), [
    ("95|0|10|km", "latitude 95 is outside"),
    ("52|200|10", "longitude 200 is outside"),
    ("north|-1|10", "'north' is not a number"),
    ("52|-1|ten|km", "'ten' is not a number"),
    ("52|-1|10|ft", "unknown units 'ft'"),
    ("52|-1|-5|km", "must not be negative"),
    ("52", "latitude|longitude|distance|units"),
    ("52|-1|10|km|x", "latitude|longitude|distance|units"),
    ("52|nan|10", "'nan' is not a number"),
])
async def test_bad_near_is_400(client: httpx.AsyncClient, places: Any, value: str,
                               says: str) -> None:
    r = await client.get("/Location", params={"near": value})
    outcome(r, 400, says)


async def test_bad_sort_and_modifier(client: httpx.AsyncClient, places: Any) -> None:
    outcome(await client.get("/Location", params={"_sort": "near", "name": "x"}), 400,
            "_sort=near", "has none")
    outcome(await client.get("/Location", params={"near:exact": "52|-1|10"}), 400,
            "takes no modifier")
    outcome(await client.get("/HealthcareService", params={"location.near": "52|-1|10|parsec"}),
            400, "unknown units")


# ---------------------------------------------------------------- pure


def test_haversine_by_hand() -> None:
    assert near.haversine_km(52, -1, 52.1, -1) == pytest.approx(TENTH_KM, abs=1e-4)
    assert near.haversine_km(52, -1, 52.6, -1) == pytest.approx(6 * TENTH_KM, abs=1e-3)
    assert near.haversine_km(60, 0, 60, 0.2) == pytest.approx(11.11946, abs=1e-4)
    # a quarter of the equator: R pi / 2
    assert near.haversine_km(0, 0, 0, 90) == pytest.approx(6371.0088 * math.pi / 2, rel=1e-12)
    # antipodes do not leave asin's domain
    assert near.haversine_km(10, 20, -10, -160) == pytest.approx(6371.0088 * math.pi, rel=1e-7)


def test_parse_and_extract() -> None:
    assert near.parse("near", "51.5|-0.12|3|mi") == near.Point(51.5, -0.12, 3 * 1.609344)
    assert near.parse("near", "51.5|-0.12|250|m").km == pytest.approx(0.25)
    assert near.parse("near", "51.5|-0.12").km == near.DEFAULT_KM
    with pytest.raises(BadRequest):
        near.parse("near", "51.5||1")
    rows = extract({"resourceType": "Location",
                    "position": {"latitude": 51.5, "longitude": -0.12}}, registry())
    assert rows["position"] == [("near", 51.5, -0.12)]
    assert extract({"resourceType": "Location"}, registry())["position"] == []
