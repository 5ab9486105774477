"""The people's pages: server-rendered SMART on FHIR apps of this server (DESIGN.md, "Pages").

Shared by every page set: sessions (`sessions`, `session_deps`), signing in (`auth`), the
FHIR client with the person's token (`fhir_client`), rendering (`layout`, `templates/`,
`static/`). Each page set lives in its own package: `portal/` for patients and carers; a
staff workspace goes beside it (`workspace/`, its routes added in `install`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from web import layout
from web.fhir_client import ApiError
from web.session_deps import COOKIE, CsrfRefused, SignedOut, SignInNeeded


def install(app: FastAPI) -> None:
    """Mount the pages and their static files on the app."""
    from web import portal

    app.include_router(portal.router())
    app.mount(layout.STATIC_PATH, StaticFiles(directory=Path(__file__).parent / "static"),
              name="web-static")

    @app.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, exc: SignInNeeded) -> Response:
        return layout.see_other(f"{_prefix(request)}/start")

    @app.exception_handler(SignedOut)
    async def signed_out(request: Request, exc: SignedOut) -> Response:
        response = layout.see_other(f"{_prefix(request)}/signed-out?why={exc.why}")
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        return layout.render(request, "problem.html", 403, title="This form has expired",
                             message="The form was not sent from this page, or it is out of "
                                     "date. Nothing was saved. Go back, reload the page and try "
                                     "again.", again=f"{_prefix(request)}/")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        if exc.status == 401:  # the token is no longer accepted (expired, revoked)
            response = layout.see_other(f"{_prefix(request)}/signed-out?why=token")
            response.delete_cookie(COOKIE, path="/")
            return response
        return layout.render(request, "problem.html", exc.status if exc.status < 500 else 502,
                             title="Something was not saved", message=exc.message,
                             again=f"{_prefix(request)}/")


def _prefix(request: Request) -> str:
    return "/" + request.url.path.strip("/").split("/")[0]
