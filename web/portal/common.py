"""What every portal page shares: the app's description and the page context."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from web import layout
from web.auth import App
from web.fhir_client import ApiError
from web.session_deps import Visit, store_of

# Patients and carers: the patient in context (the patient themselves, or the one a carer
# picked), every interaction on their record; the access policy narrows it (a carer sees
# what the proxy grant allows, a patient changes only what they entered).
APP = App(prefix="/portal", name="carenet patient portal",
          scope="launch/patient openid fhirUser patient/*.cruds")

NAV = (("/portal/", "Home"), ("/portal/record", "My record"), ("/portal/care-plan", "My care plan"),
       ("/portal/add", "Add to my record"), ("/portal/messages", "Messages"),
       ("/portal/repeats", "Repeat prescriptions"), ("/portal/appointments", "Appointments"),
       ("/portal/access-log", "Who looked at my record"))


def whose(v: Visit) -> str:
    """How the pages name the person whose record it is, to the person looking."""
    if not v.carer:
        return "you"
    return str(v.identity.get("patient_name") or "the person you care for")


async def names(v: Visit) -> None:
    """Fill in, once per session, whose record this is and who is looking."""
    identity = v.identity
    if identity.get("patient_name") is not None:
        return
    try:
        patient = await v.fhir.read("Patient", v.patient)
        from web.portal.words import name_of

        identity["patient_name"] = name_of(patient)
    except ApiError:  # a carer whose grant does not cover the Patient resource
        identity["patient_name"] = ""
    identity["name"] = "You" if not v.carer else "You (carer)"
    await store_of(v.request).save(v.session)


def page(v: Visit, template: str, *, status: int = 200, title: str, **context: Any
         ) -> HTMLResponse:
    identities = v.session.data.get("identities", [])
    return layout.render(v.request, f"portal/{template}", status, title=title, visit=v,
                         csrf=v.session.csrf, nav=NAV, identities=identities,
                         active=int(v.session.data.get("active", 0)), **context)


def problem(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return layout.render(request, "problem.html", status, title=title, message=message,
                         again="/portal/")
