"""The patient portal: patients, and carers with a proxy grant (DESIGN.md, "Pages")."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from web import auth, layout
from web.portal import actions, record, requests
from web.portal.common import APP
from web.session_deps import SignedOut, current_session


def router() -> APIRouter:
    routes = APIRouter()
    routes.include_router(auth.router(APP))

    @routes.get("/portal/start")
    async def start_page(request: Request) -> Response:
        try:
            session = await current_session(request)
        except SignedOut:
            session = None
        if session is not None and session.signed_in:
            return layout.see_other("/portal/")
        return layout.render(request, "portal/start.html", title="Sign in", app=APP)

    routes.include_router(record.routes)
    routes.include_router(actions.routes)
    routes.include_router(requests.routes)
    return routes
