"""Messages to the care team, repeat prescription requests and appointment requests.

All three are `Communication`s from the patient (or their carer) to their registered
practice (https://hl7.org/fhir/R4/communication.html), told apart by a category of
PORTAL_CODES; a request names what it is about (`about`: the MedicationRequest to repeat).
Staff answer with a Communication `inResponseTo` it, which the page shows as the answer.

Why not a Task for a repeat, or a proposed Appointment: patients and carers may neither
write nor read Tasks or Appointments' writes (consent/data/role-access.csv, by design:
worklist Tasks are the staff's working notes). A Communication is what they may write; the
case managers' worklist turns one without an answer into a Task for the practice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from web.fhir_client import ApiError
from web.portal.actions import flash, ok
from web.portal.common import names, page
from web.portal.words import Names, concept
from web.session_deps import Visit, posted, visit

routes = APIRouter(prefix="/portal")
Body = dict[str, Any]
PORTAL_CODES = "https://carenet.invalid/fhir/CodeSystem/portal-request"
KINDS = {"patient-message": "Message from the patient",
         "repeat-prescription": "Repeat prescription request",
         "appointment-request": "Appointment request"}
MAX_TEXT = 2000


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def text_of(c: Body) -> str:
    return " ".join(str(p.get("contentString", "")) for p in c.get("payload") or ())


def kind_of(c: Body) -> str:
    for concept_ in c.get("category") or ():
        for coding in concept_.get("coding") or ():
            if coding.get("system") == PORTAL_CODES:
                return str(coding.get("code"))
    return "patient-message"


async def _practice(v: Visit) -> str | None:
    """The patient's registered practice (Patient.generalPractitioner), if they may read it."""
    try:
        patient = await v.fhir.read("Patient", v.patient)
    except ApiError:
        return None
    for gp in patient.get("generalPractitioner") or ():
        if str(gp.get("reference", "")).startswith("Organization/"):
            return str(gp["reference"])
    return None


async def _conversations(v: Visit) -> tuple[list[Body], dict[str, list[Body]], Names]:
    """The person's Communications (newest first), the replies to each, and who wrote them."""
    try:
        found = await v.fhir.search("Communication", [("patient", v.patient), ("_count", "200"),
                                                      ("_sort", "-sent")])
    except ApiError as exc:
        if exc.status == 401:
            raise
        found = []
    who = Names(v.fhir, v.user, "You")
    await who.load(found)
    replies: dict[str, list[Body]] = {}
    for c in found:
        for parent in c.get("inResponseTo") or ():
            replies.setdefault(str(parent.get("reference", "")), []).append(c)
    for answers in replies.values():
        answers.sort(key=lambda c: c.get("sent") or "")
    return [c for c in found if not c.get("inResponseTo")], replies, who


async def _send(v: Visit, kind: str, text: str, about: Body | None = None) -> None:
    body: Body = {"resourceType": "Communication", "status": "completed",
                  "category": [{"coding": [{"system": PORTAL_CODES, "code": kind}],
                                "text": KINDS[kind]}],
                  "subject": {"reference": f"Patient/{v.patient}"}, "sent": _now(),
                  "sender": {"reference": v.user}, "payload": [{"contentString": text}]}
    practice = await _practice(v)
    if practice:
        body["recipient"] = [{"reference": practice}]
    if about:
        body["about"] = [about]
    await v.fhir.create(body)


# ---- messages -----------------------------------------------------------------------------

@routes.get("/messages")
async def messages(request: Request) -> Response:
    v = await visit(request)
    await names(v)
    return await _messages_page(v)


async def _messages_page(v: Visit, *, status: int = 200, error: str = "",
                         text: str = "") -> Response:
    threads, replies, who = await _conversations(v)
    return page(v, "messages.html", status=status, title="Messages", who=who, error=error,
                threads=[c for c in threads if kind_of(c) == "patient-message"],
                replies=replies, text=text, flash=await flash(v), text_of=text_of)


