"""SMART Backend Services: client_credentials with a private_key_jwt assertion (RFC 7523),
and confidential asymmetric apps; every way an assertion is refused."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.api.oauth_support import (
    ASSERTION_TYPE,
    FHIR,
    REDIRECT,
    assertion,
    assertion_form,
    claims,
    exchange,
    get_code,
    new_key,
    oauth_error,
    pkce,
    public_jwks,
    register,
)
from tests.tokens import bearer, mint


async def backend(c: httpx.AsyncClient, key: Any, **meta: Any) -> str:
    body = {"client_name": "Practice system", "jwks": public_jwks(key),
            "grant_types": ["client_credentials"], "scope": "system/*.rs system/Patient.cruds",
            **meta}
    registered = await register(c, **body)
    assert registered["token_endpoint_auth_method"] == "private_key_jwt"
    return registered["client_id"]


async def credentials(c: httpx.AsyncClient, key: Any, client_id: str, scope: str = "system/*.rs",
                      **claims_: Any) -> httpx.Response:
    return await c.post("/oauth/token", data={"grant_type": "client_credentials", "scope": scope,
                                              **assertion_form(key, client_id, **claims_)})


@pytest.mark.parametrize("alg", ["ES384", "RS384", "ES256", "RS256"])
async def test_client_credentials(oauth: httpx.AsyncClient, alg: str) -> None:
    key = new_key(alg)
    client_id = await backend(oauth, key)
    r = await credentials(oauth, key, client_id, "system/*.rs system/Patient.c system/Flag.c")
    assert r.status_code == 200, r.text
    token = r.json()
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "system/*.rs system/Patient.c"  # Flag.c: not registered
    assert "refresh_token" not in token and "id_token" not in token and "patient" not in token
    access = await claims(oauth, token["access_token"])
    assert access["sub"] == client_id and access["client_id"] == client_id
    assert access["aud"] == FHIR and "fhirUser" not in access


async def test_keys_by_jwks_uri(oauth: httpx.AsyncClient,
                                served_jwks: dict[str, dict[str, Any]]) -> None:
    key, url = new_key("RS384"), f"https://backend-{uuid.uuid4().hex}.test/jwks"
    served_jwks[url] = public_jwks(key)
    client_id = (await register(oauth, jwks_uri=url, grant_types=["client_credentials"]))[
        "client_id"]
    assert (await credentials(oauth, key, client_id)).status_code == 200
    rotated = new_key("ES384")  # the client rotates its key: the new kid is fetched
    served_jwks[url] = public_jwks(rotated)
    assert (await credentials(oauth, rotated, client_id)).status_code == 200
    del served_jwks[url]  # its key set is unreachable now, and nothing was cached for long
    oauth_error(await credentials(oauth, new_key("ES384"), client_id), 401, "invalid_client")


async def test_assertion_replay_is_refused(oauth: httpx.AsyncClient) -> None:
    key = new_key("ES384")
    client_id = await backend(oauth, key)
    form = {"grant_type": "client_credentials", "scope": "system/*.rs",
            **assertion_form(key, client_id)}
    assert (await oauth.post("/oauth/token", data=form)).status_code == 200
    body = oauth_error(await oauth.post("/oauth/token", data=form), 401, "invalid_client")
    assert "replay" in body["error_description"]
    # the same jti from another client is that client's own business
    other_key = new_key("ES384")
    other = await backend(oauth, other_key)
    jti = assertion_claims(form["client_assertion"])["jti"]
    assert (await credentials(oauth, other_key, other, jti=jti)).status_code == 200


def assertion_claims(token: str) -> dict[str, Any]:
    import base64

    import orjson

    payload = token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.parametrize(("claims_", "text"), [
    ({"exp_in": 600}, "five minutes"),
    ({"exp_in": -120}, "expired"),
    ({"aud": "http://test/fhir"}, "aud"),
    ({"aud": "http://test/oauth/token/"}, "aud"),
    ({"iss": "someone-else"}, "iss and sub"),
    ({"sub": "someone-else"}, "iss and sub"),
])
async def test_bad_assertions_are_refused(oauth: httpx.AsyncClient, claims_: dict[str, Any],
                                          text: str) -> None:
    key = new_key("ES384")
    client_id = await backend(oauth, key)
    body = oauth_error(await credentials(oauth, key, client_id, **claims_), 401,
                       "invalid_client")
    assert text in body["error_description"]


async def test_assertion_signed_by_another_key_is_refused(oauth: httpx.AsyncClient) -> None:
    key = new_key("ES384")
    client_id = await backend(oauth, key)
    thief = new_key("ES384")
    r = await oauth.post("/oauth/token", data={
        "grant_type": "client_credentials", "scope": "system/*.rs",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(thief, client_id, kid=key.kid)})
    oauth_error(r, 401, "invalid_client")
    # a tampered assertion (claims changed after signing) fails the same way
    good = assertion(key, client_id).split(".")
    forged = assertion(thief, client_id, exp_in=200).split(".")[1]
    r = await oauth.post("/oauth/token", data={
        "grant_type": "client_credentials", "scope": "system/*.rs",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": f"{good[0]}.{forged}.{good[2]}"})
    oauth_error(r, 401, "invalid_client")


async def test_unknown_client_and_malformed_requests(oauth: httpx.AsyncClient) -> None:
    key = new_key("ES384")
    oauth_error(await credentials(oauth, key, "no-such-client"), 401, "invalid_client")
    client_id = await backend(oauth, key)
    base = {"grant_type": "client_credentials", "scope": "system/*.rs"}
    for extra in ({"client_assertion_type": "urn:other", "client_assertion": "x.y.z"},
                  {"client_assertion_type": ASSERTION_TYPE},
                  {"client_assertion_type": ASSERTION_TYPE, "client_assertion": "garbage"},
                  {"client_id": client_id},  # a confidential client must sign
                  {}):
        oauth_error(await oauth.post("/oauth/token", data={**base, **extra}), 401,
                    "invalid_client")
    r = await oauth.post("/oauth/token", data={**base, "client_id": "other",
                                               **assertion_form(key, client_id)})
    oauth_error(r, 401, "invalid_client")


async def test_scopes_of_backend_services(oauth: httpx.AsyncClient) -> None:
    key = new_key("ES384")
    client_id = await backend(oauth, key, scope="system/Observation.rs")
    for scope in ("patient/*.rs", "user/*.rs", "system/Patient.rs", "", "system/*.cruds"):
        oauth_error(await credentials(oauth, key, client_id, scope), 400, "invalid_scope")
    oauth_error(await credentials(oauth, key, client_id, "system/Observation.rs bogus"), 400,
                "invalid_scope")
    r = await credentials(oauth, key, client_id, "system/Observation.r openid")
    assert r.status_code == 200 and r.json()["scope"] == "system/Observation.r"


async def test_grant_types_are_per_client(oauth: httpx.AsyncClient,
                                          people: SimpleNamespace) -> None:
    public = (await register(oauth, redirect_uris=[REDIRECT]))["client_id"]
    r = await oauth.post("/oauth/token", data={"grant_type": "client_credentials",
                                               "client_id": public, "scope": "system/*.rs"})
    oauth_error(r, 400, "unauthorized_client")
    key = new_key("ES384")
    client_id = await backend(oauth, key)
    verifier, challenge = pkce()
    r = await oauth.get("/oauth/authorize", params={
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
        "scope": "user/*.rs", "state": "s", "aud": FHIR, "code_challenge": challenge,
        "code_challenge_method": "S256"})
    oauth_error(r, 400, "invalid_request")  # it registered no redirect URI


async def test_confidential_app_authenticates_at_the_token_endpoint(
        oauth: httpx.AsyncClient, people: SimpleNamespace) -> None:
    key = new_key("RS384")
    app = (await register(oauth, redirect_uris=[REDIRECT], jwks=public_jwks(key)))["client_id"]
    verifier, challenge = pkce()
    code = await get_code(oauth, app, people.gp, "user/*.rs offline_access openid fhirUser",
                          challenge)
    oauth_error(await exchange(oauth, app, code, verifier), 401, "invalid_client")
    r = await exchange(oauth, None, code, verifier, **assertion_form(key, app))
    assert r.status_code == 200, r.text
    token = r.json()
    assert (await claims(oauth, token["id_token"]))["fhirUser"] == f"{FHIR}/{people.gp}"
    refreshed = await oauth.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"],
        **assertion_form(key, app)})
    assert refreshed.status_code == 200, refreshed.text


async def test_introspection_by_a_confidential_client(oauth: httpx.AsyncClient) -> None:
    key = new_key("ES384")
    client_id = await backend(oauth, key)
    token = (await credentials(oauth, key, client_id)).json()["access_token"]
    r = await oauth.post("/oauth/introspect", data={"token": token,
                                                    **assertion_form(key, client_id)})
    assert r.status_code == 200 and r.json()["active"] is True
    assert r.json()["sub"] == client_id and r.json()["scope"] == "system/*.rs"
    assert r.json()["exp"] > time.time()


async def test_only_a_backend_service_the_operator_registered_reaches_records(
        oauth: httpx.AsyncClient, oauth_app: Any) -> None:
    """Open registration is for apps: a backend service registered through it gets tokens
    but no records (it would otherwise read the whole network). The operator's registration
    (`python -m api register-client`) vouches for it, and may tie it to a practice."""
    from consent import clients

    key = new_key("ES384")
    anyone = await backend(oauth, key, organization="Organization/forged",
                           carenet_operator_registered=True)  # both stripped
    token = (await credentials(oauth, key, anyone)).json()["access_token"]
    r = await oauth.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403, r.text
    assert "insufficient_scope" in r.headers["www-authenticate"]

    loader = bearer(await mint(oauth_app))
    practice = (await oauth.post("/fhir/Organization", json={"resourceType": "Organization",
                                                             "name": "Vouched Surgery"},
                                 headers=loader)).json()["id"]
    ours = (await oauth.post("/fhir/Patient", json={
        "resourceType": "Patient",
        "generalPractitioner": [{"reference": f"Organization/{practice}"}]},
        headers=loader)).json()["id"]
    theirs = (await oauth.post("/fhir/Patient", json={"resourceType": "Patient"},
                               headers=loader)).json()["id"]
    body = {"client_name": "Vouched Surgery EHR", "jwks": public_jwks(key),
            "grant_types": ["client_credentials"], "scope": "system/*.rs",
            "organization": f"Organization/{practice}"}
    async with oauth_app.state.db.write() as conn:
        vouched = (await clients.register(conn, body, operator=True))["client_id"]
    token = (await credentials(oauth, key, vouched)).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert (await oauth.get(f"/fhir/Patient/{ours}", headers=auth)).status_code == 200
    assert (await oauth.get(f"/fhir/Patient/{theirs}", headers=auth)).status_code == 404
