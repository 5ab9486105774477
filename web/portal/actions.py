"""Pages that add to the record: readings, questionnaires, care plan words, messages, repeat
prescriptions, appointment requests; and the carer's switch between records.

Every write is a plain FHIR interaction with the person's token: the server stamps it as
patient-entered (meta.source) and audits it. A refused or invalid form changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from web import auth, layout
from web.fhir_client import ApiError
from web.portal import readings
from web.portal.common import APP, names, page
from web.portal.words import Names, concept
from web.session_deps import Visit, form_of, posted, store_of, visit

routes = APIRouter(prefix="/portal")
Body = dict[str, Any]
TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
# A patient's request for a repeat prescription: a Task (https://hl7.org/fhir/R4/task.html)
# with code `fulfill` ("act to perform the focal request"), focus the MedicationRequest to
# repeat, for the patient, owner their registered practice, status requested: the shape a
# practice worklist picks up. The carenet code says which kind of request it is.
PORTAL_CODES = "https://carenet.invalid/fhir/CodeSystem/portal-request"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _ok(v: Visit, where: str, message: str) -> Response:
    v.session.data["flash"] = message
    return layout.see_other(where)


async def _flash(v: Visit) -> str | None:
    message = v.session.data.pop("flash", None)
    if message:
        await store_of(v.request).save(v.session)
    return message


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


# ---- add to my record ---------------------------------------------------------------------

async def _questionnaires(v: Visit) -> list[Body]:
    try:
        return await v.fhir.search("Questionnaire", [("status", "active"), ("_count", "10")])
    except ApiError:
        return []


async def _add_page(v: Visit, *, status: int = 200, errors: dict[str, str] | None = None,
                    form: dict[str, str] | None = None, kind: str = "blood-pressure") -> Response:
    return page(v, "add.html", status=status, title="Add to my record", kinds=readings.KINDS,
                kind=kind, errors=errors or {}, form=form or {}, flash=await _flash(v),
                questionnaires=await _questionnaires(v))


@routes.get("/add")
async def add(request: Request) -> Response:
    v = await visit(request)
    await names(v)
    return await _add_page(v, kind=request.query_params.get("kind", "blood-pressure"))


@routes.post("/add")
async def add_reading(request: Request) -> Response:
    v, form = await posted(request)
    try:
        body = readings.reading(form, patient=v.patient, performer=v.user)
    except readings.Invalid as exc:
        return await _add_page(v, status=422, errors=exc.errors, form=form,
                               kind=form.get("kind", ""))
    try:
        await v.fhir.create(body)
    except ApiError as exc:
        return await _add_page(v, status=exc.status, errors={"kind": exc.message}, form=form)
    return _ok(v, "/portal/add", f"Your {body['code']['text'].lower()} reading was added to "
                                 "your record.")


@routes.get("/questionnaires/{id_}")
async def questionnaire(id_: str, request: Request) -> Response:
    v = await visit(request)
    await names(v)
    return await _questionnaire_page(v, id_)


async def _questionnaire_page(v: Visit, id_: str, *, status: int = 200,
                              errors: dict[str, str] | None = None,
                              form: dict[str, str] | None = None) -> Response:
    try:
        q = await v.fhir.read("Questionnaire", id_)
    except ApiError:
        return page(v, "not_found.html", status=404, title="Page not found")
    return page(v, "questionnaire.html", status=status, title=q.get("title") or "Questionnaire",
                q=q, items=readings.questions(q), errors=errors or {}, form=form or {})


@routes.post("/questionnaires/{id_}")
async def answer(id_: str, request: Request) -> Response:
    v, form = await posted(request)
    try:
        q = await v.fhir.read("Questionnaire", id_)
        body = readings.response(q, form, patient=v.patient, author=v.user)
    except ApiError:
        return page(v, "not_found.html", status=404, title="Page not found")
    except readings.Invalid as exc:
        return await _questionnaire_page(v, id_, status=422, errors=exc.errors, form=form)
    await v.fhir.create(body)
    return _ok(v, "/portal/add", "Thank you: your answers were added to your record.")


# ---- my care plan -----------------------------------------------------------------------

@routes.post("/care-plan")
async def contribute(request: Request) -> Response:
    """What matters to me and comments, through CarePlan/[id]/$contribute."""
    v, form = await posted(request)
    plan_id = form.get("plan", "")
    what, comment = form.get("whatMatters", "").strip(), form.get("comment", "").strip()
    if not what and not comment:
        v.session.data["flash"] = "Write what matters to you or a comment first."
        return layout.see_other("/portal/care-plan")
    params = [{"name": "whatMatters", "valueString": what[:1000]}] if what else []
    if comment:
        params.append({"name": "comment", "valueString": comment[:2000]})
    try:
        await v.fhir.operation(f"CarePlan/{plan_id}/$contribute",
                               {"resourceType": "Parameters", "parameter": params})
    except ApiError as exc:
        if exc.status == 401:
            raise
        return _ok(v, "/portal/care-plan", f"Not added: {exc.message}")
    return _ok(v, "/portal/care-plan", "Added to your care plan.")


# ---- messages -----------------------------------------------------------------------------

@routes.get("/messages")
async def messages(request: Request) -> Response:
    v = await visit(request)
    await names(v)
    return await _messages_page(v)


async def _messages_page(v: Visit, *, status: int = 200, error: str = "",
                         text: str = "") -> Response:
    try:
        found = await v.fhir.search("Communication", [("patient", v.patient), ("_count", "100"),
                                                      ("_sort", "-sent")])
    except ApiError:
        found = []
    who = Names(v.fhir, v.user, "you")
    await who.load(found)
    replies: dict[str, list[Body]] = {}
    for c in found:
        for parent in c.get("inResponseTo") or ():
            replies.setdefault(str(parent.get("reference", "")), []).append(c)
    threads = [c for c in found if not c.get("inResponseTo")]
    return page(v, "messages.html", status=status, title="Messages", threads=threads,
                replies=replies, who=who, error=error, text=text, flash=await _flash(v),
                text_of=_text_of)


def _text_of(c: Body) -> str:
    return " ".join(str(p.get("contentString", "")) for p in c.get("payload") or ())


@routes.post("/messages")
async def send(request: Request) -> Response:
    v, form = await posted(request)
    text = form.get("message", "").strip()
    if not text:
        return await _messages_page(v, status=422, error="Write your message first")
    if len(text) > 2000:
        return await _messages_page(v, status=422, text=text,
                                    error="Your message must be 2,000 characters or fewer")
    practice = await _practice(v)
    body: Body = {"resourceType": "Communication", "status": "completed",
                  "category": [{"coding": [{"system": PORTAL_CODES, "code": "patient-message"}],
                                "text": "Message from the patient"}],
                  "subject": {"reference": f"Patient/{v.patient}"}, "sent": _now(),
                  "sender": {"reference": v.user}, "payload": [{"contentString": text}]}
    if practice:
        body["recipient"] = [{"reference": practice}]
    await v.fhir.create(body)
    return _ok(v, "/portal/messages", "Your message was sent to your care team.")


# ---- repeat prescriptions -----------------------------------------------------------------

@routes.get("/repeats")
async def repeats(request: Request) -> Response:
    v = await visit(request)
    await names(v)
    try:
        medicines = await v.fhir.search("MedicationRequest", [
            ("patient", v.patient), ("status", "active"), ("_count", "100")])
    except ApiError:
        medicines = []
    try:
        tasks = await v.fhir.search("Task", [("patient", v.patient), ("code", f"{TASK_CODE}|"
                                             "fulfill"), ("_sort", "-_lastUpdated"),
                                             ("_count", "100")])
    except ApiError:
        tasks = []
    by_medicine = {str((t.get("focus") or {}).get("reference", "")): t for t in reversed(tasks)}
    return page(v, "repeats.html", title="Repeat prescriptions", medicines=medicines,
                tasks=tasks, by_medicine=by_medicine, concept=concept, flash=await _flash(v))


@routes.post("/repeats")
async def request_repeat(request: Request) -> Response:
    v, form = await posted(request)
    medicine_id = form.get("medicine", "")
    try:
        medicine = await v.fhir.read("MedicationRequest", medicine_id)
    except ApiError:
        return page(v, "not_found.html", status=404, title="Page not found")
    if ((medicine.get("subject") or {}).get("reference") != f"Patient/{v.patient}"
            or medicine.get("status") != "active"):
        return _ok(v, "/portal/repeats", "Only a current medicine of yours can be repeated.")
    name = concept(medicine.get("medicationCodeableConcept")) or (
        medicine.get("medicationReference") or {}).get("display") or "medicine"
    task: Body = {
        "resourceType": "Task", "status": "requested", "intent": "order", "priority": "routine",
        "code": {"coding": [{"system": TASK_CODE, "code": "fulfill"},
                            {"system": PORTAL_CODES, "code": "repeat-prescription"}],
                 "text": "Repeat prescription request"},
        "description": f"Repeat prescription: {name}",
        "focus": {"reference": f"MedicationRequest/{medicine_id}", "display": name},
        "for": {"reference": f"Patient/{v.patient}"}, "authoredOn": _now(),
        "requester": {"reference": v.user},
    }
    practice = await _practice(v)
    if practice:
        task["owner"] = {"reference": practice}
    note = form.get("note", "").strip()
    if note:
        task["note"] = [{"text": note[:1000]}]
    await v.fhir.create(task)
    return _ok(v, "/portal/repeats", f"Your request for {name} was sent to your practice.")


# ---- appointments -------------------------------------------------------------------------

@routes.get("/appointments")
async def appointments(request: Request) -> Response:
    v = await visit(request)
    await names(v)
    try:
        found = await v.fhir.search("Appointment", [("patient", v.patient), ("_sort", "-date"),
                                                    ("_count", "100")])
    except ApiError:
        found = []
    return page(v, "appointments.html", title="Appointments", appointments=found,
                concept=concept, flash=await _flash(v), errors={}, form={})


@routes.post("/appointments")
async def request_appointment(request: Request) -> Response:
    """Until booking exists, a request: an Appointment with status proposed
    (https://hl7.org/fhir/R4/appointment.html: "None of the participant(s) have finalized
    their acceptance"), the patient its one participant, what they need and when suits them."""
    v, form = await posted(request)
    reason = form.get("reason", "").strip()
    if not reason:
        try:
            found = await v.fhir.search("Appointment", [("patient", v.patient)])
        except ApiError:
            found = []
        return page(v, "appointments.html", status=422, title="Appointments",
                    appointments=found, concept=concept, flash=None, form=form,
                    errors={"reason": "Say what the appointment is for"})
    body: Body = {"resourceType": "Appointment", "status": "proposed",
                  "description": reason[:500], "created": _now()[:10],
                  "comment": form.get("when", "").strip()[:500] or None,
                  "participant": [{"actor": {"reference": v.user}, "status": "accepted",
                                   "required": "required"}]}
    if v.carer:
        body["participant"].append({"actor": {"reference": f"Patient/{v.patient}"},
                                    "status": "needs-action"})
    await v.fhir.create({k: val for k, val in body.items() if val is not None})
    return _ok(v, "/portal/appointments", "Your request was sent. The practice will contact "
                                          "you to book a time.")


# ---- carers: whose record -----------------------------------------------------------------

@routes.post("/switch")
async def switch(request: Request) -> Response:
    """Switch between the records this session holds (yours, the person you care for), or
    sign in once more for another (the authorisation server decides what that grants)."""
    v = await visit(request)
    form = await form_of(request, v.session)
    to = form.get("to", "")
    if to == "add":
        return await auth.start(request, APP, add=True)
    identities = v.session.data["identities"]
    if to.isdigit() and int(to) < len(identities):
        v.session.data["active"] = int(to)
        await store_of(request).save(v.session)
    return layout.see_other("/portal/")