@routes.post("/messages")
async def send(request: Request) -> Response:
    v, form = await posted(request)
    text = form.get("message", "").strip()
    if not text:
        return await _messages_page(v, status=422, error="Write your message first")
    if len(text) > MAX_TEXT:
        return await _messages_page(v, status=422, text=text,
                                    error="Your message must be 2,000 characters or fewer")
    await _send(v, "patient-message", text)
    return await ok(v, "/portal/messages", "Your message was sent to your care team.")


# ---- repeat prescriptions -----------------------------------------------------------------

def _medicine_name(m: Body) -> str:
    return concept(m.get("medicationCodeableConcept")) or str(
        (m.get("medicationReference") or {}).get("display") or "medicine")


@routes.get("/repeats")
async def repeats(request: Request) -> Response:
    v = await visit(request)
    await names(v)
    try:
        medicines = await v.fhir.search("MedicationRequest", [
            ("patient", v.patient), ("status", "active"), ("_count", "100")])
    except ApiError as exc:
        if exc.status == 401:
            raise
        medicines = []
    threads, replies, _ = await _conversations(v)
    asked = [c for c in threads if kind_of(c) == "repeat-prescription"]
    pending = {str(a.get("reference")) for c in asked if not replies.get(f"Communication/{c['id']}")
               for a in c.get("about") or ()}
    return page(v, "repeats.html", title="Repeat prescriptions", medicines=medicines,
                asked=asked, replies=replies, pending=pending, name_of=_medicine_name,
                text_of=text_of, flash=await flash(v))


@routes.post("/repeats")
async def request_repeat(request: Request) -> Response:
    v, form = await posted(request)
    medicine_id = form.get("medicine", "")
    try:
        medicine = await v.fhir.read("MedicationRequest", medicine_id)
    except ApiError as exc:
        if exc.status == 401:
            raise
        return page(v, "not_found.html", status=404, title="Page not found")
    if ((medicine.get("subject") or {}).get("reference") != f"Patient/{v.patient}"
            or medicine.get("status") != "active"):
        return await ok(v, "/portal/repeats", "Only a current medicine can be repeated.")
    name = _medicine_name(medicine)
    note = form.get("note", "").strip()[:500]
    await _send(v, "repeat-prescription",
                f"Please may I have a repeat prescription of {name}." + (f" {note}" if note
                                                                          else ""),
                about={"reference": f"MedicationRequest/{medicine_id}", "display": name})
    return await ok(v, "/portal/repeats", f"Your request for {name} was sent to your practice.")


# ---- appointments -------------------------------------------------------------------------

async def _appointments_page(v: Visit, *, status: int = 200, errors: dict[str, str] | None = None,
                             form: dict[str, str] | None = None) -> Response:
    try:
        booked = await v.fhir.search("Appointment", [("patient", v.patient), ("_sort", "-date"),
                                                     ("_count", "100")])
    except ApiError as exc:
        if exc.status == 401:
            raise
        booked = []
    threads, replies, _ = await _conversations(v)
    asked = [c for c in threads if kind_of(c) == "appointment-request"]
    return page(v, "appointments.html", status=status, title="Appointments", appointments=booked,
                asked=asked, replies=replies, text_of=text_of, concept=concept,
                flash=await flash(v), errors=errors or {}, form=form or {})


@routes.get("/appointments")
async def appointments(request: Request) -> Response:
    v = await visit(request)
    await names(v)
    return await _appointments_page(v)


@routes.post("/appointments")
async def request_appointment(request: Request) -> Response:
    """Until booking exists (the directory and booking issue), a request to the practice."""
    v, form = await posted(request)
    reason, when = form.get("reason", "").strip(), form.get("when", "").strip()
    if not reason:
        return await _appointments_page(v, status=422, form=form,
                                        errors={"reason": "Say what the appointment is for"})
    text = f"I would like an appointment for: {reason[:500]}." + (
        f" When suits me: {when[:500]}." if when else "")
    await _send(v, "appointment-request", text)
    return await ok(v, "/portal/appointments", "Your request was sent. The practice will "
                                               "contact you to book a time.")
