"""Introspection (RFC 7662), revocation (RFC 7009), registration (RFC 7591), and the token
endpoint's refusals: expired, misdirected, forged, tampered and revoked tokens."""

from __future__ import annotations

import base64
import time
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from joserfc.jwk import KeySet, RSAKey

from consent import keys as keys_module
from consent import tokens
from consent.keys import SigningKeys
from tests.api.oauth_support import (
    FHIR,
    ISSUER,
    REDIRECT,
    assertion_form,
    introspect,
    new_key,
    oauth_error,
    public_app,
    public_jwks,
    register,
    resource_server,
    sign_in,
)


async def server_keys(app: Any) -> SigningKeys:
    return await app.state.oauth_keys.get(app.state.db)


def forge(keys: SigningKeys, *, now: float | None = None, audience: str = FHIR,
          issuer: str = ISSUER, lifetime: int = 300) -> str:
    grant = tokens.Grant(subject="Practitioner/x", scope="user/*.cruds",
                         fhir_user="Practitioner/x")
    return tokens.issue_access_token(keys, issuer=issuer, audience=audience, client_id="c",
                                     grant=grant, lifetime=lifetime, fhir_base=FHIR,
                                     now=now).token


@pytest.fixture
async def patient_token(oauth: httpx.AsyncClient, people: SimpleNamespace) -> dict[str, Any]:
    app = await public_app(oauth)
    token = await sign_in(oauth, app, f"Patient/{people.alice}",
                          "patient/*.rs offline_access launch/patient")
    return {**token, "client_id": app}


async def test_introspection_of_live_tokens(oauth: httpx.AsyncClient,
                                            patient_token: dict[str, Any],
                                            people: SimpleNamespace) -> None:
    bearer = patient_token["access_token"]
    info = await introspect(oauth, bearer, bearer)
    assert info["active"] is True and info["token_type"] == "Bearer"
    assert info["client_id"] == patient_token["client_id"] and info["aud"] == FHIR
    assert info["sub"] == f"Patient/{people.alice}" and info["patient"] == people.alice
    assert info["scope"] == "patient/*.rs offline_access launch/patient"
    refresh = await introspect(oauth, patient_token["refresh_token"], bearer)
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    assert refresh["client_id"] == patient_token["client_id"]
    assert await introspect(oauth, "made-up", bearer) == {"active": False}


async def test_introspection_tells_a_caller_only_of_its_own_grant(
        oauth: httpx.AsyncClient, oauth_app: Any, patient_token: dict[str, Any],
        people: SimpleNamespace) -> None:
    """RFC 7662 4: a patient's token learns nothing of a clinician's token, even one issued
    to the same app; a confidential client learns of the tokens issued to it; a resource
    server the operator registered, of any token."""
    app = patient_token["client_id"]
    gp = await sign_in(oauth, app, people.gp, "user/*.rs")
    other_app = await sign_in(oauth, await public_app(oauth), f"Patient/{people.alice}",
                              "patient/*.rs")
    mine = patient_token["access_token"]
    for token in (gp["access_token"], other_app["access_token"], "made-up"):
        assert await introspect(oauth, token, mine) == {"active": False}
    assert (await introspect(oauth, mine, mine))["active"] is True
    key = new_key("ES384")
    service = (await register(oauth, client_name="Sync", jwks=public_jwks(key),
                              grant_types=["client_credentials"], scope="system/*.rs",
                              resource_server=True))["client_id"]  # stripped: open registration
    r = await oauth.post("/oauth/token", data={"grant_type": "client_credentials",
                                               "scope": "system/*.rs",
                                               **assertion_form(key, service)})
    own = r.json()["access_token"]
    for token, active in ((gp["access_token"], False), (mine, False), (own, True)):
        r = await oauth.post("/oauth/introspect",
                             data={"token": token, **assertion_form(key, service)})
        assert r.status_code == 200 and r.json()["active"] is active, r.text
    assert await introspect(oauth, gp["access_token"], own) == {"active": False}
    server = await resource_server(oauth, oauth_app)
    info = await introspect(oauth, gp["access_token"], server)
    assert info["active"] is True and info["sub"] == people.gp


