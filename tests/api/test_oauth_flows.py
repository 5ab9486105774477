"""SMART App Launch end to end over HTTP: discovery, standalone and EHR launch with PKCE,
refresh token rotation, id tokens, and the refusals of each step."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.api.oauth_support import (
    FHIR,
    ISSUER,
    REDIRECT,
    auth_params,
    claims,
    exchange,
    get_code,
    introspect,
    oauth_error,
    pkce,
    public_app,
    redirected,
    sign_in,
)

PATIENT_SCOPES = "launch/patient openid fhirUser offline_access patient/*.rs"


@pytest.mark.parametrize("path", ["/.well-known/smart-configuration",
                                  "/fhir/.well-known/smart-configuration"])
async def test_smart_configuration(oauth: httpx.AsyncClient, path: str) -> None:
    r = await oauth.get(path)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    config = r.json()
    assert config["issuer"] == ISSUER
    for name in ("authorization", "token", "introspection", "revocation", "registration"):
        assert config[f"{name}_endpoint"].startswith(f"{ISSUER}/oauth/")
    assert config["jwks_uri"] == f"{ISSUER}/oauth/jwks"
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert set(config["grant_types_supported"]) == {"authorization_code", "refresh_token",
                                                    "client_credentials"}
    assert config["response_types_supported"] == ["code"]
    assert set(config["token_endpoint_auth_methods_supported"]) == {"none", "private_key_jwt"}
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert {"launch-ehr", "launch-standalone", "client-public", "client-confidential-asymmetric",
            "context-ehr-patient", "context-standalone-patient", "permission-v2",
            "permission-v1", "sso-openid-connect"} <= set(config["capabilities"])
    assert "client-confidential-symmetric" not in config["capabilities"]
    assert {"openid", "fhirUser", "launch", "launch/patient", "offline_access",
            "patient/*.rs", "user/*.cruds", "system/*.rs"} <= set(config["scopes_supported"])
    other = await oauth.get("/.well-known/smart-configuration")
    assert other.json() == config


async def test_openid_configuration_and_jwks(oauth: httpx.AsyncClient) -> None:
    config = (await oauth.get("/.well-known/openid-configuration")).json()
    assert config["issuer"] == ISSUER and config["id_token_signing_alg_values_supported"] == [
        "RS256"]
    jwks = (await oauth.get("/oauth/jwks")).json()
    assert jwks["keys"] and all(k["kty"] == "RSA" and "d" not in k and k["kid"]
                                for k in jwks["keys"])


async def test_standalone_patient_launch(oauth: httpx.AsyncClient, people: SimpleNamespace) -> None:
    app = await public_app(oauth)
    token = await sign_in(oauth, app, f"Patient/{people.alice}", PATIENT_SCOPES, nonce="n-42")
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    assert token["scope"] == PATIENT_SCOPES
    assert token["patient"] == people.alice and token["need_patient_banner"] is True
    assert token["refresh_token"] and "encounter" not in token
    access = await claims(oauth, token["access_token"])
    assert access["iss"] == ISSUER and access["aud"] == FHIR
    assert access["sub"] == f"Patient/{people.alice}" and access["client_id"] == app
    assert access["patient"] == people.alice and access["scope"] == PATIENT_SCOPES
    assert access["fhirUser"] == f"{FHIR}/Patient/{people.alice}"
    assert access["jti"] and access["exp"] - access["iat"] == 3600
    id_token = await claims(oauth, token["id_token"])
    assert id_token["aud"] == app and id_token["iss"] == ISSUER and id_token["nonce"] == "n-42"
    assert id_token["fhirUser"] == f"{FHIR}/Patient/{people.alice}"
    assert id_token["sub"] == access["sub"]


async def test_staff_standalone_launch_picks_a_patient(oauth: httpx.AsyncClient,
                                                       people: SimpleNamespace) -> None:
    app = await public_app(oauth)
    verifier, challenge = pkce()
    params = auth_params(app, "launch/patient patient/Observation.rs openid fhirUser",
                         challenge)
    page = await oauth.post("/oauth/authorize", data={**params, "user": people.gp,
                                                      "decision": "approve"})
    assert page.status_code == 400 and "Choose the patient" in page.text
    # A patient they may not open (alice: not registered at the GP's practice) and one that
    # does not exist get the same answer, with what to choose instead (issue 16).
    answers = []
    for choice in (people.alice, "no-such-patient"):
        r = await oauth.post("/oauth/authorize", data={**params, "user": people.gp,
                                                       "patient": choice,
                                                       "decision": "approve"})
        assert r.status_code == 400 and "not one of your patients" in r.text, r.text
        assert "location" not in r.headers  # no code for the app
        problem = r.text.split('<p class="problem">', 1)[1].split("</p>", 1)[0]
        answers.append(problem.replace(choice, "X"))
    assert answers[0] == answers[1]
    code = await get_code(oauth, app, people.gp, params["scope"], challenge,
                          patient=people.bob)
    token = (await exchange(oauth, app, code, verifier)).json()
    assert token["patient"] == people.bob
    access = await claims(oauth, token["access_token"])
    assert access["sub"] == people.gp and access["patient"] == people.bob
    assert "refresh_token" not in token  # no offline_access asked


async def test_user_scopes_without_patient_context(oauth: httpx.AsyncClient,
                                                   people: SimpleNamespace) -> None:
    app = await public_app(oauth)
    token = await sign_in(oauth, app, people.gp,
                          "user/*.rs openid fhirUser system/*.rs online_access profile")
    # system/ is for backend services; online_access and profile are understood, not granted
    assert token["scope"] == "user/*.rs openid fhirUser"
    assert "patient" not in token


async def test_ehr_launch_with_patient_and_encounter(oauth: httpx.AsyncClient,
                                                     people: SimpleNamespace) -> None:
    r = await oauth.post("/oauth/launch", json={"user": people.gp, "patient": people.alice,
                                                "encounter": people.visit})
    assert r.status_code == 201, r.text
    launch = r.json()
    assert launch["iss"] == FHIR and launch["launch"]
    app = await public_app(oauth)
    scope = "launch openid fhirUser patient/*.rs user/*.rs launch/encounter"
    token = await sign_in(oauth, app, people.gp, scope, launch=launch["launch"])
    assert token["patient"] == people.alice and token["encounter"] == people.visit
    assert token["need_patient_banner"] is False
    access = await claims(oauth, token["access_token"])
    assert (access["patient"], access["encounter"]) == (people.alice, people.visit)


async def test_ehr_launch_by_staff_bearer_token(oauth: httpx.AsyncClient,
                                                people: SimpleNamespace) -> None:
    ehr = await public_app(oauth)
    staff = await sign_in(oauth, ehr, people.gp, "user/*.cruds")
    r = await oauth.post("/oauth/launch", json={"patient": people.bob},
                         headers={"authorization": f"Bearer {staff['access_token']}"})
    assert r.status_code == 201, r.text
    patient_token = await sign_in(oauth, ehr, f"Patient/{people.alice}", "patient/*.rs")
    refused = await oauth.post("/oauth/launch", json={"patient": people.bob}, headers={
        "authorization": f"Bearer {patient_token['access_token']}"})
    oauth_error(refused, 403, "access_denied")
    forged = await oauth.post("/oauth/launch", json={"patient": people.bob},
                              headers={"authorization": "Bearer not.a.token"})
    oauth_error(forged, 401, "invalid_token")


async def test_launch_refusals(oauth: httpx.AsyncClient, people: SimpleNamespace) -> None:
    bad = [({"user": people.gp, "patient": "nobody"}, 400, "invalid_request"),
           ({"user": people.gp, "patient": people.bob, "encounter": people.visit}, 400,
            "invalid_request"),  # the encounter is Alice's
           ({"user": f"Patient/{people.alice}", "patient": people.alice}, 403, "access_denied"),
           ({"user": people.roleless, "patient": people.alice}, 403, "access_denied"),
           ({"user": people.gp, "patient": 7}, 400, "invalid_request")]
    for body, status, code in bad:
        oauth_error(await oauth.post("/oauth/launch", json=body), status, code)


async def test_ehr_launch_belongs_to_its_user(oauth: httpx.AsyncClient,
                                              people: SimpleNamespace) -> None:
    launch = (await oauth.post("/oauth/launch", json={"user": people.gp,
                                                      "patient": people.alice})).json()
    app = await public_app(oauth)
    _verifier, challenge = pkce()
    params = auth_params(app, "launch patient/*.rs", challenge, launch=launch["launch"])
    r = await oauth.post("/oauth/authorize", data={**params, "user": f"Patient/{people.bob}",
                                                   "decision": "approve"})
    back = redirected(r)
    assert back["error"] == "access_denied" and back["state"] == params["state"]
    unknown = auth_params(app, "launch patient/*.rs", challenge, launch="made-up")
    back = redirected(await oauth.get("/oauth/authorize", params=unknown))
    assert back["error"] == "invalid_request" and "launch" in back["error_description"]
    no_scope = auth_params(app, "patient/*.rs", challenge, launch=launch["launch"])
    assert redirected(await oauth.get("/oauth/authorize", params=no_scope))[
        "error"] == "invalid_scope"


@pytest.mark.parametrize(("change", "error"), [
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"aud": "https://elsewhere.test/fhir"}, "invalid_request"),
    ({"aud": None}, "invalid_request"),
    ({"state": None}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "patient/*.rs made-up"}, "invalid_scope"),
    ({"scope": None}, "invalid_scope"),
])
async def test_authorize_refusals_go_back_to_the_app(oauth: httpx.AsyncClient,
                                                     change: dict[str, Any], error: str) -> None:
    app = await public_app(oauth)
    _verifier, challenge = pkce()
    params = auth_params(app, "patient/*.rs launch/patient", challenge)
    for name, value in change.items():
        if value is None:
            params.pop(name)
        else:
            params[name] = value
    for r in (await oauth.get("/oauth/authorize", params=params),
              await oauth.post("/oauth/authorize", data=params)):
        back = redirected(r)
        assert back["error"] == error, back
        assert back.get("state") == params.get("state")


async def test_authorize_refusals_shown_not_redirected(oauth: httpx.AsyncClient) -> None:
    app = await public_app(oauth)
    _verifier, challenge = pkce()
    params = auth_params(app, "patient/*.rs", challenge)
    r = await oauth.get("/oauth/authorize", params={**params, "client_id": "unknown"})
    oauth_error(r, 400, "invalid_client")
    r = await oauth.get("/oauth/authorize", params={**params,
                                                    "redirect_uri": "https://evil.test/cb"})
    oauth_error(r, 400, "invalid_request")
    r = await oauth.get("/oauth/authorize", params={**params, "redirect_uri": None})
    oauth_error(r, 400, "invalid_request")
    r = await oauth.get("/oauth/authorize", params=[*params.items(), ("scope", "x")])
    oauth_error(r, 400, "invalid_request")  # a repeated parameter


async def test_user_denies(oauth: httpx.AsyncClient, people: SimpleNamespace) -> None:
    app = await public_app(oauth)
    _verifier, challenge = pkce()
    params = auth_params(app, "patient/*.rs", challenge)
    back = redirected(await oauth.post("/oauth/authorize", data={
        **params, "user": f"Patient/{people.alice}", "decision": "deny"}))
    assert back == {"error": "access_denied", "error_description": back["error_description"],
                    "state": params["state"]}


async def test_sign_in_refusals_show_the_page_again(oauth: httpx.AsyncClient,
                                                    people: SimpleNamespace) -> None:
    app = await public_app(oauth)
    _verifier, challenge = pkce()
    params = auth_params(app, "user/*.rs", challenge)
    for user in ("", people.roleless, "Patient/nobody", "Organization/" + people.org):
        r = await oauth.post("/oauth/authorize", data={**params, "user": user,
                                                       "decision": "approve"})
        assert r.status_code == 400 and "<form" in r.text, (user, r.text)
    # authorize-post: an app may send the request itself as a form; it gets the page
    page = await oauth.post("/oauth/authorize", data=params)
    assert page.status_code == 200 and "Test app" in page.text


async def test_page_escapes_what_it_shows(oauth: httpx.AsyncClient) -> None:
    app = await public_app(oauth, client_name="<script>alert(1)</script>")
    _verifier, challenge = pkce()
    params = auth_params(app, "user/*.rs", challenge, state='"><b>x')
    page = await oauth.get("/oauth/authorize", params=params)
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    assert '"><b>x' not in page.text
    assert page.headers["x-frame-options"] == "DENY"


async def test_wrong_verifier_is_refused(oauth: httpx.AsyncClient, people: SimpleNamespace) -> None:
    app = await public_app(oauth)
    verifier, challenge = pkce()
    code = await get_code(oauth, app, f"Patient/{people.alice}", "patient/*.rs", challenge)
    other, _ = pkce()
    oauth_error(await exchange(oauth, app, code, other), 400, "invalid_grant")
    oauth_error(await exchange(oauth, app, code, "short"), 400, "invalid_grant")
    oauth_error(await exchange(oauth, app, code, challenge), 400, "invalid_grant")
    r = await oauth.post("/oauth/token", data={"grant_type": "authorization_code", "code": code,
                                               "redirect_uri": REDIRECT, "client_id": app})
    oauth_error(r, 400, "invalid_request")  # no verifier at all
    # a wrong guess does not burn the code: the real verifier still works
    assert (await exchange(oauth, app, code, verifier)).status_code == 200


async def test_replayed_code_is_refused_and_revokes_its_tokens(
        oauth: httpx.AsyncClient, people: SimpleNamespace) -> None:
    app = await public_app(oauth)
    verifier, challenge = pkce()
    code = await get_code(oauth, app, f"Patient/{people.alice}", "patient/*.rs offline_access",
                          challenge)
    first = (await exchange(oauth, app, code, verifier)).json()
    assert (await introspect(oauth, first["access_token"], first["access_token"]))["active"]
    oauth_error(await exchange(oauth, app, code, verifier), 400, "invalid_grant")
    probe = await sign_in(oauth, app, f"Patient/{people.alice}", "patient/*.rs")  # may ask
    assert (await introspect(oauth, first["access_token"], probe["access_token"])) == {
        "active": False}
    r = await oauth.post("/oauth/token", data={"grant_type": "refresh_token", "client_id": app,
                                               "refresh_token": first["refresh_token"]})
    oauth_error(r, 400, "invalid_grant")


async def test_expired_code_is_refused(oauth: httpx.AsyncClient, oauth_app: Any,
                                       people: SimpleNamespace,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    app = await public_app(oauth)
    verifier, challenge = pkce()
    monkeypatch.setattr(oauth_app.state.settings, "auth_code_seconds", -1)
    code = await get_code(oauth, app, f"Patient/{people.alice}", "patient/*.rs", challenge)
    body = oauth_error(await exchange(oauth, app, code, verifier), 400, "invalid_grant")
    assert "expired" in body["error_description"]


async def test_code_is_bound_to_client_and_redirect_uri(oauth: httpx.AsyncClient,
                                                        people: SimpleNamespace) -> None:
    app = await public_app(oauth, redirect_uris=[REDIRECT, "http://127.0.0.1:9999/other"])
    thief = await public_app(oauth)
    verifier, challenge = pkce()
    code = await get_code(oauth, app, f"Patient/{people.alice}", "patient/*.rs", challenge)
    oauth_error(await exchange(oauth, thief, code, verifier), 400, "invalid_grant")
    oauth_error(await exchange(oauth, app, code, verifier, "http://127.0.0.1:9999/other"),
                400, "invalid_grant")
    oauth_error(await exchange(oauth, None, code, verifier), 401, "invalid_client")
    oauth_error(await exchange(oauth, "no-such-client", code, verifier), 401, "invalid_client")
    assert (await exchange(oauth, app, code, verifier)).status_code == 200


async def test_refresh_rotates_and_a_replay_revokes_the_family(
        oauth: httpx.AsyncClient, people: SimpleNamespace) -> None:
    app = await public_app(oauth)
    first = await sign_in(oauth, app, f"Patient/{people.alice}", PATIENT_SCOPES)

    async def refresh(token: str, **extra: str) -> httpx.Response:
        return await oauth.post("/oauth/token", data={"grant_type": "refresh_token",
                                                      "refresh_token": token, "client_id": app,
                                                      **extra})

    r = await refresh(first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["patient"] == people.alice and second["scope"] == PATIENT_SCOPES
    assert (await claims(oauth, second["id_token"]))["aud"] == app
    r = await refresh(second["refresh_token"])
    third = r.json()
    assert (await introspect(oauth, third["access_token"], third["access_token"]))["active"]
    # the first refresh token comes back: stolen; everything of the grant is revoked
    oauth_error(await refresh(first["refresh_token"]), 400, "invalid_grant")
    oauth_error(await refresh(third["refresh_token"]), 400, "invalid_grant")
    probe = await sign_in(oauth, app, f"Patient/{people.alice}", "patient/*.rs")  # may ask
    assert not (await introspect(oauth, third["access_token"], probe["access_token"]))["active"]


async def test_refresh_scope_may_narrow_not_widen(oauth: httpx.AsyncClient,
                                                  people: SimpleNamespace) -> None:
    app = await public_app(oauth)
    first = await sign_in(oauth, app, f"Patient/{people.alice}", PATIENT_SCOPES)
    data = {"grant_type": "refresh_token", "client_id": app}
    wide = await oauth.post("/oauth/token", data={**data, "refresh_token": first[
        "refresh_token"], "scope": "patient/*.cruds offline_access"})
    oauth_error(wide, 400, "invalid_scope")
    narrow = await oauth.post("/oauth/token", data={**data, "refresh_token": first[
        "refresh_token"], "scope": "patient/*.rs offline_access"})
    assert narrow.status_code == 200, narrow.text
    assert set(narrow.json()["scope"].split()) == {"patient/*.rs", "offline_access"}
    other = await public_app(oauth)
    stolen = await oauth.post("/oauth/token", data={**data, "client_id": other,
                                                    "refresh_token": narrow.json()[
                                                        "refresh_token"]})
    oauth_error(stolen, 400, "invalid_grant")
    oauth_error(await oauth.post("/oauth/token", data={**data, "refresh_token": "made-up"}),
                400, "invalid_grant")


async def test_offline_access_needs_the_refresh_grant(oauth: httpx.AsyncClient,
                                                      people: SimpleNamespace) -> None:
    app = await public_app(oauth, grant_types=["authorization_code"])
    token = await sign_in(oauth, app, f"Patient/{people.alice}", PATIENT_SCOPES)
    assert "refresh_token" not in token and "offline_access" not in token["scope"]


async def test_registered_scope_limits_what_is_granted(oauth: httpx.AsyncClient,
                                                       people: SimpleNamespace) -> None:
    app = await public_app(oauth, scope="launch/patient patient/Observation.rs openid")
    token = await sign_in(oauth, app, f"Patient/{people.alice}",
                          "launch/patient patient/*.rs patient/Observation.r openid fhirUser")
    assert token["scope"] == "launch/patient patient/Observation.r openid"
