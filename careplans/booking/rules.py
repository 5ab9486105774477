"""The write rule of Appointment (`fhir.writerules`): booking takes a slot atomically.

Every write of an Appointment, whatever its route (create, update, PATCH, delete, a Bundle
entry), goes through `check`, after access control and in the write's transaction:
- the slots it newly holds (model.py says which statuses hold) must be `free`: each is read
  with a row lock (SELECT ... FOR UPDATE, in id order so two bookings never wait on each other
  crosswise) and written back `busy`. Of concurrent bookings of one slot the first to lock it
  wins; the others wait for its commit, then read the slot busy and get 409 with a search
  for other free slots of the same diary (PostgreSQL re-reads a locked row once its locker
  commits: https://www.postgresql.org/docs/current/transaction-iso.html#XACT-READ-COMMITTED;
  SQLite has one writer at a time, fhir/db.py);
- the slots it no longer holds (cancelled, rescheduled to another slot, deleted) go back to
  `free`;
- a patient or carer (the write's meta.source is them: api/guard.py) books only services
  that take self-booking; for others they send a request (`proposed`), which becomes a Task
  on the service's worklist;
- a booking with a clinician of another organisation than the patient's practice opens a
  referral ServiceRequest to them (the relationship their access needs), closed with the
  appointment.
The Slot, ServiceRequest and Task are written on the server's account (`guarding(None)`): a
patient may not write a Slot, but their booking changes it. The caller's own write was
already decided by the guard.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from careplans.booking import model
from careplans.booking.model import Service
from fhir import guard, store
from fhir.errors import Conflict, Forbidden, Issue, Unprocessable
from fhir.store import Stored

PERSONAL = ("Patient/", "RelatedPerson/")


def _content(stored: Stored | None) -> dict[str, Any] | None:
    if stored is None or stored.deleted or stored.content is None:
        return None
    return orjson.loads(stored.content)


async def _read(conn: Any, reference: str | None, *, lock: bool = False
                ) -> tuple[Stored | None, dict[str, Any] | None]:
    if not reference or reference.count("/") != 1:
        return None, None
    type_, id_ = reference.split("/")
    stored = await store.read_current(conn, type_, id_, for_update=lock)
    return stored, _content(stored)


def _ref(value: Any) -> str | None:
    return value.get("reference") if isinstance(value, dict) else None


async def service_of_schedule(conn: Any, schedule_ref: str | None) -> Service | None:
    """The service a Schedule is the diary of (its HealthcareService and PractitionerRole)."""
    _, schedule = await _read(conn, schedule_ref)
    if schedule is None:
        return None
    actors = [_ref(a) or "" for a in schedule.get("actor") or ()]
    hs_ref = next((a for a in actors if a.startswith("HealthcareService/")), None)
    role_ref = next((a for a in actors if a.startswith("PractitionerRole/")), None)
    return await _service(conn, hs_ref, role_ref, schedule.get("serviceType") or [])


async def _service(conn: Any, hs_ref: str | None, role_ref: str | None,
                   types: list[dict[str, Any]]) -> Service:
    _, hs = await _read(conn, hs_ref)
    _, role = await _read(conn, role_ref)
    organization = _ref((role or {}).get("organization")) or _ref((hs or {}).get("providedBy"))
    name = (hs or {}).get("name") or next((t.get("text") for t in types if t.get("text")),
                                          "the service")
    return Service(hs_ref if hs else None, role_ref if role else None, organization, name,
                   model.self_booking(hs), (hs or {}).get("type") or types)


def _taken(slot_id: str, slot: dict[str, Any]) -> Conflict:
    when = slot.get("start", "")
    schedule = _ref(slot.get("schedule")) or ""
    again = f"Slot?schedule={schedule}&status=free&start=ge{when[:10]}&_sort=start"
    return Conflict(issues=[
        Issue("conflict", f"Slot/{slot_id} ({when}) is no longer free: someone else booked "
                          "it a moment ago. Nothing was booked; choose another slot.",
              expression="Appointment.slot"),
        Issue("informational", f"Search again for free slots of the same diary: GET {again}",
              severity="information")])


class AppointmentRule:
    """fhir.writerules.WriteRule for Appointment."""

    def prepare(self, body: dict[str, Any]) -> None:
        return None

    async def check(self, conn: Any, interaction: str, body: dict[str, Any] | None,
                    patient_id: str | None, current: Stored | None) -> None:
        old = _content(current)
        take = sorted(model.held(body) - model.held(old))
        give = sorted(model.held(old) - model.held(body))
        source = ((body or {}).get("meta") or {}).get("source")
        personal = isinstance(source, str) and source.startswith(PERSONAL)
        with guard.guarding(None):
            booked: Service | None = None
            for slot_id in sorted({*take, *give}):  # one lock order for every writer
                if slot_id in take:
                    booked = await self._take(conn, slot_id, personal) or booked
                else:
                    await self._give_back(conn, slot_id)
            if body is not None and patient_id is not None:
                await self._referral(conn, body, patient_id, booked, source)
                await self._request(conn, body, old, patient_id, source)
            elif old is not None:  # deleted: close what it opened
                await self._close(conn, old["id"], "cancelled")

    async def _take(self, conn: Any, slot_id: str, personal: bool) -> Service | None:
        stored, slot = await _read(conn, f"Slot/{slot_id}", lock=True)
        if stored is None or slot is None:
            raise Unprocessable(f"Appointment.slot names Slot/{slot_id}, which does not exist.",
                                expression="Appointment.slot")
        if slot.get("status") != "free":
            raise _taken(slot_id, slot)
        service = await service_of_schedule(conn, _ref(slot.get("schedule")))
        if personal and service is not None and not service.self_booking:
            raise Forbidden(
                f"{service.name} does not take bookings from patients: send the appointment "
                "with status 'proposed' (a request), and the service will offer you a time.")
        slot["status"] = "busy"
        await store.replace(conn, stored, slot, method="PUT")
        return service

    async def _give_back(self, conn: Any, slot_id: str) -> None:
        stored, slot = await _read(conn, f"Slot/{slot_id}", lock=True)
        if stored is not None and slot is not None and slot.get("status") == "busy":
            slot["status"] = "free"
            await store.replace(conn, stored, slot, method="PUT")

    async def _referral(self, conn: Any, body: dict[str, Any], patient_id: str,
                        booked: Service | None, source: str | None) -> None:
        """Open a referral for a booking with another organisation's clinician; close it when
        the appointment stops holding its slot."""
        ref_id = model.derived_id(body["id"], "referral")
        stored, existing = await _read(conn, f"ServiceRequest/{ref_id}", lock=True)
        if existing is not None and existing.get("status") in ("active", "on-hold"):
            status = model.closing_status("referral", body.get("status", ""))
            if status is not None:
                existing["status"] = status
                await store.replace(conn, stored, existing, method="PUT")
            elif booked is not None and booked.practitioner_role is not None:  # rescheduled
                existing["performer"] = [{"reference": booked.practitioner_role}]
                await store.replace(conn, stored, existing, method="PUT")
            return
        if booked is None or booked.practitioner_role is None or stored is not None:
            return
        _, patient = await _read(conn, f"Patient/{patient_id}")
        practices = {_ref(g) for g in (patient or {}).get("generalPractitioner") or ()}
        if booked.organization in practices:
            return  # the patient's own practice: registered already gives the relationship
        period = {k: body[k] for k in ("start", "end") if body.get(k)} or None
        await store.insert(conn, model.referral(body, patient_id, booked, _requester(source),
                                                period), method="POST")

    async def _request(self, conn: Any, body: dict[str, Any], old: dict[str, Any] | None,
                       patient_id: str, source: str | None) -> None:
        """A request (`proposed`) to a service becomes a Task on its worklist; the Task closes
        when the request is booked or withdrawn."""
        task_id = model.derived_id(body["id"], "request")
        status = body.get("status", "")
        if status == "proposed":
            if old is not None and old.get("status") == "proposed":
                return
            service = await self._requested_service(conn, body)
            if service is None:
                return
            stored, _ = await _read(conn, f"Task/{task_id}")
            if stored is None:
                now = datetime.now(UTC).isoformat(timespec="seconds")
                await store.insert(conn, model.request_task(body, patient_id, service,
                                                            _requester(source), now),
                                   method="POST")
            return
        if old is not None and old.get("status") == "proposed":
            closing = model.closing_status("request", status)
            if closing is not None:
                await self._set_task(conn, task_id, closing)

    async def _requested_service(self, conn: Any, body: dict[str, Any]) -> Service | None:
        for slot_id in sorted(model.slot_ids(body)):
            _, slot = await _read(conn, f"Slot/{slot_id}")
            if slot is not None:
                found = await service_of_schedule(conn, _ref(slot.get("schedule")))
                if found is not None:
                    return found
        actors = [_ref(p.get("actor")) or "" for p in body.get("participant") or ()]
        hs_ref = next((a for a in actors if a.startswith("HealthcareService/")), None)
        role_ref = next((a for a in actors if a.startswith("PractitionerRole/")), None)
        if hs_ref is None:
            return None
        return await _service(conn, hs_ref, role_ref, body.get("serviceType") or [])

    async def _set_task(self, conn: Any, task_id: str, status: str) -> None:
        stored, task = await _read(conn, f"Task/{task_id}", lock=True)
        if task is not None and task.get("status") not in ("completed", "cancelled",
                                                            "failed", "rejected"):
            task["status"] = status
            await store.replace(conn, stored, task, method="PUT")

    async def _close(self, conn: Any, appointment_id: str, status: str) -> None:
        stored, referral = await _read(
            conn, f"ServiceRequest/{model.derived_id(appointment_id, 'referral')}", lock=True)
        if referral is not None and referral.get("status") in ("active", "on-hold"):
            referral["status"] = "revoked"
            await store.replace(conn, stored, referral, method="PUT")
        await self._set_task(conn, model.derived_id(appointment_id, "request"), status)


def _requester(source: str | None) -> str | None:
    if isinstance(source, str) and source.split("/")[0] in (
            "Patient", "RelatedPerson", "Practitioner", "PractitionerRole", "Organization"):
        return source
    return None


RULE = AppointmentRule()
