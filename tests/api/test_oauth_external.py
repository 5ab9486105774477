"""Trusted external OpenID Connect providers (keys made locally, no network): a patient's
NHS number claim and a member of staff's identifier claim name them in the store."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from consent import tokens
from consent.keys import KeyRing
from consent.oauth_errors import InvalidTokenError
from tests.api.oauth_support import (
    PATIENT_IDP,
    PATIENT_IDP_AUDIENCE,
    PATIENT_IDP_KEY,
    STAFF_IDP,
    STAFF_IDP_KEY,
    auth_params,
    exchange,
    external_token,
    new_key,
    oauth_error,
    pkce,
    public_app,
    redirected,
)


async def caller(app: Any, token: str) -> tokens.Caller:
    """What the FHIR layer will get for a bearer token (consent.tokens.caller)."""
    settings = app.state.settings
    app.state.oauth_keys = getattr(app.state, "oauth_keys", None) or KeyRing()
    keys = await app.state.oauth_keys.get(app.state.db)
    async with app.state.db.read() as conn:
        return await tokens.caller(conn, token, keys=keys, issuer="http://test",
                                   audience="http://test/fhir",
                                   trusted=settings.trusted_issuers, cache=app.state.jwks_cache)


def patient_idp_token(nhs: str | None, **extra: Any) -> str:
    claims = {"nhs_number": nhs} if nhs is not None else {}
    return external_token(PATIENT_IDP_KEY, PATIENT_IDP, PATIENT_IDP_AUDIENCE,
                          **{**claims, **extra})


async def test_patient_token_maps_nhs_number_to_patient(oauth_app: Any,
                                                        people: SimpleNamespace) -> None:
    who = await caller(oauth_app, patient_idp_token(people.alice_nhs))
    assert (who.kind, who.fhir_user, who.patient) == (
        "patient", f"Patient/{people.alice}", people.alice)
    assert who.issuer == PATIENT_IDP and "patient/*.rs" in who.scopes
    spaced = f"{people.alice_nhs[:3]} {people.alice_nhs[3:6]} {people.alice_nhs[6:]}"
    assert (await caller(oauth_app, patient_idp_token(spaced))).patient == people.alice


async def test_staff_token_by_jwks_url(oauth_app: Any, people: SimpleNamespace) -> None:
    token = external_token(STAFF_IDP_KEY, STAFF_IDP, "carenet", sds_user_id=people.gp_sds)
    who = await caller(oauth_app, token)
    assert (who.kind, who.fhir_user, who.patient) == ("practitioner", people.gp, None)
    assert "user/*.rs" in who.scopes


@pytest.mark.parametrize("case", ["wrong audience", "expired", "untrusted issuer",
                                  "other key", "unknown NHS number", "no claim",
                                  "tampered", "unsigned"])
async def test_external_token_refusals(oauth_app: Any, people: SimpleNamespace,
                                       case: str) -> None:
    nhs = people.alice_nhs
    token = {
        "wrong audience": lambda: external_token(PATIENT_IDP_KEY, PATIENT_IDP, "someone-else",
                                                 nhs_number=nhs),
        "expired": lambda: external_token(PATIENT_IDP_KEY, PATIENT_IDP, PATIENT_IDP_AUDIENCE,
                                          lifetime=-600, nhs_number=nhs),
        "untrusted issuer": lambda: external_token(PATIENT_IDP_KEY, "https://evil.test",
                                                   PATIENT_IDP_AUDIENCE, nhs_number=nhs),
        "other key": lambda: external_token(new_key("RS256"), PATIENT_IDP,
                                            PATIENT_IDP_AUDIENCE, nhs_number=nhs),
        "unknown NHS number": lambda: patient_idp_token("9434765919"),
        "no claim": lambda: patient_idp_token(None),
        "tampered": lambda: _tamper(patient_idp_token("9434765919"), nhs),
        "unsigned": lambda: patient_idp_token(nhs).rsplit(".", 1)[0] + ".",
    }[case]()
    with pytest.raises(InvalidTokenError):
        await caller(oauth_app, token)


def _tamper(token: str, nhs: str) -> str:
    import base64

    import orjson

    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["nhs_number"] = nhs
    body = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


async def test_sign_in_with_a_provider_token(oauth: httpx.AsyncClient,
                                             people: SimpleNamespace) -> None:
    """The portal hands the provider's id token to the sign-in page instead of a demo user."""
    app = await public_app(oauth)
    verifier, challenge = pkce()
    params = auth_params(app, "launch/patient patient/*.rs openid fhirUser", challenge)
    r = await oauth.post("/oauth/authorize", data={
        **params, "external_token": patient_idp_token(people.alice_nhs), "decision": "approve"})
    code = redirected(r)["code"]
    token = (await exchange(oauth, app, code, verifier)).json()
    assert token["patient"] == people.alice
    refused = await oauth.post("/oauth/authorize", data={
        **params, "external_token": patient_idp_token("9434765919"), "decision": "approve"})
    assert refused.status_code == 400 and "refused" in refused.text


async def test_staff_provider_token_launches(oauth: httpx.AsyncClient,
                                             people: SimpleNamespace) -> None:
    token = external_token(STAFF_IDP_KEY, STAFF_IDP, "carenet", sds_user_id=people.gp_sds)
    r = await oauth.post("/oauth/launch", json={"patient": people.alice},
                         headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    nobody = external_token(STAFF_IDP_KEY, STAFF_IDP, "carenet", sds_user_id="000")
    r = await oauth.post("/oauth/launch", json={"patient": people.alice},
                         headers={"authorization": f"Bearer {nobody}"})
    oauth_error(r, 401, "invalid_token")
