"""Who is visiting: the session behind the cookie, the person it acts as, their FHIR client.

Shared by every page set (the patient portal now, the staff workspace next): each takes the
person and the record from the session, never from the URL.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request

from web.fhir_client import Fhir, transport_client
from web.sessions import Expired, Session, SessionStore

COOKIE = "carenet_session"


class SignInNeeded(Exception):
    """No session: go to the start page."""


class SignedOut(Exception):
    """The session ended (idle, absolute, the token was refused): say so."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class CsrfRefused(Exception):
    """A form came without this session's token (or from another site)."""


def store_of(request: Request) -> SessionStore:
    state = request.app.state
    if getattr(state, "web_sessions", None) is None or state.web_sessions.db is not state.db:
        settings = state.settings
        state.web_sessions = SessionStore(
            state.db, idle=settings.web_idle_seconds,
            absolute=min(settings.web_session_seconds, settings.access_token_seconds))
    return state.web_sessions


def root_of(request: Request) -> str:
    """The server root as the browser sees it (or as configured)."""
    configured = request.app.state.settings.base_url
    if configured:
        return configured.rstrip("/").removesuffix("/fhir")
    return str(request.base_url).rstrip("/")


def fhir_base_of(request: Request) -> str:
    return f"{root_of(request)}/fhir"


def secure(request: Request) -> bool:
    return root_of(request).startswith("https:")


@dataclass(slots=True)
class Visit:
    """A signed-in visit: the session, the identity acting now, and its FHIR client."""

    request: Request
    session: Session
    identity: dict[str, Any]
    fhir: Fhir

    @property
    def patient(self) -> str:
        """The id of the Patient whose record the pages show: always from the session."""
        return str(self.identity["patient"])

    @property
    def user(self) -> str:
        return str(self.identity["user"])

    @property
    def carer(self) -> bool:
        return self.user.startswith("RelatedPerson/")


async def current_session(request: Request) -> Session | None:
    try:
        return await store_of(request).get(request.cookies.get(COOKIE))
    except Expired as exc:
        raise SignedOut(str(exc)) from None


async def visit(request: Request) -> Visit:
    """The signed-in visit of this request (SignInNeeded / SignedOut otherwise)."""
    session = await current_session(request)
    if session is None or not session.signed_in:
        raise SignInNeeded()
    identities = session.data["identities"]
    identity = identities[min(int(session.data.get("active", 0)), len(identities) - 1)]
    if identity["expires_at"] <= time.time():
        await store_of(request).delete(session.id)
        raise SignedOut("absolute")
    fhir = Fhir(transport_client(request.app), root_of(request), identity["token"],
                fhir_base_of(request))
    return Visit(request, session, identity, fhir)


async def form_of(request: Request, session: Session) -> dict[str, str]:
    """A POSTed form, once its CSRF token matches the session's (synchronizer token pattern,
    OWASP CSRF Prevention Cheat Sheet) and it comes from this origin when the browser says."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and origin.rstrip("/") != root_of(request):
        raise CsrfRefused()
    form = await _form(request)
    sent = form.get("csrf_token")
    if not isinstance(sent, str) or not secrets.compare_digest(sent, session.csrf):
        raise CsrfRefused()
    return form


MAX_FORM_BYTES = 64 * 1024


async def _form(request: Request) -> dict[str, str]:
    """The page's form (application/x-www-form-urlencoded); anything else is no form."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return {}
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            return {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v.replace("\x00", "") for k, v in pairs}


async def posted(request: Request) -> tuple[Visit, dict[str, str]]:
    """The visit and the form of a POST, CSRF-checked before anything else happens."""
    v = await visit(request)
    return v, await form_of(request, v.session)
