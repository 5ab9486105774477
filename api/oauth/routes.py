"""The authorisation server's endpoints; each parses, calls `consent/`, and answers."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.oauth import context as ctx
from api.oauth import page
from api.oauth.forms import query_params, read_form
from api.oauth.responses import json_response, redirect
from consent import authorize, clients, grants, tokens, users
from consent.oauth_errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidClientMetadataError,
    InvalidRequestError,
    InvalidTokenError,
    OAuth2Error,
    error,
)

router = APIRouter()

# https://hl7.org/fhir/smart-app-launch/conformance.html#capabilities: exactly what works.
CAPABILITIES = [
    "launch-ehr", "launch-standalone", "authorize-post", "client-public",
    "client-confidential-asymmetric", "sso-openid-connect", "context-banner",
    "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient",
    "permission-offline", "permission-patient", "permission-user", "permission-v1",
    "permission-v2",
]
SCOPES_SUPPORTED = [
    "openid", "fhirUser", "launch", "launch/patient", "launch/encounter", "offline_access",
    "patient/*.cruds", "patient/*.rs", "user/*.cruds", "user/*.rs", "system/*.cruds",
    "system/*.rs", "patient/*.read", "patient/*.write", "user/*.read", "user/*.write",
    "system/*.read", "system/*.write",
]
MAX_JSON_BYTES = 64 * 1024


@router.get("/.well-known/smart-configuration")
@router.get("/fhir/.well-known/smart-configuration")
async def smart_configuration(request: Request) -> Response:
    """SMART discovery (https://hl7.org/fhir/smart-app-launch/conformance.html)."""
    return json_response({
        "issuer": ctx.issuer(request),
        "jwks_uri": ctx.endpoint(request, "jwks"),
        "authorization_endpoint": ctx.endpoint(request, "authorize"),
        "token_endpoint": ctx.endpoint(request, "token"),
        "introspection_endpoint": ctx.endpoint(request, "introspect"),
        "revocation_endpoint": ctx.endpoint(request, "revoke"),
        "registration_endpoint": ctx.endpoint(request, "register"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": clients.ASSERTION_ALGORITHMS,
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES_SUPPORTED,
        "capabilities": CAPABILITIES,
    }, no_store=False)


@router.get("/.well-known/openid-configuration")
async def openid_configuration(request: Request) -> Response:
    """OpenID Connect discovery, for the id tokens (sso-openid-connect)."""
    return json_response({
        "issuer": ctx.issuer(request),
        "jwks_uri": ctx.endpoint(request, "jwks"),
        "authorization_endpoint": ctx.endpoint(request, "authorize"),
        "token_endpoint": ctx.endpoint(request, "token"),
        "registration_endpoint": ctx.endpoint(request, "register"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "fhirUser"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce",
                             "fhirUser"],
    }, no_store=False)


@router.get("/oauth/jwks")
async def jwks(request: Request) -> Response:
    keys = await ctx.signing_keys(request)
    return json_response(keys.jwks(), no_store=False, headers={"Cache-Control": "max-age=300"})


@router.get("/oauth/authorize")
async def authorize_get(request: Request) -> Response:
    return await _authorize(request, query_params(request))


@router.post("/oauth/authorize")
async def authorize_post(request: Request) -> Response:
    """The sign-in page's answer, or an app's authorization request sent as a form."""
    return await _authorize(request, await read_form(request))


async def _authorize(request: Request, params: dict[str, str]) -> Response:
    db, settings = ctx.db_of(request), ctx.settings_of(request)
    async with db.read() as conn:
        auth = await authorize.check_request(conn, params, fhir_base=ctx.fhir_base(request))
    decision = params.get("decision") if request.method == "POST" else None
    if decision is None:  # a GET never approves anything: it shows the page
        return await _page(request, auth, params)
    if decision == "deny":
        raise error(AccessDeniedError, "The user did not allow access.",
                    redirect_uri=auth.redirect_uri, state=auth.state)
    user, problem = await _sign_in(request, params)
    if user is None or decision != "approve":
        return await _page(request, auth, params, problem or "Choose Allow or Deny.")
    choice = (params.get("patient") or "").strip().removeprefix("Patient/")
    if (user.kind == "practitioner" and auth.launch is None and auth.needs_patient() and choice
            and not await _may_open(request, user, choice)):
        # One answer for a patient they may not open and one that does not exist.
        return await _page(request, auth, params, (
            f"Patient/{choice} is not one of your patients: choose a patient registered at "
            "your practice, in a care team of yours, or referred to you."))
    try:
        async with db.write() as conn:
            code = await authorize.approve(conn, auth, user=user,
                                           patient_choice=params.get("patient"),
                                           code_lifetime=settings.auth_code_seconds)
    except authorize.NeedsChoice as exc:
        return await _page(request, auth, params, str(exc))
    return redirect(auth.redirect_uri, {"code": code, "state": auth.state})


async def _may_open(request: Request, user: users.User, patient_id: str) -> bool:
    """Whether a member of staff may read the record of `patient_id` (the access policy, as
    for their first FHIR request with the token the page would give them)."""
    from consent import context as access_context
    from consent import policy
    from consent.principals import staff_principal

    role = user.roles[0] if user.roles else None
    if role is None:
        return False
    principal = staff_principal(user=user.reference, practitioner_role=role.id,
                                organization=role.organization, sds_code=role.code)
    async with ctx.db_of(request).read() as conn:
        if await users.exists(conn, "Patient", patient_id) is None:
            return False
        access = await access_context.resolve(conn, principal, patient_ids=(patient_id,))
    return policy.decide(access, "read", "Patient", policy.ResourceMeta(patient_id)).allowed


async def _page(request: Request, auth: authorize.AuthorizationRequest, params: dict[str, str],
                problem: str | None = None) -> Response:
    settings = ctx.settings_of(request)
    demo = settings.demo_login_enabled()
    staff: list[users.User] = []
    patients: list[users.User] = []
    if demo:
        async with ctx.db_of(request).read() as conn:
            staff, patients = await users.demo_users(conn)
    return page.render(auth, params, demo=demo, external=bool(settings.trusted_issuers),
                       staff=staff, patients=patients, problem=problem,
                       status=400 if problem else 200)


async def _sign_in(request: Request, params: dict[str, str]) -> tuple[users.User | None, str]:
    """The user signing in: by an external provider's token, or (demo) by choice."""
    settings = ctx.settings_of(request)
    async with ctx.db_of(request).read() as conn:
        if params.get("external_token") and settings.trusted_issuers:
            try:
                config, claims = await tokens.verify_external(
                    params["external_token"], settings.trusted_issuers, ctx.jwks_cache(request))
                who = await tokens.external_caller(conn, config, claims)
            except OAuth2Error as exc:
                return None, f"The identity provider's token was refused: {exc.description}"
            return await users.lookup(conn, who.fhir_user or ""), ""
        if params.get("user") and settings.demo_login_enabled():
            user = await users.lookup(conn, params["user"])
            if user is None:
                return None, (f"{params['user']} cannot sign in: name a Patient, or a "
                              "Practitioner with a PractitionerRole.")
            return user, ""
    return None, "Sign in first."


@router.post("/oauth/token")
async def token(request: Request) -> Response:
    """The token endpoint (RFC 6749 3.2): authorization_code, refresh_token, client_credentials."""
    if request.headers.get("authorization", "").lower().startswith("basic"):
        raise error(InvalidClientError, "Client secrets are not used here: public clients send "
                    "client_id, confidential ones a private_key_jwt client_assertion.")
    form = await read_form(request)
    issuer = await ctx.token_issuer(request)
    failure: OAuth2Error | None = None
    async with ctx.db_of(request).write() as conn:
        try:
            body = await grants.token(conn, form, issuer)
        except OAuth2Error as exc:  # commit what a refusal records (replays, used assertions)
            failure = exc
    if failure is not None:
        raise failure
    return json_response(body)


@router.post("/oauth/introspect")
async def introspect(request: Request) -> Response:
    """RFC 7662, for resource servers. The caller authenticates (2.1) with a confidential
    client's private_key_jwt assertion or a bearer access token, and learns only of tokens it
    may know of (4, "the authorization server MAY ... limit the response"): a resource server
    the operator registered (`"resource_server": true`) of any token; a confidential client
    of the tokens issued to it; a bearer token of the tokens of its own grant (the same
    client and user). Of any other token it learns `{"active": false}`, as of one that does
    not exist, so a patient's token learns nothing of a clinician's."""
    form = await read_form(request)
    if not form.get("token"):
        raise error(InvalidRequestError, "token is required.")
    issuer = await ctx.token_issuer(request)
    caller = None
    if request.headers.get("authorization"):
        caller = await ctx.caller_from_request(request)
        async with ctx.db_of(request).read() as conn:
            client = await clients.find(conn, caller.client_id)
        resource_server = (client is not None and client.resource_server
                           and caller.kind == "system")
    else:
        client = await _client(request, form, issuer)
        if client.public:
            raise error(InvalidClientError, "Introspection needs a confidential client or a "
                        "bearer token.")
        resource_server = client.resource_server
    header = _header_of(form["token"])
    if header.get("kid"):
        issuer = await ctx.token_issuer(request, str(header["kid"]))
    async with ctx.db_of(request).read() as conn:
        info = await grants.introspect(conn, form["token"], issuer)
    if info.get("active") and not resource_server:
        if caller is not None:
            mine = (info.get("client_id") == caller.client_id
                    and info.get("sub") == caller.subject)
        else:
            mine = client is not None and info.get("client_id") == client.client_id
        if not mine:
            info = {"active": False}
    return json_response(info)


@router.post("/oauth/revoke")
async def revoke(request: Request) -> Response:
    """RFC 7009: the client gives up a token it holds (and what was issued with it)."""
    form = await read_form(request)
    if not form.get("token"):
        raise error(InvalidRequestError, "token is required.")
    issuer = await ctx.token_issuer(request)
    failure: OAuth2Error | None = None
    async with ctx.db_of(request).write() as conn:
        try:
            client = await clients.authenticate(conn, form, token_url=issuer.token_url,
                                                cache=issuer.cache)
            await grants.revoke(conn, form["token"], form.get("token_type_hint"), client, issuer)
        except OAuth2Error as exc:
            failure = exc
    if failure is not None:
        raise failure
    from api import access  # the FHIR side's token cache: this worker stops taking it now

    access.forget(form["token"])
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


@router.post("/oauth/register")
async def register(request: Request) -> Response:
    """RFC 7591 dynamic registration (minimal: no registration access token)."""
    if not ctx.settings_of(request).registration_open():
        raise error(AccessDeniedError, "Registration is closed on this server.", status_code=403)
    body = await _json_body(request, InvalidClientMetadataError)
    async with ctx.db_of(request).write() as conn:
        registered = await clients.register(conn, body)
    return json_response(registered, 201)


@router.post("/oauth/launch")
async def launch(request: Request) -> Response:
    """The EHR side of an EHR launch: record patient/encounter context for a staff user.

    The caller is the member of staff (a bearer token of theirs), or with demo login on, the
    `user` the body names. The answer's `launch` goes to the app with `iss`.
    """
    settings = ctx.settings_of(request)
    body = await _json_body(request, InvalidRequestError)
    db = ctx.db_of(request)
    if request.headers.get("authorization"):
        caller = await ctx.caller_from_request(request)
        reference = caller.fhir_user if caller.kind == "practitioner" else None
    elif settings.demo_login_enabled() and isinstance(body.get("user"), str):
        reference = body["user"]
    else:
        raise error(InvalidTokenError, "Launching needs a staff member's bearer token.")
    patient, encounter = _id(body, "patient", "Patient"), _id(body, "encounter", "Encounter")
    async with db.write() as conn:
        user = await users.lookup(conn, reference or "")
        if user is None or user.kind != "practitioner":
            raise error(AccessDeniedError, "Only staff (a Practitioner with a PractitionerRole) "
                        "launch apps.", status_code=403)
        launch_id = await authorize.create_launch(conn, user=user, patient=patient,
                                                  encounter=encounter,
                                                  lifetime=settings.launch_seconds)
    return json_response({"launch": launch_id, "iss": ctx.fhir_base(request),
                          "expires_in": settings.launch_seconds}, 201)


def _id(body: dict[str, Any], name: str, type_: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise error(InvalidRequestError, f"{name} must be a {type_} id.")
    return value.removeprefix(f"{type_}/")


async def _client(request: Request, form: dict[str, str],
                  issuer: grants.Issuer) -> clients.Client:
    failure: OAuth2Error | None = None
    async with ctx.db_of(request).write() as conn:
        try:
            client = await clients.authenticate(conn, form, token_url=issuer.token_url,
                                                cache=issuer.cache)
        except OAuth2Error as exc:
            failure = exc
    if failure is not None:
        raise failure
    return client


def _header_of(token_value: str) -> dict[str, Any]:
    try:
        return tokens.unverified(token_value)[0]
    except OAuth2Error:
        return {}


async def _json_body(request: Request, kind: type[OAuth2Error]) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise error(kind, "Send a JSON object (application/json).")
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > MAX_JSON_BYTES:
            raise error(kind, "The body is too large.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise error(kind, "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise error(kind, "The body must be a JSON object.")
    return body
