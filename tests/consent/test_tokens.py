"""Access and id tokens without a database: issue, verify, and every way to be refused."""

from __future__ import annotations

import base64
import time

import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from consent import keys as keys_module
from consent.keys import SigningKeys
from consent.oauth_errors import InvalidTokenError, OAuth2Error
from consent.tokens import (
    Grant,
    JwksCache,
    caller_of,
    issue_access_token,
    issue_id_token,
    unverified,
    verify_access_token,
)

ISS, FHIR = "https://carenet.test", "https://carenet.test/fhir"


def signing(key: RSAKey | None = None) -> SigningKeys:
    key = key or keys_module.new_key()
    return SigningKeys(current=key, verify=KeySet([RSAKey.import_key(key.as_dict(private=False))]))


@pytest.fixture(scope="module")
def ours() -> SigningKeys:
    return signing()


GRANT = Grant(subject="Practitioner/p1", scope="launch openid fhirUser patient/*.rs",
              fhir_user="Practitioner/p1", patient="pat1", encounter="enc1", nonce="n-1",
              auth_time=1_700_000_000, need_patient_banner=False)


def access(keys: SigningKeys, *, now: float | None = None, audience: str = FHIR,
           issuer: str = ISS, lifetime: int = 300) -> str:
    return issue_access_token(keys, issuer=issuer, audience=audience, client_id="app",
                              grant=GRANT, lifetime=lifetime, fhir_base=FHIR, now=now).token


def refused(token: str, keys: SigningKeys, text: str, **kw: object) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        verify_access_token(token, keys, issuer=ISS, audience=FHIR, **kw)  # type: ignore[arg-type]
    assert caught.value.status_code == 401
    assert text in (caught.value.description or ""), caught.value.description


def test_access_token_carries_the_smart_context(ours: SigningKeys) -> None:
    token = access(ours)
    header, _ = unverified(token)
    assert header == {"alg": "RS256", "kid": ours.current.kid, "typ": "at+jwt"}
    claims = verify_access_token(token, ours, issuer=ISS, audience=FHIR)
    assert claims["sub"] == "Practitioner/p1" and claims["aud"] == FHIR
    assert claims["iss"] == ISS and claims["client_id"] == "app"
    assert claims["scope"] == GRANT.scope
    assert (claims["patient"], claims["encounter"]) == ("pat1", "enc1")
    assert claims["fhirUser"] == f"{FHIR}/Practitioner/p1"
    assert claims["exp"] - claims["iat"] == 300 and len(claims["jti"]) == 32
    who = caller_of(claims)
    assert (who.kind, who.fhir_user, who.patient, who.client_id) == (
        "practitioner", "Practitioner/p1", "pat1", "app")
    assert "patient/*.rs" in who.scopes


def test_each_token_has_its_own_jti(ours: SigningKeys) -> None:
    ids = {unverified(access(ours))[1]["jti"] for _ in range(5)}
    assert len(ids) == 5


def test_expired_token_is_refused(ours: SigningKeys) -> None:
    refused(access(ours, now=time.time() - 3600), ours, "expired")


def test_token_for_another_audience_is_refused(ours: SigningKeys) -> None:
    refused(access(ours, audience="https://elsewhere.test/fhir"), ours, "aud")


def test_token_from_another_issuer_is_refused(ours: SigningKeys) -> None:
    refused(access(ours, issuer="https://evil.test"), ours, "iss")


def test_forged_signature_is_refused(ours: SigningKeys) -> None:
    """Signed by another key that claims our key's kid."""
    other = keys_module.new_key()
    forger = RSAKey.import_key({**other.as_dict(private=True), "kid": ours.current.kid})
    refused(access(signing(forger)), ours, "signature")


def test_token_of_an_unknown_key_is_refused(ours: SigningKeys) -> None:
    refused(access(signing()), ours, "signature")


def test_tampered_payload_is_refused(ours: SigningKeys) -> None:
    header, payload, signature = access(ours).split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "user/*.cruds"
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    refused(f"{header}.{forged}.{signature}", ours, "signature")


def test_alg_none_is_refused(ours: SigningKeys) -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()
    payload = access(ours).split(".")[1]
    refused(f"{header}.{payload}.", ours, "")


def test_id_token_is_not_an_access_token(ours: SigningKeys) -> None:
    token = access(ours)
    id_token = issue_id_token(ours, issuer=ISS, client_id="app", grant=GRANT, lifetime=300,
                              fhir_base=FHIR, access_token=token)
    claims = jwt.decode(id_token, ours.verify, algorithms=["RS256"]).claims
    assert claims["aud"] == "app" and claims["nonce"] == "n-1"
    assert claims["fhirUser"] == f"{FHIR}/Practitioner/p1"
    assert claims["auth_time"] == 1_700_000_000 and claims["at_hash"]
    with pytest.raises(OAuth2Error):
        verify_access_token(id_token, ours, issuer=ISS, audience="app")


@pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "a.b", "....", "eyJ9.eyJ9.x"])
def test_junk_is_refused(ours: SigningKeys, junk: str) -> None:
    with pytest.raises(InvalidTokenError):
        verify_access_token(junk, ours, issuer=ISS, audience=FHIR)


def test_grant_round_trips_as_json() -> None:
    assert Grant.from_json(GRANT.to_json()) == GRANT


async def test_jwks_cache_refetches_for_new_kids_but_not_too_often() -> None:
    first, second = keys_module.new_key(), keys_module.new_key()
    served = {"keys": [first.as_dict(private=False)]}
    calls: list[str] = []

    async def fetch(url: str) -> dict[str, object]:
        calls.append(url)
        if served is None:
            raise ValueError("unreachable")
        return served

    cache = JwksCache(fetch=fetch, ttl=3600, refetch_after=0)
    assert (await cache.get("u", first.kid)).keys[0].kid == first.kid
    assert (await cache.get("u", first.kid)).keys[0].kid == first.kid
    assert len(calls) == 1  # cached
    served = {"keys": [second.as_dict(private=False)]}
    assert (await cache.get("u", second.kid)).keys[0].kid == second.kid
    assert len(calls) == 2  # a new kid: fetched again
    throttled = JwksCache(fetch=fetch, ttl=3600, refetch_after=60)
    await throttled.get("u")
    await throttled.get("u", "made-up")
    await throttled.get("u", "made-up-too")
    assert len(calls) == 3  # unknown kids within a minute of a fetch: no new fetch
    served = None
    assert (await cache.get("u", "other")).keys[0].kid == second.kid  # the owner is down
    with pytest.raises(InvalidTokenError):
        await JwksCache(fetch=fetch).get("v")
