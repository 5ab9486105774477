"""Booking, the pure part: which slots an Appointment holds, and the records a booking makes.

FHIR R4 scheduling (https://hl7.org/fhir/R4/appointment.html, slot.html, schedule.html):
an `Appointment` names the `Slot`s it takes (`Appointment.slot`); a Slot is `free` or `busy`.
An appointment holds its slots while it is pending, booked, arrived, checked in, fulfilled or
marked no-show; a proposal (`proposed`), a waitlist entry, a cancellation or an entry in error
holds none ("the slot ... is no longer available", appointment.html#statuses).

What a booking makes besides the slot's status:
- a referral `ServiceRequest` to the clinician whose diary the slot is in, when they work for
  another organisation than the patient's practice: the relationship their access needs
  (consent/relationships.py, REFERRAL), open (`active`) while the appointment holds its slot,
  `completed` when it is fulfilled, `revoked` when it is cancelled;
- for a request (`proposed`) to a service: a `Task` for the service's worklist
  (owner: the clinician of the slot's diary, else the service's organisation; status
  `requested`, code `fulfill`: https://hl7.org/fhir/R4/codesystem-task-code.html), closed when
  the appointment is booked (`completed`) or withdrawn (`cancelled`).
Both have ids derived from the appointment's, so every later write of the appointment finds
them without a search.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

HOLDING = frozenset({"pending", "booked", "arrived", "checked-in", "fulfilled", "noshow"})
ENDED = frozenset({"cancelled", "entered-in-error"})
BOOKING_SYSTEM = "https://carenet.invalid/fhir/Id/booking"
SELF_BOOKING = "https://carenet.invalid/fhir/StructureDefinition/self-booking"
TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://carenet.invalid/booking")


@dataclass(frozen=True, slots=True)
class Service:
    """What a slot or a request is for: its HealthcareService, the diary's clinician (a
    PractitionerRole) and organisation, and whether patients may book it themselves."""

    healthcare_service: str | None
    practitioner_role: str | None
    organization: str | None
    name: str
    self_booking: bool
    type: list[dict[str, Any]]


def held(appointment: dict[str, Any] | None) -> set[str]:
    """The Slot ids `appointment` holds (none unless its status holds slots)."""
    if not appointment or appointment.get("status") not in HOLDING:
        return set()
    return slot_ids(appointment)


def slot_ids(appointment: dict[str, Any]) -> set[str]:
    out = set()
    for ref in appointment.get("slot") or ():
        text = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(text, str) and text.startswith("Slot/"):
            out.add(text.split("/")[1])
    return out


def derived_id(appointment_id: str, what: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{appointment_id}/{what}"))


def self_booking(service: dict[str, Any] | None) -> bool:
    """A HealthcareService's self-booking flag (default: not self-bookable)."""
    for ext in (service or {}).get("extension") or ():
        if ext.get("url") == SELF_BOOKING:
            return ext.get("valueBoolean") is True
    return False


def referral(appointment: dict[str, Any], patient_id: str, service: Service,
             requester: str | None, period: dict[str, str] | None) -> dict[str, Any]:
    """The referral to the diary's clinician that a booking makes (status `active`)."""
    body: dict[str, Any] = {
        "resourceType": "ServiceRequest", "id": derived_id(appointment["id"], "referral"),
        "identifier": [{"system": BOOKING_SYSTEM, "value": appointment["id"]}],
        "status": "active", "intent": "order",
        "code": {"coding": [c for t in service.type for c in t.get("coding", ())],
                 "text": service.name},
        "subject": {"reference": f"Patient/{patient_id}"},
        "performer": [{"reference": service.practitioner_role}],
        "supportingInfo": [{"reference": f"Appointment/{appointment['id']}"}],
        "note": [{"text": f"Booked: {service.name}. Open while the appointment holds its "
                          "slot; completed when it is fulfilled, revoked when cancelled."}],
    }
    if requester:
        body["requester"] = {"reference": requester}
    if period:
        body["occurrencePeriod"] = period
    return body


def request_task(appointment: dict[str, Any], patient_id: str, service: Service,
                 requester: str | None, authored: str) -> dict[str, Any]:
    """The worklist item a request (`proposed`) to a service makes (status `requested`)."""
    owner = service.practitioner_role or service.organization
    body: dict[str, Any] = {
        "resourceType": "Task", "id": derived_id(appointment["id"], "request"),
        "identifier": [{"system": BOOKING_SYSTEM, "value": appointment["id"]}],
        "status": "requested", "intent": "order", "priority": "routine",
        "code": {"coding": [{"system": TASK_CODE, "code": "fulfill",
                             "display": "Fulfill the focal request"}],
                 "text": "Appointment request"},
        "description": f"Appointment request for {service.name}: offer a slot, or decline.",
        "focus": {"reference": f"Appointment/{appointment['id']}"},
        "for": {"reference": f"Patient/{patient_id}"},
        "authoredOn": authored,
    }
    if owner:
        body["owner"] = {"reference": owner}
    if requester:
        body["requester"] = {"reference": requester}
    return body


def closing_status(kind: str, appointment_status: str) -> str | None:
    """The status a referral (`kind` "referral") or request Task ("request") takes when its
    appointment moves to `appointment_status`; None: leave it as it is."""
    if kind == "referral":
        if appointment_status == "fulfilled":
            return "completed"
        if appointment_status in ENDED or appointment_status not in HOLDING:
            return "revoked"
        return None
    if appointment_status in HOLDING:
        return "completed"
    if appointment_status in ENDED:
        return "cancelled"
    return None
