"""Reading pages: home, my record (with result trends), a document, my care plan, access log."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from web.fhir_client import ApiError
from web.portal import charts
from web.portal.common import names, page, whose
from web.portal.words import Names, codes, concept, narrative, observation_value
from web.session_deps import Visit, store_of, visit

routes = APIRouter(prefix="/portal")
Body = dict[str, Any]

# The readings drawn as trends: LOINC and SNOMED CT codes of each.
TRENDS = (
    ("Blood pressure", "mmHg", {"85354-9", "55284-4", "75367002"}),
    ("Weight", "kg", {"29463-7", "27113001"}),
    ("HbA1c", "mmol/mol", {"59261-8", "4548-4", "1003671000000109", "999791000000106"}),
)

# Plain names of common readings, where the code's display is a laboratory's name for it.
PLAIN = {"85354-9": "Blood pressure", "55284-4": "Blood pressure", "29463-7": "Weight",
         "8302-2": "Height", "39156-5": "Body mass index (BMI)", "59261-8": "HbA1c",
         "4548-4": "HbA1c", "15074-8": "Blood glucose", "8867-4": "Heart rate",
         "62238-1": "Kidney function (eGFR)", "33914-3": "Kidney function (eGFR)",
         "718-7": "Haemoglobin", "72166-2": "Smoking status",
         "1011481000000105": "Kidney function (eGFR)", "1022431000000105": "Haemoglobin",
         "725594005": "Barthel index (daily activities)", "713636003": "Frailty index"}
COMPONENT_NAMES = {"8480-6": "Systolic (top number)", "8462-4": "Diastolic (bottom number)"}


async def _search(v: Visit, type_: str, *params: tuple[str, str]) -> list[Body]:
    """What the person may see of one type ([] when the grant does not cover it)."""
    try:
        return await v.fhir.search(type_, [("patient", v.patient), *params])
    except ApiError as exc:
        if exc.status in (401,):
            raise
        return []


def _names(v: Visit) -> Names:
    """Names of authors, with the signed-in person as "you" and, for a carer, the patient."""
    who = Names(v.fhir, v.user, "you")
    who.known.setdefault(f"Patient/{v.patient}", whose(v))
    return who


@routes.get("/")
async def home(request: Request) -> Response:
    v = await visit(request)
    await names(v)
    return page(v, "home.html", title="Home")


@routes.get("/record")
async def record(request: Request) -> Response:
    v = await visit(request)
    await names(v)
    problems, medicines, allergies, immunisations, results, documents = await asyncio.gather(
        _search(v, "Condition", ("_count", "100")),
        _search(v, "MedicationRequest", ("_count", "100"), ("_sort", "-authoredon")),
        _search(v, "AllergyIntolerance", ("_count", "100")),
        _search(v, "Immunization", ("_count", "100"), ("_sort", "-date")),
        _search(v, "Observation", ("_count", "200"), ("_sort", "-date")),
        _search(v, "DocumentReference", ("_count", "50"), ("_sort", "-date")))
    who = _names(v)
    await who.load([*problems, *medicines, *allergies, *immunisations, *results, *documents])
    rows = [{"when": o.get("effectiveDateTime") or (o.get("effectivePeriod") or {}).get("start")
             or o.get("issued"), "what": _plain(o), "value": observation_value(o),
             "who": who.who(o)} for o in results]
    return page(v, "record.html", title="My record", who=who, concept=concept,
                problems=problems, medicines=medicines, allergies=allergies,
                immunisations=immunisations, results=rows, documents=documents,
                charts=_charts(results))


def _plain(o: Body) -> str:
    return next((PLAIN[c] for c in codes(o.get("code")) if c in PLAIN), "") or concept(
        o.get("code"))


def _charts(results: list[Body]) -> list[dict[str, str]]:
    out = []
    for title, unit, wanted in TRENDS:
        series: dict[str, list[tuple[str, float]]] = {}
        for o in results:
            when = o.get("effectiveDateTime") or (o.get("effectivePeriod") or {}).get("start")
            if not when or not codes(o.get("code")) & wanted:
                continue
            if o.get("component"):
                for c in o["component"]:
                    value = (c.get("valueQuantity") or {}).get("value")
                    name = COMPONENT_NAMES.get(next(iter(codes(c.get("code"))), ""), "") or (
                        concept(c.get("code")) or "value")
                    if isinstance(value, int | float):
                        series.setdefault(name, []).append((when, float(value)))
            elif isinstance((o.get("valueQuantity") or {}).get("value"), int | float):
                series.setdefault(title, []).append((when, float(o["valueQuantity"]["value"])))
        svg = charts.trend(f"{title} over time", unit, series)
        if svg:
            out.append({"title": title, "svg": svg, "legend": ", ".join(series)})
    return out


@routes.get("/documents/{id_}")
async def document(id_: str, request: Request) -> Response:
    """One document of the record. The id comes from the URL, but the read is the person's
    own: another patient's document is 404 from the API, as an unknown one."""
    v = await visit(request)
    await names(v)
    try:
        doc = await v.fhir.read("DocumentReference", id_)
    except ApiError as exc:
        if exc.status == 401:
            raise
        return page(v, "not_found.html", status=404, title="Page not found")
    if ((doc.get("subject") or {}).get("reference")) != f"Patient/{v.patient}":
        return page(v, "not_found.html", status=404, title="Page not found")
    texts = []
    for content in doc.get("content") or ():
        attachment = content.get("attachment") or {}
        if attachment.get("data") and str(attachment.get("contentType", "")).startswith("text/"):
            texts.append(base64.b64decode(attachment["data"]).decode("utf-8", "replace"))
    who = _names(v)
    await who.load([doc])
    return page(v, "document.html", title=doc.get("description") or "Document", doc=doc,
                texts=texts, who=who, concept=concept)


