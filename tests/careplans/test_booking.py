"""Booking network services through the API, on both backends: free slots found across the
network, a slot taken atomically (and under 50 concurrent bookings on PostgreSQL), cancel and
reschedule, who may book for whom, requests that become worklist Tasks, and the referral a
booking opens for the service's staff (and when it ends)."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from careplans.booking.model import derived_id
from consent import context
from tests.api.support import outcome
from tests.careplans.support import make, new_patient, proxy, ref, staff
from tests.tokens import bearer, mint

SCT = "http://snomed.info/sct"
SERVICE = "https://carenet.invalid/fhir/CodeSystem/network-service"
SELF_BOOKING = "https://carenet.invalid/fhir/StructureDefinition/self-booking"
Body = dict[str, Any]


def service_type(code: str) -> list[Body]:
    return [{"coding": [{"system": SERVICE, "code": code}], "text": code}]


async def bookable(client: httpx.AsyncClient, n: SimpleNamespace, *, code: str, org: str,
                   role: str, lat: float, lon: float, self_booking: bool,
                   starts: list[str]) -> SimpleNamespace:
    """A service at a located site with a diary (Schedule) of free 20-minute slots."""
    s = SimpleNamespace()
    s.location = await make(client, {"resourceType": "Location", "name": f"{code} {n.tag}",
                                     "position": {"latitude": lat, "longitude": lon},
                                     "managingOrganization": ref("Organization", org)})
    s.service = await make(client, {
        "resourceType": "HealthcareService", "name": f"{code} {n.tag}",
        "extension": [{"url": SELF_BOOKING, "valueBoolean": self_booking}],
        "providedBy": ref("Organization", org), "type": service_type(code),
        "location": [ref("Location", s.location)]})
    s.schedule = await make(client, {
        "resourceType": "Schedule", "serviceType": service_type(code),
        "actor": [ref("HealthcareService", s.service), ref("PractitionerRole", role),
                  ref("Location", s.location)]})
    s.slots = [await make(client, {
        "resourceType": "Slot", "schedule": ref("Schedule", s.schedule), "status": "free",
        "serviceType": service_type(code), "start": start,
        "end": start.replace(":00:00Z", ":20:00Z")}) for start in starts]
    return s


@pytest.fixture
async def net(client: httpx.AsyncClient, app: Any) -> SimpleNamespace:
    """Practice A (a GP; a patient with a carer who may book for her) and practice B (a GP),
    a pharmacy whose pharmacist runs self-bookable medication reviews 8 km from the patient,
    and a frailty clinic (requests only) 4 km away, each with free slots."""
    n = SimpleNamespace(tag=uuid.uuid4().hex[:8])
    n.org_a = await make(client, {"resourceType": "Organization", "name": f"Oak {n.tag}"})
    n.org_b = await make(client, {"resourceType": "Organization", "name": f"Elm {n.tag}"})
    n.pharmacy = await make(client, {"resourceType": "Organization", "name": f"Ph {n.tag}"})
    n.clinic = await make(client, {"resourceType": "Organization", "name": f"Fr {n.tag}"})
    n.gp_a, n.gp_a_role = await staff(client, f"GpA{n.tag}", n.org_a, "R0260")
    n.gp_b, _ = await staff(client, f"GpB{n.tag}", n.org_b, "R0260")
    n.pharmacist, n.pharmacist_role = await staff(client, f"Ph{n.tag}", n.pharmacy, "R1290")
    n.geri, n.geri_role = await staff(client, f"Ger{n.tag}", n.clinic, "R0260")
    n.patient = await new_patient(client, n, "Able")
    n.other = await new_patient(client, n, "Baker")
    n.medicine = await make(client, {
        "resourceType": "MedicationStatement", "status": "active",
        "subject": ref("Patient", n.patient),
        "medicationCodeableConcept": {"text": "Levodopa 100 mg"}})
    n.carer = await make(client, {"resourceType": "RelatedPerson", "active": True,
                                  "patient": ref("Patient", n.patient)})
    await make(client, proxy(n.patient, n.carer, "Appointment"))
    # the patient lives at 52.0, -1.0; 0.072 degrees north is 8.0 km, 0.036 is 4.0 km
    n.review = await bookable(client, n, code="medication-review", org=n.pharmacy,
                              role=n.pharmacist_role, lat=52.072, lon=-1.0, self_booking=True,
                              starts=["2030-01-07T10:00:00Z", "2030-01-07T11:00:00Z",
                                      "2030-01-09T10:00:00Z"])
    n.frailty = await bookable(client, n, code="frailty-clinic", org=n.clinic, role=n.geri_role,
                               lat=52.036, lon=-1.0, self_booking=False,
                               starts=["2030-01-08T09:00:00Z", "2030-01-10T09:00:00Z"])

    async def who(sub: str, scope: str, **kw: Any) -> dict[str, str]:
        return bearer(await mint(app, sub=sub, fhir_user=sub, scope=scope, **kw))

    n.as_patient = await who(f"Patient/{n.patient}", "patient/*.cruds", patient=n.patient)
    n.as_other = await who(f"Patient/{n.other}", "patient/*.cruds", patient=n.other)
    n.as_carer = await who(f"RelatedPerson/{n.carer}", "user/*.cruds")
    n.as_gp_a = await who(f"Practitioner/{n.gp_a}", "user/*.cruds")
    n.as_gp_b = await who(f"Practitioner/{n.gp_b}", "user/*.cruds")
    n.as_pharmacist = await who(f"Practitioner/{n.pharmacist}", "user/*.cruds")
    n.as_geri = await who(f"Practitioner/{n.geri}", "user/*.cruds")
    return n


def appointment(patient: str, slot: str, status: str = "booked", **extra: Any) -> Body:
    return {"resourceType": "Appointment", "status": status, "slot": [ref("Slot", slot)],
            "participant": [{"actor": ref("Patient", patient), "status": "accepted"}], **extra}


async def slot_status(client: httpx.AsyncClient, slot: str) -> str:
    r = await client.get(f"/Slot/{slot}")
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


async def read(client: httpx.AsyncClient, path: str) -> Body | None:
    r = await client.get(path)
    assert r.status_code in (200, 404), r.text
    return r.json() if r.status_code == 200 else None


async def sees(client: httpx.AsyncClient, headers: dict[str, str], type_: str, id_: str) -> bool:
    """Whether the caller finds Type/id, asked afresh (a search: the read path may remember a
    decision for a few seconds, README "Caches")."""
    context.forget_reaches()
    r = await client.get(f"/{type_}", params={"_id": id_}, headers=headers)
    assert r.status_code == 200, r.text
    return [e["resource"]["id"] for e in r.json().get("entry", ())] == [id_]


async def test_free_slots_across_the_network_by_type_date_and_distance(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    base = {"status": "free", "start": "ge2030-01-07", "_sort": "start", "_count": "100"}
    # within 5 km of the patient: only the frailty clinic's slots (4 km); within 10, both
    near = {**base, "schedule.actor:Location.near": "52|-1|5|km"}
    r = await client.get("/Slot", params={**near, "_id": ",".join(
        net.review.slots + net.frailty.slots)})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == net.frailty.slots
    wide = {**base, "schedule.actor:Location.near": "52|-1|10|km",
            "_id": ",".join(net.review.slots + net.frailty.slots)}
    found = [e["resource"] for e in (await client.get("/Slot", params=wide)).json()["entry"]]
    assert [s["id"] for s in found] == [net.review.slots[0], net.review.slots[1],
                                        net.frailty.slots[0], net.review.slots[2],
                                        net.frailty.slots[1]]  # by start time
    # by service type and date range, as the patient asks it (their token)
    by_type = {"status": "free", "start": ["ge2030-01-07", "lt2030-01-08"],
               "schedule.actor:HealthcareService.service-type": f"{SERVICE}|medication-review",
               "schedule.actor:Location.near": "52|-1|10|km", "_sort": "start"}
    r = await client.get("/Slot", params=by_type, headers=net.as_patient)
    ids = [e["resource"]["id"] for e in r.json().get("entry", ())]
    assert net.review.slots[:2] == [i for i in ids if i in net.review.slots]
    assert not set(ids) & set(net.frailty.slots)


async def test_booking_takes_the_slot_and_a_second_booking_gets_409(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    slot = net.review.slots[0]
    r = await client.post("/Appointment", json=appointment(net.patient, slot),
                          headers=net.as_patient)
    assert r.status_code == 201, r.text
    assert await slot_status(client, slot) == "busy"
    r = await client.post("/Appointment", json=appointment(net.other, slot),
                          headers=net.as_other)
    body = outcome(r, 409, f"Slot/{slot}", "no longer free")
    assert any(i["severity"] == "information" and "Slot?schedule=Schedule/" in i["diagnostics"]
               for i in body["issue"])
    free = await client.get("/Slot", params={"schedule": f"Schedule/{net.review.schedule}",
                                             "status": "free"})
    assert slot not in {e["resource"]["id"] for e in free.json()["entry"]}
    # a slot that does not exist
    outcome(await client.post("/Appointment", json=appointment(net.patient, "nope"),
                              headers=net.as_patient), 422, "Slot/nope")


async def test_cancel_and_reschedule_free_the_slot(client: httpx.AsyncClient,
                                                   net: SimpleNamespace) -> None:
    first, second, third = net.review.slots
    made = (await client.post("/Appointment", json=appointment(net.patient, first),
                              headers=net.as_patient)).json()
    # reschedule: the new slot is taken, the old one freed, in one write
    moved = {**made, "slot": [ref("Slot", second)]}
    r = await client.put(f"/Appointment/{made['id']}", json=moved, headers=net.as_patient)
    assert r.status_code == 200, r.text
    assert [await slot_status(client, s) for s in (first, second)] == ["free", "busy"]
    # cancel: freed
    r = await client.put(f"/Appointment/{made['id']}", json={**r.json(), "status": "cancelled"},
                         headers=net.as_patient)
    assert r.status_code == 200, r.text
    assert await slot_status(client, second) == "free"
    # delete (staff): freed
    staff_made = (await client.post("/Appointment", json=appointment(net.patient, third),
                                    headers=net.as_gp_a)).json()
    assert await slot_status(client, third) == "busy"
    assert (await client.delete(f"/Appointment/{staff_made['id']}",
                                headers=net.as_gp_a)).status_code in (200, 204)
    assert await slot_status(client, third) == "free"
    # rescheduling onto a taken slot changes nothing
    a = (await client.post("/Appointment", json=appointment(net.patient, first),
                           headers=net.as_patient)).json()
    b = (await client.post("/Appointment", json=appointment(net.patient, second),
                           headers=net.as_patient)).json()
    r = await client.put(f"/Appointment/{b['id']}", json={**b, "slot": [ref("Slot", first)]},
                         headers=net.as_patient)
    outcome(r, 409, "no longer free")
    assert [await slot_status(client, s) for s in (first, second)] == ["busy", "busy"]
    assert (await client.get(f"/Appointment/{a['id']}")).json()["status"] == "booked"


async def test_who_may_book_for_whom(client: httpx.AsyncClient,
                                     net: SimpleNamespace) -> None:
    slot = net.review.slots[0]
    # another patient, and a member of staff with no relationship: refused, slot untouched
    outcome(await client.post("/Appointment", json=appointment(net.patient, slot),
                              headers=net.as_other), 403)
    r = await client.post("/Appointment", json=appointment(net.patient, slot),
                          headers=net.as_gp_b)
    assert r.status_code in (403, 404), r.text
    assert await slot_status(client, slot) == "free"
    # the carer with a proxy grant for Appointment books for the person they care for
    r = await client.post("/Appointment", json=appointment(net.patient, slot),
                          headers=net.as_carer)
    assert r.status_code == 201, r.text
    assert r.json()["meta"]["source"] == f"RelatedPerson/{net.carer}"
    # but not for someone else
    outcome(await client.post("/Appointment",
                              json=appointment(net.other, net.review.slots[1]),
                              headers=net.as_carer), 403)
    # the registered GP books for their patient
    r = await client.post("/Appointment", json=appointment(net.patient, net.review.slots[1]),
                          headers=net.as_gp_a)
    assert r.status_code == 201, r.text


async def test_a_request_becomes_a_worklist_task(client: httpx.AsyncClient,
                                                 net: SimpleNamespace) -> None:
    slot = net.frailty.slots[0]
    # the frailty clinic takes no self-booking
    outcome(await client.post("/Appointment", json=appointment(net.patient, slot),
                              headers=net.as_patient), 403, "proposed")
    assert await slot_status(client, slot) == "free"
    request = {"resourceType": "Appointment", "status": "proposed",
               "serviceType": service_type("frailty-clinic"),
               "participant": [{"actor": ref("Patient", net.patient), "status": "accepted"},
                               {"actor": ref("HealthcareService", net.frailty.service),
                                "status": "needs-action"}]}
    r = await client.post("/Appointment", json=request, headers=net.as_patient)
    assert r.status_code == 201, r.text
    made = r.json()
    task = await read(client, f"/Task/{derived_id(made['id'], 'request')}")
    assert task is not None and task["status"] == "requested"
    assert task["owner"] == ref("Organization", net.clinic)
    assert task["focus"] == ref("Appointment", made["id"])
    # it is on the clinic's worklist: its clinician finds it, and sees the patient
    context.forget_reaches()
    r = await client.get("/Task", params={"owner": f"Organization/{net.clinic}",
                                          "status": "requested"}, headers=net.as_geri)
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [task["id"]]
    assert await read(httpx_as(client, net.as_geri), f"/Patient/{net.patient}") is not None
    # the clinic books it into a slot: the request is done, the slot taken
    booked = {**made, "status": "booked", "slot": [ref("Slot", slot)]}
    r = await client.put(f"/Appointment/{made['id']}", json=booked, headers=net.as_geri)
    assert r.status_code == 200, r.text
    done = await read(client, f"/Task/{task['id']}")
    assert done is not None and done["status"] == "completed"
    assert await slot_status(client, slot) == "busy"


def httpx_as(client: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    """`client` with `headers` on every request (a member of staff's token)."""
    return SimpleNamespace(get=lambda path, **kw: client.get(path, headers=headers, **kw))


async def test_booking_opens_a_referral_for_the_service_staff_until_it_ends(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    pharmacist = httpx_as(client, net.as_pharmacist)
    assert not await sees(client, net.as_pharmacist, "Patient", net.patient)  # not yet
    made = (await client.post("/Appointment", json=appointment(net.patient, net.review.slots[0]),
                              headers=net.as_patient)).json()
    referral = await read(client, f"/ServiceRequest/{derived_id(made['id'], 'referral')}")
    assert referral is not None and referral["status"] == "active"
    assert referral["performer"] == [ref("PractitionerRole", net.pharmacist_role)]
    assert referral["requester"] == ref("Patient", net.patient)
    # the pharmacist now sees the patient's record, as the referral justifies...
    assert await read(pharmacist, f"/Patient/{net.patient}") is not None
    assert await read(pharmacist, f"/MedicationStatement/{net.medicine}") is not None
    assert await sees(client, net.as_pharmacist, "MedicationStatement", net.medicine)
    # ...and nobody else's
    assert await read(pharmacist, f"/Patient/{net.other}") is None
    # cancelled: the referral is revoked and the relationship ends
    r = await client.put(f"/Appointment/{made['id']}", json={**made, "status": "cancelled"},
                         headers=net.as_patient)
    assert r.status_code == 200, r.text
    revoked = await read(client, f"/ServiceRequest/{referral['id']}")
    assert revoked is not None and revoked["status"] == "revoked"
    assert not await sees(client, net.as_pharmacist, "Patient", net.patient)
    # fulfilled: the referral completes, and the relationship ends too
    again = (await client.post("/Appointment",
                               json=appointment(net.patient, net.review.slots[1]),
                               headers=net.as_patient)).json()
    r = await client.put(f"/Appointment/{again['id']}", json={**again, "status": "fulfilled"},
                         headers=net.as_pharmacist)
    assert r.status_code == 200, r.text
    done = await read(client, f"/ServiceRequest/{derived_id(again['id'], 'referral')}")
    assert done is not None and done["status"] == "completed"
    assert not await sees(client, net.as_pharmacist, "MedicationStatement", net.medicine)
    # a booking with the patient's own practice opens no referral
    own = await bookable(client, net, code="gp-appointment", org=net.org_a, role=net.gp_a_role,
                         lat=52.0, lon=-1.0, self_booking=True, starts=["2030-01-07T09:00:00Z"])
    mine = (await client.post("/Appointment", json=appointment(net.patient, own.slots[0]),
                              headers=net.as_patient)).json()
    assert await read(client, f"/ServiceRequest/{derived_id(mine['id'], 'referral')}") is None


async def test_fifty_concurrent_bookings_of_one_slot(client: httpx.AsyncClient,
                                                     net: SimpleNamespace,
                                                     database_url: str) -> None:
    slot = net.review.slots[2]
    others = [await new_patient(client, net, f"C{i}") for i in range(50)]
    results = await asyncio.gather(*(
        client.post("/Appointment", json=appointment(p, slot)) for p in others))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [409] * 49, statuses
    for r in results:
        if r.status_code == 409:
            outcome(r, 409, "no longer free", "Search again")
    winner = next(r.json() for r in results if r.status_code == 201)
    assert await slot_status(client, slot) == "busy"
    found = await client.get("/Appointment", params={"slot": f"Slot/{slot}"})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [winner["id"]]


async def test_find_operation(client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    ask = {"service-type": f"{SERVICE}|medication-review,{SERVICE}|frailty-clinic",
           "near": "52|-1|10|km", "start": "2030-01-07", "end": "2030-01-10",
           "_count": "100"}  # other tests' networks have slots at the same places and times
    r = await client.get("/Slot/$find", params=ask, headers=net.as_patient)
    assert r.status_code == 200, r.text
    bundle = r.json()
    matches = [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
    mine = net.review.slots + net.frailty.slots
    # soonest first, the 10th (a slot starting on the 10th) outside the range
    assert [i for i in matches if i in mine] == [net.review.slots[0], net.review.slots[1],
                                                 net.frailty.slots[0], net.review.slots[2]]
    included = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]
                if e["search"]["mode"] == "include"}
    assert {("Schedule", net.review.schedule), ("HealthcareService", net.review.service),
            ("Location", net.review.location),
            ("PractitionerRole", net.pharmacist_role)} <= included
    # 5 km: the frailty clinic only; one service type: only its slots
    r = await client.get("/Slot/$find", params={**ask, "near": "52|-1|5|km"},
                         headers=net.as_patient)
    assert [e["resource"]["id"] for e in r.json()["entry"] if e["search"]["mode"] == "match"
            and e["resource"]["id"] in mine] == [net.frailty.slots[0]]
    one = {**ask, "service-type": f"{SERVICE}|frailty-clinic"}
    r = await client.get("/Slot/$find", params=one, headers=net.as_patient)
    assert [e["resource"]["id"] for e in r.json()["entry"] if e["search"]["mode"] == "match"
            and e["resource"]["id"] in mine] == [net.frailty.slots[0]]
    # a booked slot is no longer offered
    await client.post("/Appointment", json=appointment(net.patient, net.review.slots[0]),
                      headers=net.as_patient)
    r = await client.get("/Slot/$find", params=ask, headers=net.as_patient)
    assert net.review.slots[0] not in [e["resource"]["id"] for e in r.json()["entry"]]
    assert "Slot/$find?" in r.json()["link"][0]["url"]


@pytest.mark.parametrize(("params", "says"), [
    ({"colour": "blue"}, "does not take 'colour'"),
    ({"near": "52|-1|5|furlongs"}, "unknown units"),
    ({"start": "2030-01-10", "end": "2030-01-07"}, "'end' must be after 'start'"),
    ({"start": "2030-01-01", "end": "2031-01-01"}, "at most 92 days"),
    ({"start": "soon"}, "'start'"),
    ({"_count": "0"}, "_count"),
    ({"near": "1|2", "_count": "5", "start": "2030-01-01"} | {"end": ""}, "'end' is empty"),
])
async def test_find_refuses_bad_questions(client: httpx.AsyncClient, params: dict[str, str],
                                          says: str) -> None:
    outcome(await client.get("/Slot/$find", params=params), 400, says)


async def test_capability_names_the_find_operation(client: httpx.AsyncClient) -> None:
    r = await client.get("/metadata")
    slot = next(e for e in r.json()["rest"][0]["resource"] if e["type"] == "Slot")
    assert {"name": "find", "definition": "https://carenet.invalid/fhir/OperationDefinition/"
            "find-slots"} in slot["operation"]