async def test_introspection_needs_authentication(oauth: httpx.AsyncClient,
                                                  patient_token: dict[str, Any]) -> None:
    token = patient_token["access_token"]
    oauth_error(await oauth.post("/oauth/introspect", data={"token": token}), 401,
                "invalid_client")
    r = await oauth.post("/oauth/introspect", data={"token": token,
                                                    "client_id": patient_token["client_id"]})
    oauth_error(r, 401, "invalid_client")  # a public client may not scan tokens
    r = await oauth.post("/oauth/introspect", data={"token": token},
                         headers={"authorization": "Bearer junk"})
    oauth_error(r, 401, "invalid_token")
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await oauth.post("/oauth/introspect", data={},
                         headers={"authorization": f"Bearer {token}"})
    oauth_error(r, 400, "invalid_request")


async def test_bad_tokens_are_inactive_and_refused(oauth: httpx.AsyncClient, oauth_app: Any,
                                                   patient_token: dict[str, Any]) -> None:
    keys = await server_keys(oauth_app)
    bearer = await resource_server(oauth, oauth_app)  # may introspect any token
    header, payload, signature = patient_token["access_token"].split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    widened = base64.urlsafe_b64encode(orjson.dumps({**claims, "scope": "user/*.cruds"}))
    stranger = keys_module.new_key()
    impostor = RSAKey.import_key({**stranger.as_dict(private=True), "kid": keys.current.kid})
    impostor_keys = SigningKeys(current=impostor, verify=KeySet([impostor]))
    bad = {
        "expired": forge(keys, now=time.time() - 7200),
        "wrong audience": forge(keys, audience="https://other.test/fhir"),
        "wrong issuer": forge(keys, issuer="https://other.test"),
        "forged signature": forge(impostor_keys),
        "tampered payload": f"{header}.{widened.rstrip(b'=').decode()}.{signature}",
        "unsigned": f"{header}.{payload}.",
    }
    for why, token in bad.items():
        assert await introspect(oauth, token, bearer) == {"active": False}, why
        r = await oauth.post("/oauth/launch", json={"patient": "x"},
                             headers={"authorization": f"Bearer {token}"})
        oauth_error(r, 401, "invalid_token")
    assert (await introspect(oauth, forge(keys), bearer))["active"] is True


async def test_revoked_access_token_is_inactive(oauth: httpx.AsyncClient,
                                                patient_token: dict[str, Any],
                                                people: SimpleNamespace) -> None:
    app = patient_token["client_id"]
    # The same user through the same app: a caller who may introspect the revoked token.
    probe = await sign_in(oauth, app, f"Patient/{people.alice}", "patient/*.rs")
    assert (await introspect(oauth, patient_token["access_token"], probe["access_token"]))[
        "active"] is True
    r = await oauth.post("/oauth/revoke", data={"token": patient_token["access_token"],
                                                "token_type_hint": "access_token",
                                                "client_id": app})
    assert r.status_code == 200, r.text
    assert await introspect(oauth, patient_token["access_token"], probe["access_token"]) == {
        "active": False}
    r = await oauth.post("/oauth/launch", json={"patient": people.alice}, headers={
        "authorization": f"Bearer {patient_token['access_token']}"})
    body = oauth_error(r, 401, "invalid_token")
    assert "revoked" in body["error_description"]
    # revoking again, or revoking junk, is not an error (RFC 7009 2.2)
    for token in (patient_token["access_token"], "junk"):
        r = await oauth.post("/oauth/revoke", data={"token": token, "client_id": app})
        assert r.status_code == 200


