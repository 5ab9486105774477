"""The authorization endpoint's logic: checking a request, launch contexts, issuing a code.

SMART App Launch v2 (https://hl7.org/fhir/smart-app-launch/app-launch.html):
authorization code with PKCE, S256 only; `aud` must be this server's FHIR base; `state` is
required. An EHR launch passes `launch`, the id of a context the EHR made beforehand with
`create_launch` (patient, encounter, the signed-in member of staff); a standalone launch asks
for `launch/patient` and the patient is the signed-in patient, or the one a member of staff
picks. Codes are single use, short lived, stored hashed and bound to the client, the
redirect URI and the PKCE challenge.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consent import clients, users
from consent.oauth_errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
    error,
)
from consent.oauth_schema import oauth_code, oauth_launch
from consent.scopes import UNGRANTED_SCOPES, ResourceScope, Scopes, parse
from consent.tokens import Grant

CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def digest(secret: str) -> str:
    """How codes, refresh tokens and launch ids are stored: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Launch:
    """An EHR launch context, made by the EHR for one member of staff."""

    user: str  # "Practitioner/<id>"
    patient: str | None
    encounter: str | None


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A checked authorization request: what the sign-in page shows and the decision uses."""

    client: clients.Client
    redirect_uri: str
    state: str
    scopes: Scopes
    code_challenge: str
    launch: Launch | None
    launch_id: str | None
    nonce: str | None

    def needs_patient(self) -> bool:
        """Whether the app asks for a patient in context that no launch supplies."""
        if self.launch is not None and self.launch.patient:
            return False
        return "launch/patient" in self.scopes or "patient" in self.scopes.contexts()


async def create_launch(conn: AsyncConnection, *, user: users.User, patient: str | None,
                        encounter: str | None, lifetime: int,
                        now: float | None = None) -> str:
    """Record an EHR launch context for `user`; the launch id the EHR hands to the app."""
    now = time.time() if now is None else now
    if user.kind != "practitioner":
        raise error(AccessDeniedError, "Only staff launch apps from the EHR.")
    if patient is not None and await users.exists(conn, "Patient", patient) is None:
        raise error(InvalidRequestError, f"Patient/{patient} is not known.")
    if encounter is not None:
        body = await users.exists(conn, "Encounter", encounter)
        if body is None:
            raise error(InvalidRequestError, f"Encounter/{encounter} is not known.")
        subject = ((body.get("subject") or {}).get("reference") or "")
        if patient is None or users.split_reference(subject) != ("Patient", patient):
            raise error(InvalidRequestError, f"Encounter/{encounter} is not an encounter of "
                        "the launch patient.")
    launch_id = new_secret()
    await conn.execute(oauth_launch.delete().where(oauth_launch.c.expires_at < now))
    await conn.execute(oauth_launch.insert().values(
        launch_hash=digest(launch_id), user_ref=user.reference, patient=patient,
        encounter=encounter, expires_at=now + lifetime))
    return launch_id


async def find_launch(conn: AsyncConnection, launch_id: str, now: float) -> Launch | None:
    row = (await conn.execute(
        sa.select(oauth_launch.c.user_ref, oauth_launch.c.patient, oauth_launch.c.encounter)
        .where(oauth_launch.c.launch_hash == digest(launch_id),
               oauth_launch.c.expires_at >= now))).first()
    return Launch(*row) if row else None


async def check_request(conn: AsyncConnection, params: dict[str, str], *, fhir_base: str,
                        now: float | None = None) -> AuthorizationRequest:
    """Check an authorization request (RFC 6749 4.1.1, RFC 7636 4.3, SMART).

    Until the client and redirect URI are known good, errors carry no redirect (they are
    shown to the user, RFC 6749 4.1.2.1); after that they carry redirect_uri and state.
    """
    now = time.time() if now is None else now
    client = await clients.find(conn, params.get("client_id"))
    if client is None:
        raise error(InvalidClientError, "Unknown client_id.", status_code=400)
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri:
        raise error(InvalidRequestError, "redirect_uri is required.")
    if redirect_uri not in client.redirect_uris:
        raise error(InvalidRequestError, "redirect_uri is not one the client registered.")
    state = params.get("state")

    def fail(kind: type[OAuth2Error], message: str) -> OAuth2Error:
        return error(kind, message, redirect_uri=redirect_uri, state=state)

    if params.get("response_type") != "code":
        raise fail(UnsupportedResponseTypeError, "response_type must be code.")
    if not state:
        raise fail(InvalidRequestError, "state is required (SMART App Launch).")
    if "authorization_code" not in client.grant_types:
        raise fail(UnauthorizedClientError, "The client did not register the authorization_code "
                   "grant.")
    method = params.get("code_challenge_method")
    challenge = params.get("code_challenge")
    if not challenge:
        raise fail(InvalidRequestError, "PKCE is required: send code_challenge with "
                   "code_challenge_method=S256.")
    if method != "S256":
        raise fail(InvalidRequestError, "code_challenge_method must be S256 (plain is not "
                   "accepted).")
    if not CHALLENGE.match(challenge):
        raise fail(InvalidRequestError, "code_challenge is not a base64url SHA-256 digest.")
    aud = params.get("aud")
    if not aud:
        raise fail(InvalidRequestError, "aud (the FHIR base URL) is required.")
    if aud.rstrip("/") != fhir_base.rstrip("/"):
        raise fail(InvalidRequestError, f"aud must be this server's FHIR base, {fhir_base}.")
    scopes = parse(params.get("scope", ""))
    if scopes.invalid:
        raise fail(InvalidScopeError, f"Unknown scopes: {' '.join(scopes.invalid)}.")
    if not scopes.resources and not scopes.names:
        raise fail(InvalidScopeError, "scope is required.")
    launch = None
    launch_id = params.get("launch")
    if launch_id:
        launch = await find_launch(conn, launch_id, now)
        if launch is None:
            raise fail(InvalidRequestError, "The launch is unknown or has expired.")
        if "launch" not in scopes:
            raise fail(InvalidScopeError, "An EHR launch needs the launch scope.")
    return AuthorizationRequest(client, redirect_uri, state, scopes, challenge, launch,
                                launch_id, params.get("nonce") or None)


class NeedsChoice(Exception):
    """The sign-in page must ask again (no user, or no patient picked); not an OAuth error."""


async def approve(conn: AsyncConnection, request: AuthorizationRequest, *, user: users.User,
                  patient_choice: str | None, code_lifetime: int,
                  now: float | None = None) -> str:
    """The signed-in user approves: store and return a single-use authorization code."""
    now = time.time() if now is None else now
    fail_kw = {"redirect_uri": request.redirect_uri, "state": request.state}
    launch = request.launch
    if launch is not None and launch.user != user.reference:
        raise error(AccessDeniedError, "The EHR launch belongs to another user.", **fail_kw)
    patient = encounter = None
    if launch is not None:
        patient, encounter = launch.patient, launch.encounter
    elif user.kind == "patient":
        patient = user.id
    if patient is None and request.needs_patient():
        if not patient_choice:
            raise NeedsChoice("Choose the patient whose record the app opens.")
        choice = patient_choice.removeprefix("Patient/")
        if await users.exists(conn, "Patient", choice) is None:
            raise NeedsChoice(f"Patient/{choice} is not known.")
        patient = choice
    granted = grantable(request.scopes, request.client, user=user, patient=patient,
                        encounter=encounter, ehr_launch=launch is not None)
    grant = Grant(subject=user.reference, scope=" ".join(granted.texts()),
                  fhir_user=user.reference, patient=patient, encounter=encounter,
                  nonce=request.nonce, auth_time=now,
                  need_patient_banner=(launch is None) if patient else None)
    code = new_secret()
    await conn.execute(oauth_code.delete().where(oauth_code.c.expires_at < now - 86400))
    await conn.execute(oauth_code.insert().values(
        code_hash=digest(code), client_id=request.client.client_id,
        redirect_uri=request.redirect_uri, code_challenge=request.code_challenge,
        grant=grant.to_json(), expires_at=now + code_lifetime))
    return code


def grantable(requested: Scopes, client: clients.Client, *, user: users.User,
              patient: str | None, encounter: str | None, ehr_launch: bool) -> Scopes:
    """The requested scopes this user, context and client can have (others are dropped).

    OAuth lets a server grant fewer scopes than asked; the token response says which.
    """
    allowed = parse(client.scope) if client.scope is not None else None
    resources: list[ResourceScope] = []
    for scope in requested.resources:
        if scope.context == "system":  # backend services only (client_credentials)
            continue
        if scope.context == "patient" and patient is None:
            continue
        if allowed is not None and not within(scope, allowed):
            continue
        resources.append(scope)
    names = set()
    for name in requested.names:
        if name in UNGRANTED_SCOPES or (allowed is not None and name not in allowed.names):
            continue
        if name == "launch" and not ehr_launch:
            continue
        if name == "launch/patient" and patient is None:
            continue
        if name == "launch/encounter" and encounter is None:
            continue
        if name == "offline_access" and "refresh_token" not in client.grant_types:
            continue
        names.add(name)
    return Scopes(tuple(resources), frozenset(names), (), requested.order)


def within(scope: ResourceScope, allowed: Scopes) -> bool:
    """Whether a registered scope set covers `scope` (same context, type, permissions)."""
    for other in allowed.resources:
        if (other.context == scope.context and other.resource_type in ("*", scope.resource_type)
                and scope.interactions <= other.interactions
                and (not other.conditions or other.conditions == scope.conditions)):
            return True
    return False


def describe(request: AuthorizationRequest) -> list[str]:
    """The scopes of a request as lines a person can read on the consent page."""
    verbs = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
    lines = []
    for scope in request.scopes.resources:
        what = "all data" if scope.resource_type == "*" else scope.resource_type
        whose = {"patient": "of the patient in context", "user": "you can see",
                 "system": "of the whole system"}[scope.context]
        letters = [verbs[c] for c in "cruds" if c in scope.interactions]
        narrowed = f" where {orjson.dumps(dict(scope.conditions)).decode()}" if (
            scope.conditions) else ""
        lines.append(f"{', '.join(letters)} {what} {whose}{narrowed}")
    names = {"openid": "know who you are", "fhirUser": "see your FHIR user record",
             "offline_access": "keep access when you are not signed in",
             "launch/patient": "open a patient's record", "launch": "use the EHR's context",
             "launch/encounter": "open the current encounter"}
    lines.extend(names[n] for n in sorted(request.scopes.names) if n in names)
    return lines