@routes.get("/care-plan")
async def care_plan(request: Request) -> Response:
    v = await visit(request)
    await names(v)
    plans = await _search(v, "CarePlan", ("status", "active"), ("_count", "5"))
    plan = plans[0] if plans else None
    goals: list[Body] = []
    if plan:
        ids = [g["reference"].partition("/")[2] for g in plan.get("goal") or ()
               if str(g.get("reference", "")).startswith("Goal/")]
        if ids:
            try:
                goals = await v.fhir.search("Goal", [("_id", ",".join(ids))])
            except ApiError:
                goals = []
    who = _names(v)
    if plan:
        await who.load([{"author": [n["authorReference"] for n in plan.get("note") or ()
                                    if n.get("authorReference")]}])
    flash = v.session.data.pop("flash", None)
    if flash:
        await store_of(v.request).save(v.session)
    return page(v, "care_plan.html", title="My care plan", plan=plan, goals=goals, flash=flash,
                who=who,
                concept=concept, narrative=narrative, errors={}, form={})


PURPOSES = {"ETREAT": "in an emergency (break-glass)", "TREAT": "for your care",
            "HOPERAT": "to run the service", "PATRQT": "at your request"}
ACTIONS = {"C": "added to", "R": "looked at", "U": "changed", "D": "removed", "E": "searched"}
WORDS = {"Condition": "health problems", "Observation": "results and readings",
         "MedicationRequest": "medicines", "MedicationStatement": "medicines",
         "AllergyIntolerance": "allergies", "Immunization": "vaccinations",
         "DocumentReference": "documents", "CarePlan": "care plan", "Goal": "goals",
         "Communication": "messages", "Patient": "personal details",
         "Appointment": "appointments", "Encounter": "visits and admissions",
         "Procedure": "procedures", "QuestionnaireResponse": "questionnaire answers",
         "DiagnosticReport": "test reports", "RiskAssessment": "risk assessments",
         "CareTeam": "care team", "Consent": "sharing choices", "Flag": "alerts"}


@routes.get("/access-log")
async def access_log(request: Request) -> Response:
    v = await visit(request)
    await names(v)
    if v.carer:  # carers never read the access log (consent/data/role-access.csv)
        return page(v, "access_log.html", title="Who looked at my record", rows=[], mine=0,
                    systems=0, refused=True)
    try:
        events = await v.fhir.search("AuditEvent", [("patient", f"Patient/{v.patient}"),
                                                    ("_sort", "-date"), ("_count", "200")])
    except ApiError as exc:
        if exc.status == 401:
            raise
        events = []
    who = _names(v)
    users = [{"requester": [a["who"]]} for e in events for a in e.get("agent", ())
             if isinstance(a.get("who"), dict) and a["who"].get("reference")]
    await who.load(users)
    rows, mine, systems = [], 0, 0
    for e in events:
        agent = next((a for a in e.get("agent", ()) if a.get("requestor")), None)
        ref = ((agent or {}).get("who") or {}).get("reference", "")
        if ref.startswith(("Patient/", "RelatedPerson/")) and ref in {
                i["user"] for i in v.session.data["identities"]}:
            mine += 1
            continue
        if not ref.startswith(("Practitioner/", "Patient/", "RelatedPerson/")):
            systems += 1  # the network's own services: loading from practices, jobs
            continue
        purpose = ((agent or {}).get("purposeOfUse") or [{}])[0]
        code = next(iter(codes(purpose)), "")
        org = next((a["who"].get("reference") for a in e.get("agent", ())
                    if not a.get("requestor") and "PROV" in codes(a.get("type"))), None)
        type_ = next((x["what"]["reference"].split("/")[0] for x in e.get("entity", ())
                      if "4" in codes({"coding": [x.get("role") or {}]})), "")
        what = f"your {WORDS.get(type_, type_.lower())}" if type_ else "your record"
        rows.append({"when": e.get("recorded"), "who": who.of(ref) or ref or "a system",
                     "org": who.of(org) if org else "",
                     "action": ACTIONS.get(e.get("action", ""), "used"),
                     "what": what, "why": PURPOSES.get(code, ""),
                     "reason": purpose.get("text") if code == "ETREAT" else "",
                     "break_glass": code == "ETREAT", "ok": e.get("outcome") == "0"})
    return page(v, "access_log.html", title="Who looked at my record", rows=rows, mine=mine,
                systems=systems, refused=False)