async def test_revoked_refresh_token_stops_refreshing(oauth: httpx.AsyncClient,
                                                      patient_token: dict[str, Any],
                                                      people: SimpleNamespace) -> None:
    app = patient_token["client_id"]
    r = await oauth.post("/oauth/revoke", data={"token": patient_token["refresh_token"],
                                                "client_id": app})
    assert r.status_code == 200
    r = await oauth.post("/oauth/token", data={"grant_type": "refresh_token", "client_id": app,
                                               "refresh_token": patient_token["refresh_token"]})
    oauth_error(r, 400, "invalid_grant")
    # and the access token issued with it goes too (RFC 7009 2.1)
    probe = await sign_in(oauth, app, f"Patient/{people.alice}", "patient/*.rs")
    for token in (patient_token["refresh_token"], patient_token["access_token"]):
        assert await introspect(oauth, token, probe["access_token"]) == {"active": False}


async def test_revocation_is_for_the_tokens_own_client(oauth: httpx.AsyncClient,
                                                       patient_token: dict[str, Any]) -> None:
    other = await public_app(oauth)
    for token in (patient_token["access_token"], patient_token["refresh_token"]):
        r = await oauth.post("/oauth/revoke", data={"token": token, "client_id": other})
        oauth_error(r, 400, "unauthorized_client")
    bearer = patient_token["access_token"]
    assert (await introspect(oauth, bearer, bearer))["active"] is True
    oauth_error(await oauth.post("/oauth/revoke", data={"token": bearer}), 401, "invalid_client")
    r = await oauth.post("/oauth/revoke", data={"token": bearer, "token_type_hint": "other",
                                                "client_id": patient_token["client_id"]})
    oauth_error(r, 400, "unsupported_token_type")


