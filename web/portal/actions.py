"""Pages that add to the record: home readings, questionnaires, what matters and comments on
the care plan; and the carer's switch between records (messages and requests: requests.py).

Every write is a plain FHIR interaction with the person's token: the server stamps it as
patient-entered (meta.source) and audits it. A refused or invalid form changes nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from web import auth, layout
from web.fhir_client import ApiError
from web.portal import readings
from web.portal.common import APP, names, page
from web.session_deps import Visit, form_of, posted, store_of, visit

routes = APIRouter(prefix="/portal")
Body = dict[str, Any]
async def ok(v: Visit, where: str, message: str) -> Response:
    """Post/Redirect/Get, with a message for the next page."""
    v.session.data["flash"] = message
    await store_of(v.request).save(v.session)
    return layout.see_other(where)


async def flash(v: Visit) -> str | None:
    message = v.session.data.pop("flash", None)
    if message:
        await store_of(v.request).save(v.session)
    return message


# ---- add to my record ---------------------------------------------------------------------

async def _questionnaires(v: Visit) -> list[Body]:
    try:
        return await v.fhir.search("Questionnaire", [("status", "active"), ("_count", "10")])
    except ApiError:
        return []


async def _add_page(v: Visit, *, status: int = 200, errors: dict[str, str] | None = None,
                    form: dict[str, str] | None = None, kind: str = "blood-pressure") -> Response:
    return page(v, "add.html", status=status, title="Add to my record", kinds=readings.KINDS,
                kind=kind, errors=errors or {}, form=form or {}, flash=await flash(v),
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
    return await ok(v, "/portal/add", f"Your {body['code']['text'].lower()} reading was added to "
                                 "your record.")


async def _questionnaire(v: Visit, id_: str) -> Body | None:
    """A Questionnaire of the record (a directory resource any signed-in person may read)."""
    try:
        return await v.fhir.read("Questionnaire", id_)
    except ApiError as exc:
        if exc.status == 401:
            raise
        return None


@routes.get("/questionnaires/{id_}")
async def questionnaire(id_: str, request: Request) -> Response:
    v = await visit(request)
    await names(v)
    return await _questionnaire_page(v, id_)


async def _questionnaire_page(v: Visit, id_: str, *, status: int = 200,
                              errors: dict[str, str] | None = None,
                              form: dict[str, str] | None = None) -> Response:
    q = await _questionnaire(v, id_)
    if q is None:
        return page(v, "not_found.html", status=404, title="Page not found")
    return page(v, "questionnaire.html", status=status, title=q.get("title") or "Questionnaire",
                q=q, items=readings.questions(q), errors=errors or {}, form=form or {})


@routes.post("/questionnaires/{id_}")
async def answer(id_: str, request: Request) -> Response:
    v, form = await posted(request)
    q = await _questionnaire(v, id_)
    if q is None:
        return page(v, "not_found.html", status=404, title="Page not found")
    try:
        body = readings.response(q, form, patient=v.patient, author=v.user)
    except readings.Invalid as exc:
        return await _questionnaire_page(v, id_, status=422, errors=exc.errors, form=form)
    await v.fhir.create(body)
    return await ok(v, "/portal/add", "Thank you: your answers were added to your record.")


# ---- my care plan -----------------------------------------------------------------------

@routes.post("/care-plan")
async def contribute(request: Request) -> Response:
    """What matters to me and comments, through CarePlan/[id]/$contribute."""
    v, form = await posted(request)
    plan_id = form.get("plan", "")
    what, comment = form.get("whatMatters", "").strip(), form.get("comment", "").strip()
    if not what and not comment:
        return await ok(v, "/portal/care-plan", "Write what matters to you or a comment first.")
    params = [{"name": "whatMatters", "valueString": what[:1000]}] if what else []
    if comment:
        params.append({"name": "comment", "valueString": comment[:2000]})
    try:
        await v.fhir.operation(f"CarePlan/{plan_id}/$contribute",
                               {"resourceType": "Parameters", "parameter": params})
    except ApiError as exc:
        if exc.status == 401:
            raise
        return await ok(v, "/portal/care-plan", f"Not added: {exc.message}")
    return await ok(v, "/portal/care-plan", "Added to your care plan.")


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
