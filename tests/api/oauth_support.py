"""Helpers for the authorisation server's HTTP tests: PKCE, clients, the sign-in, assertions."""

from __future__ import annotations

import base64
import hashlib
import random
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

FHIR = "http://test/fhir"
ISSUER = "http://test"
TOKEN_URL = "http://test/oauth/token"
REDIRECT = "http://127.0.0.1:9999/callback"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SDS_USER_ID = "https://fhir.nhs.uk/Id/sds-user-id"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def pkce() -> tuple[str, str]:
    """A code verifier and its S256 challenge (RFC 7636 4.1, 4.2)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def nhs_number(rng: random.Random | None = None) -> str:
    """A random NHS number with a valid Modulus 11 check digit."""
    rng = rng or random.Random()
    while True:
        digits = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(d * (10 - i) for i, d in enumerate(digits)) % 11
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def oauth_error(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """Assert an RFC 6749 5.2 error answer."""
    assert r.status_code == status, f"{r.status_code} != {status}: {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["error"] == error, body
    assert "Traceback" not in r.text
    return body


def redirected(r: httpx.Response, redirect_uri: str = REDIRECT) -> dict[str, str]:
    """The query parameters of a 302 back to the app."""
    assert r.status_code == 302, f"{r.status_code}: {r.text}"
    location = r.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def register(c: httpx.AsyncClient, **meta: Any) -> dict[str, Any]:
    r = await c.post("/oauth/register", json=meta)
    assert r.status_code == 201, r.text
    return r.json()


async def public_app(c: httpx.AsyncClient, **meta: Any) -> str:
    """Register a public (PKCE-only) app; its client_id."""
    body = {"client_name": "Test app", "redirect_uris": [REDIRECT], **meta}
    return (await register(c, **body))["client_id"]


def auth_params(client_id: str, scope: str, challenge: str, **extra: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
            "scope": scope, "state": uuid.uuid4().hex, "aud": FHIR,
            "code_challenge": challenge, "code_challenge_method": "S256", **extra}


async def get_code(c: httpx.AsyncClient, client_id: str, user: str, scope: str,
                   challenge: str, **extra: str) -> str:
    """Show the sign-in page, sign in as `user` and allow; the code the app receives."""
    form = {k: v for k, v in extra.items() if k in ("patient",)}
    params = auth_params(client_id, scope, challenge,
                         **{k: v for k, v in extra.items() if k not in form})
    page = await c.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    r = await c.post("/oauth/authorize", data={**params, **form, "user": user,
                                               "decision": "approve"})
    back = redirected(r)
    assert back["state"] == params["state"]
    return back["code"]


async def exchange(c: httpx.AsyncClient, client_id: str | None, code: str, verifier: str,
                   redirect_uri: str = REDIRECT, **extra: str) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier, **extra}
    if client_id is not None:
        data["client_id"] = client_id
    return await c.post("/oauth/token", data=data)


async def sign_in(c: httpx.AsyncClient, client_id: str, user: str, scope: str,
                  **extra: str) -> dict[str, Any]:
    """The whole authorization code flow; the token response."""
    verifier, challenge = pkce()
    code = await get_code(c, client_id, user, scope, challenge, **extra)
    r = await exchange(c, client_id, code, verifier)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return r.json()


async def claims(c: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """The claims of one of the server's tokens, checked against its published JWKS."""
    keys = KeySet.import_key_set((await c.get("/oauth/jwks")).json())
    return dict(jwt.decode(token, keys, algorithms=["RS256"]).claims)


async def introspect(c: httpx.AsyncClient, token: str, bearer: str) -> dict[str, Any]:
    r = await c.post("/oauth/introspect", data={"token": token},
                     headers={"authorization": f"Bearer {bearer}"})
    assert r.status_code == 200, r.text
    return r.json()


def new_key(alg: str) -> RSAKey | ECKey:
    params = {"alg": alg, "use": "sig"}
    if alg.startswith("ES"):
        return ECKey.generate_key("P-384" if alg == "ES384" else "P-256", parameters=params,
                                  private=True, auto_kid=True)
    return RSAKey.generate_key(2048, parameters=params, private=True, auto_kid=True)


def public_jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def assertion(key: RSAKey | ECKey, client_id: str, *, aud: str = TOKEN_URL,
              exp_in: float = 240, jti: str | None = None, iss: str | None = None,
              sub: str | None = None, kid: str | None = None) -> str:
    """A SMART Backend Services client assertion (RFC 7523) signed by `key`."""
    now = time.time()
    payload = {"iss": iss or client_id, "sub": sub or client_id, "aud": aud,
               "exp": int(now + exp_in), "iat": int(now), "jti": jti or uuid.uuid4().hex}
    alg = key.as_dict()["alg"]
    return jwt.encode({"alg": alg, "kid": kid or key.kid, "typ": "JWT"}, payload, key,
                      algorithms=[alg])


def assertion_form(key: RSAKey | ECKey, client_id: str, **claims: Any) -> dict[str, str]:
    return {"client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(key, client_id, **claims)}


# Two external OpenID Connect providers, with keys made here (no network): one for patients
# (NHS-login-like, keys configured inline), one for a practice's staff (keys by URL).
PATIENT_IDP = "https://login.patients.test"
PATIENT_IDP_AUDIENCE = "carenet-portal"
PATIENT_IDP_KEY = new_key("RS256")
STAFF_IDP = "https://idp.practice.test"
STAFF_IDP_JWKS_URL = "https://idp.practice.test/jwks"
STAFF_IDP_KEY = new_key("ES256")


def external_token(key: RSAKey | ECKey, issuer: str, audience: str, lifetime: float = 300,
                   **claims: Any) -> str:
    now = time.time()
    payload = {"iss": issuer, "aud": audience, "sub": uuid.uuid4().hex, "iat": int(now),
               "exp": int(now + lifetime), **claims}
    alg = key.as_dict()["alg"]
    return jwt.encode({"alg": alg, "kid": key.kid}, payload, key, algorithms=[alg])


async def resource_server(c: httpx.AsyncClient, app: Any) -> str:
    """A bearer token of a resource server the operator registered (`"resource_server":
    true`, `python -m api register-client`): it may introspect any token."""
    from consent import clients

    key = new_key("ES384")
    body = {"client_name": "Resource server", "jwks": public_jwks(key),
            "grant_types": ["client_credentials"], "scope": "system/*.rs",
            "resource_server": True}
    async with app.state.db.write() as conn:
        client_id = (await clients.register(conn, body, operator=True))["client_id"]
    r = await c.post("/oauth/token", data={"grant_type": "client_credentials",
                                           "scope": "system/*.rs",
                                           **assertion_form(key, client_id)})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])