async def test_registration(oauth: httpx.AsyncClient) -> None:
    body = await register(oauth, client_name="Portal", redirect_uris=[REDIRECT],
                          scope="patient/*.rs launch/patient")
    assert body["client_id"] and body["client_id_issued_at"] <= time.time()
    assert body["token_endpoint_auth_method"] == "none"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"] and body["scope"] == "patient/*.rs launch/patient"
    native = await register(oauth, redirect_uris=["org.example.app:/callback"])
    assert native["client_id"] != body["client_id"]


@pytest.mark.parametrize(("meta", "error"), [
    ({"redirect_uris": ["http://app.example.org/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://app.example.org/cb#frag"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["relative/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["myapp:/cb"]}, "invalid_redirect_uri"),
    ({}, "invalid_redirect_uri"),
    ({"redirect_uris": "https://x.test/cb"}, "invalid_client_metadata"),
    ({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_basic"},
     "invalid_client_metadata"),
    ({"grant_types": ["client_credentials"]}, "invalid_client_metadata"),
    ({"grant_types": ["implicit"], "redirect_uris": [REDIRECT]}, "invalid_client_metadata"),
    ({"redirect_uris": [REDIRECT], "response_types": ["token"]}, "invalid_client_metadata"),
    ({"redirect_uris": [REDIRECT], "scope": "patient/*.rs nonsense"},
     "invalid_client_metadata"),
    ({"jwks": {"keys": []}, "grant_types": ["client_credentials"]}, "invalid_client_metadata"),
    ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "invalid_client_metadata"),
    ({"jwks": "x", "jwks_uri": "https://x.test/jwks"}, "invalid_client_metadata"),
    ({"jwks_uri": "http://x.test/jwks"}, "invalid_client_metadata"),
    ({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
      "jwks_uri": "https://x.test/jwks"}, "invalid_client_metadata"),
])
async def test_registration_refusals(oauth: httpx.AsyncClient, meta: dict[str, Any],
                                     error: str) -> None:
    oauth_error(await oauth.post("/oauth/register", json=meta), 400, error)


async def test_registration_refuses_private_keys_and_bad_bodies(oauth: httpx.AsyncClient) -> None:
    key = new_key("ES384")
    private = {"keys": [key.as_dict(private=True)]}
    r = await oauth.post("/oauth/register", json={"jwks": private,
                                                  "grant_types": ["client_credentials"]})
    assert "private key" in oauth_error(r, 400, "invalid_client_metadata")["error_description"]
    for content, ctype in ((b"[1]", "application/json"), (b"{", "application/json"),
                           (b"a=b", "application/x-www-form-urlencoded")):
        r = await oauth.post("/oauth/register", content=content, headers={"content-type": ctype})
        oauth_error(r, 400, "invalid_client_metadata")
    assert (await register(oauth, jwks=public_jwks(key),
                           grant_types=["client_credentials"]))["client_id"]


async def test_registration_can_be_closed(oauth: httpx.AsyncClient, oauth_app: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oauth_app.state.settings, "open_registration", False)
    r = await oauth.post("/oauth/register", json={"redirect_uris": [REDIRECT]})
    oauth_error(r, 403, "access_denied")


async def test_token_endpoint_refusals(oauth: httpx.AsyncClient) -> None:
    app = await public_app(oauth)
    oauth_error(await oauth.post("/oauth/token", data={"client_id": app}), 400,
                "invalid_request")
    oauth_error(await oauth.post("/oauth/token", data={"grant_type": "password",
                                                       "client_id": app}),
                400, "unsupported_grant_type")
    oauth_error(await oauth.post("/oauth/token", json={"grant_type": "client_credentials"}),
                400, "invalid_request")
    oauth_error(await oauth.post("/oauth/token", content=b"\xff\xfe=1", headers={
        "content-type": "application/x-www-form-urlencoded"}), 400, "invalid_request")
    oauth_error(await oauth.post("/oauth/token", content=b"grant_type=a&grant_type=b",
                                 headers={"content-type": "application/x-www-form-urlencoded"}),
                400, "invalid_request")
    r = await oauth.post("/oauth/token", data={"grant_type": "client_credentials"},
                         headers={"authorization": "Basic YTpi"})
    oauth_error(r, 401, "invalid_client")
    r = await oauth.get("/oauth/token")
    oauth_error(r, 405, "invalid_request")
    assert "POST" in r.headers["allow"]
    oauth_error(await oauth.get("/oauth/nothing-here"), 404, "invalid_request")
    oauth_error(await oauth.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT,
        "code_verifier": "v" * 43, "client_id": app}), 400, "invalid_grant")
    description = '"quoted" \\ and non-ascii \u00e9'
    r = await oauth.post("/oauth/token", data={"grant_type": "client_credentials",
                                               "scope": description, "client_id": app})
    oauth_error(r, 400, "unauthorized_client")


async def test_errors_never_leak_a_trace_for_odd_input(oauth: httpx.AsyncClient) -> None:
    key = new_key("ES384")
    odd = ['"', "\\", "\u00e9\u00e9", "a" * 5000, "x.y.z", "e30.e30.e30"]
    for value in odd:
        for path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect"):
            r = await oauth.post(path, data={"grant_type": value, "token": value,
                                             "client_id": value, "client_assertion": value,
                                             "client_assertion_type": value})
            assert 400 <= r.status_code < 500, (path, value, r.text)
            assert r.json()["error"]
        r = await oauth.get("/oauth/authorize", params={"client_id": value,
                                                        "redirect_uri": value})
        assert r.status_code == 400
    r = await oauth.post("/oauth/token", data={"grant_type": "client_credentials",
                                               **assertion_form(key, "\u00e9")})
    oauth_error(r, 401, "invalid_client")


def test_register_client_on_the_command_line(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from api.__main__ import main

    monkeypatch.setenv("CARENET_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    good, bad = tmp_path / "client.json", tmp_path / "bad.json"
    good.write_text(orjson.dumps({"client_name": "Sync", "grant_types": ["client_credentials"],
                                  "jwks": public_jwks(new_key("ES384"))}).decode())
    bad.write_text('{"grant_types": ["client_credentials"]}')
    with pytest.raises(SystemExit) as done:
        main(["register-client", str(good)])
    assert done.value.code == 0
    assert orjson.loads(capsys.readouterr().out)["token_endpoint_auth_method"] == "private_key_jwt"
    with pytest.raises(SystemExit) as done:
        main(["register-client", str(bad)])
    assert done.value.code == 1 and "not registered" in capsys.readouterr().err
