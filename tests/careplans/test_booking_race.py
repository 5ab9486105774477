"""Booking races against a real server: `python -m api serve --workers 2` on PostgreSQL (the
fixture and the race of tests/fhir/test_concurrency.py), 50 connections released together
to book one slot: exactly one booking, 49 answers of 409 that offer to search again, and the
slot busy; cancelled, it is free again, and the next race again has one winner."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fhir.test_concurrency import http, race, server  # noqa: F401  (fixtures)

SERVICE = "https://carenet.invalid/fhir/CodeSystem/network-service"


async def made(http: httpx.AsyncClient, body: dict[str, Any]) -> str:  # noqa: F811
    r = await http.post(f"/{body['resourceType']}", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_fifty_real_clients_book_one_slot(server: str,  # noqa: F811
                                                http: httpx.AsyncClient) -> None:  # noqa: F811
    kind = [{"coding": [{"system": SERVICE, "code": "medication-review"}]}]
    place = await made(http, {"resourceType": "Location", "name": "Race pharmacy",
                              "position": {"latitude": 51.75, "longitude": -0.3}})
    schedule = await made(http, {"resourceType": "Schedule", "serviceType": kind,
                                 "actor": [{"reference": f"Location/{place}"}]})
    slot = await made(http, {"resourceType": "Slot", "status": "free", "serviceType": kind,
                             "schedule": {"reference": f"Schedule/{schedule}"},
                             "start": "2030-02-04T10:00:00Z", "end": "2030-02-04T10:20:00Z"})
    patients = [await made(http, {"resourceType": "Patient", "name": [{"family": f"R{i}"}]})
                for i in range(50)]

    async def book(c: httpx.AsyncClient, i: int) -> httpx.Response:
        return await c.post("/Appointment", json={
            "resourceType": "Appointment", "status": "booked",
            "slot": [{"reference": f"Slot/{slot}"}],
            "participant": [{"actor": {"reference": f"Patient/{patients[i]}"},
                             "status": "accepted"}]})

    for round_ in range(2):
        answers = await race(server, 50, book)
        codes = sorted(r.status_code for r in answers)
        assert codes == [201] + [409] * 49, codes
        for r in answers:
            if r.status_code == 409:
                diagnostics = " ".join(i["diagnostics"] for i in r.json()["issue"])
                assert "no longer free" in diagnostics and "Search again" in diagnostics
        winner = next(r.json() for r in answers if r.status_code == 201)
        assert (await http.get(f"/Slot/{slot}")).json()["status"] == "busy"
        found = await http.get("/Appointment", params={"slot": f"Slot/{slot}",
                                                        "status": "booked"})
        assert [e["resource"]["id"] for e in found.json()["entry"]] == [winner["id"]], round_
        # cancelled: the slot is free for the next race
        r = await http.put(f"/Appointment/{winner['id']}",
                           json={**winner, "status": "cancelled"})
        assert r.status_code == 200, r.text
        assert (await http.get(f"/Slot/{slot}")).json()["status"] == "free"
