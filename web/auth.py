"""Signing in: each page set is a SMART on FHIR app of this server's own authorisation server.

Authorization code with PKCE (S256), https://hl7.org/fhir/smart-app-launch/app-launch.html.
The app is a public client registered once per redirect URI (on the first sign-in: the
browser-visible origin is known then, or from CARENET_BASE_URL). The code is exchanged over
the in-process client; the tokens stay in the server-side session (web/sessions.py) and the
session id changes at sign-in (no session fixation).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import Response

from consent import clients
from consent.oauth_schema import oauth_client
from web import layout
from web.fhir_client import transport_client
from web.session_deps import (
    COOKIE,
    SignedOut,
    current_session,
    fhir_base_of,
    form_of,
    root_of,
    secure,
    store_of,
    visit,
)
from web.sessions import Session

SOFTWARE_ID = "carenet-web"


@dataclass(frozen=True, slots=True)
class App:
    """One page set as a SMART app: where it lives and what it asks for."""

    prefix: str  # "/portal"
    name: str  # shown on the sign-in page
    scope: str


def set_cookie(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(COOKIE, session.id, httponly=True, samesite="lax", secure=secure(request),
                        path="/")


async def client_id(request: Request, app: App, redirect_uri: str) -> str:
    """This page set's client id for `redirect_uri`, registered the first time."""
    cache: dict[str, str] = request.app.state.__dict__.setdefault("web_clients", {})
    if redirect_uri in cache:
        return cache[redirect_uri]
    db = request.app.state.db
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(oauth_client.c.client_id, oauth_client.c.metadata)
                                   .where(oauth_client.c.metadata.contains(SOFTWARE_ID)))).all()
    for found, meta in rows:
        meta = orjson.loads(meta)
        if (meta.get("software_id") == SOFTWARE_ID and meta.get("client_name") == app.name
                and redirect_uri in meta.get("redirect_uris", ())):
            cache[redirect_uri] = found
            return found
    async with db.write() as conn:
        registered = await clients.register(conn, {
            "client_name": app.name, "software_id": SOFTWARE_ID, "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code"], "scope": app.scope})
    cache[redirect_uri] = registered["client_id"]
    return registered["client_id"]


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def start(request: Request, app: App, *, hints: dict[str, str] | None = None,
                add: bool = False) -> Response:
    """Send the browser to the authorisation server; remember state and verifier here."""
    redirect_uri = f"{root_of(request)}{app.prefix}/callback"
    cid = await client_id(request, app, redirect_uri)
    state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    pending = {"state": state, "verifier": verifier, "client_id": cid,
               "redirect_uri": redirect_uri, "add": add}
    store = store_of(request)
    try:
        session = await current_session(request)
    except SignedOut:
        session = None
    if session is None:
        session = await store.new({"pending": pending})
    else:
        session.data["pending"] = pending
        await store.save(session)
    query = {"response_type": "code", "client_id": cid, "redirect_uri": redirect_uri,
             "scope": app.scope, "state": state, "aud": fhir_base_of(request),
             "code_challenge": _challenge(verifier), "code_challenge_method": "S256",
             **(hints or {})}
    response = layout.see_other(f"{root_of(request)}/oauth/authorize?{urlencode(query)}")
    set_cookie(request, response, session)
    return response


async def callback(request: Request, app: App) -> Response:
    """The authorisation server's answer: check state, exchange the code, sign in."""
    session = await current_session(request)
    pending = (session.data.get("pending") if session else None) or {}
    state = request.query_params.get("state", "")
    if session is None or not pending or not secrets.compare_digest(state, pending["state"]):
        return layout.render(request, "problem.html", 400, title="Sign-in did not complete",
                             message="This sign-in link is out of date. Start again.",
                             again=f"{app.prefix}/start")
    if request.query_params.get("error"):
        session.data.pop("pending", None)
        await store_of(request).save(session)
        return layout.render(request, "problem.html", 403, title="You did not sign in",
                             message=request.query_params.get("error_description")
                             or "Access was not allowed.", again=f"{app.prefix}/start")
    r = await transport_client(request.app).post(f"{root_of(request)}/oauth/token", data={
        "grant_type": "authorization_code", "code": request.query_params.get("code", ""),
        "redirect_uri": pending["redirect_uri"], "client_id": pending["client_id"],
        "code_verifier": pending["verifier"]})
    if r.status_code != 200:
        return layout.render(request, "problem.html", 400, title="Sign-in did not complete",
                             message=r.json().get("error_description", "The code was refused."),
                             again=f"{app.prefix}/start")
    body = r.json()
    identity = await _identity(request, body, pending["client_id"])
    data = {k: v for k, v in session.data.items() if k != "pending"}
    identities = [i for i in data.get("identities", ()) if pending["add"]
                  and i["user"] != identity["user"]]
    identities.append(identity)
    data.update(identities=identities, active=len(identities) - 1)
    session.data = data
    fresh = await store_of(request).rotate(session)
    response = layout.see_other(f"{app.prefix}/")
    set_cookie(request, response, fresh)
    return response


def _claims(id_token: str | None) -> dict[str, Any]:
    """The id token's claims. It came straight from the token endpoint in process, so no
    signature check is needed to trust it (OpenID Connect Core 3.1.3.7, point 6)."""
    if not id_token:
        return {}
    payload = id_token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def _identity(request: Request, body: dict[str, Any], cid: str) -> dict[str, Any]:
    claims = _claims(body.get("id_token"))
    user = claims.get("fhirUser") or ""
    user = "/".join(user.split("/")[-2:])
    return {"user": user, "patient": body.get("patient"), "token": body["access_token"],
            "client_id": cid, "expires_at": time.time() + int(body.get("expires_in", 3600)),
            "name": None, "patient_name": None}


async def sign_out(request: Request, app: App) -> Response:
    """Revoke the tokens, end the session, say so."""
    v = await visit(request)
    await form_of(request, v.session)
    http = transport_client(request.app)
    for identity in v.session.data.get("identities", ()):
        await http.post(f"{root_of(request)}/oauth/revoke", data={
            "token": identity["token"], "client_id": identity["client_id"]})
    await store_of(request).delete(v.session.id)
    response = layout.see_other(f"{app.prefix}/signed-out?why=you")
    response.delete_cookie(COOKIE, path="/")
    return response


def router(app: App) -> APIRouter:
    """The sign-in routes of one page set (start, sign-in, callback, sign-out, signed-out)."""
    routes = APIRouter(prefix=app.prefix)

    @routes.get("/sign-in")
    async def sign_in(request: Request) -> Response:
        hints = {k: v for k, v in request.query_params.items() if k in ("user", "patient")}
        return await start(request, app, hints=hints)

    @routes.get("/callback")
    async def answer(request: Request) -> Response:
        return await callback(request, app)

    @routes.post("/sign-out")
    async def leave(request: Request) -> Response:
        return await sign_out(request, app)

    @routes.get("/signed-out")
    async def signed_out(request: Request) -> Response:
        why = request.query_params.get("why", "")
        response = layout.render(request, "signed_out.html", app=app, why=why,
                                 idle_minutes=store_of(request).idle // 60)
        response.delete_cookie(COOKIE, path="/")
        return response

    return routes
