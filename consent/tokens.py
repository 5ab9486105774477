"""Tokens: the access tokens and id tokens this server signs, and the bearer tokens it accepts.

Access tokens are JWTs in the shape of RFC 9068 (header `typ: at+jwt`) with the SMART launch
context as claims (https://hl7.org/fhir/smart-app-launch/app-launch.html#response-5):

    iss  this authorisation server          aud  the FHIR base (the resource server)
    sub  "Practitioner/1", "Patient/2" or a backend client's id
    client_id, scope, jti, iat, exp, and when there is one: patient, encounter, fhirUser

A bearer token is accepted when it is one of ours (signature by one of our keys, iss, aud,
exp, not revoked) or when it comes from a trusted OpenID Connect provider (`TrustedIssuer`:
signature by the provider's JWKS, iss, aud, exp), whose identifier claim (an NHS number, a
staff identifier) names the Patient or Practitioner in the store. Either way the answer is a
`Caller`: who authenticated, with which scopes and launch context. The access policy builds
its `consent.principals.Principal` from it (roles, organisations, relationships).
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx
import orjson
import sqlalchemy as sa
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.ext.asyncio import AsyncConnection

from consent import users
from consent.keys import ALG, SigningKeys
from consent.oauth_errors import InvalidTokenError, error
from consent.oauth_schema import oauth_revoked
from consent.scopes import Scopes, parse
from consent.trust import TrustedIssuer

ACCESS_TOKEN_TYPE = "at+jwt"
LEEWAY = 30  # seconds of clock skew allowed on exp/nbf/iat


@dataclass(slots=True)
class Grant:
    """What a user (or backend client) authorised: stored with codes and refresh tokens."""

    subject: str  # the `sub`: "Practitioner/1", "Patient/2", or a backend client's id
    scope: str
    fhir_user: str | None = None  # "Practitioner/1" (relative to the FHIR base)
    patient: str | None = None
    encounter: str | None = None
    nonce: str | None = None
    auth_time: float | None = None
    need_patient_banner: bool | None = None

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> Grant:
        return cls(**orjson.loads(text))


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    jti: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a bearer token authenticates, with its scopes and launch context."""

    kind: Literal["patient", "practitioner", "system"]
    subject: str
    scopes: Scopes
    fhir_user: str | None = None  # "Patient/2", "Practitioner/1"; None for a backend client
    patient: str | None = None  # the patient in context (launch, or a patient's own record)
    encounter: str | None = None
    client_id: str | None = None
    issuer: str = ""
    token_id: str | None = None  # jti
    expires_at: float = 0.0
    claims: dict[str, Any] = field(default_factory=dict)


Fetch = Callable[[str], Awaitable[dict[str, Any]]]


async def fetch_json(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5, follow_redirects=False) as client:
        response = await client.get(url, headers={"accept": "application/json"})
        response.raise_for_status()
        data = response.json()
    if not isinstance(data, dict):
        raise ValueError(f"{url} did not return a JSON object")
    return data


class JwksCache:
    """Key sets fetched by URL, kept for `ttl` seconds.

    A kid the cached set lacks (the owner rotated its keys) fetches the set again, but not
    within `refetch_after` seconds of the last fetch: made-up kids cannot hammer the owner.
    """

    def __init__(self, fetch: Fetch = fetch_json, ttl: float = 3600,
                 refetch_after: float = 30) -> None:
        self.fetch, self.ttl, self.refetch_after = fetch, ttl, refetch_after
        self._sets: dict[str, tuple[float, KeySet]] = {}

    async def get(self, url: str, kid: str | None = None) -> KeySet:
        now = time.time()
        cached = self._sets.get(url)
        if cached is not None and now - cached[0] < self.ttl and (
                kid is None or any(k.kid == kid for k in cached[1].keys)
                or now - cached[0] < self.refetch_after):
            return cached[1]
        try:
            keys = KeySet.import_key_set(await self.fetch(url))  # type: ignore[arg-type]
        except (httpx.HTTPError, ValueError, JoseError, TypeError, KeyError) as exc:
            if cached is not None:  # a provider blip must not stop everyone: keep the old set
                return cached[1]
            raise error(InvalidTokenError, f"The keys of the token's issuer are unavailable "
                        f"({type(exc).__name__}).") from None
        self._sets[url] = (now, keys)
        return keys


def new_jti() -> str:
    return uuid.uuid4().hex


def issue_access_token(keys: SigningKeys, *, issuer: str, audience: str, client_id: str,
                       grant: Grant, lifetime: int, fhir_base: str,
                       now: float | None = None) -> Issued:
    """A signed access token for `grant`, valid `lifetime` seconds."""
    now = time.time() if now is None else now
    jti = new_jti()
    exp = int(now) + lifetime
    claims: dict[str, Any] = {"iss": issuer, "sub": grant.subject, "aud": audience,
                              "client_id": client_id, "scope": grant.scope, "jti": jti,
                              "iat": int(now), "exp": exp}
    if grant.patient:
        claims["patient"] = grant.patient
    if grant.encounter:
        claims["encounter"] = grant.encounter
    if grant.fhir_user:
        claims["fhirUser"] = f"{fhir_base}/{grant.fhir_user}"
    header = {"alg": ALG, "kid": keys.current.kid, "typ": ACCESS_TOKEN_TYPE}
    return Issued(jwt.encode(header, claims, keys.current, algorithms=[ALG]), jti, exp)


def issue_id_token(keys: SigningKeys, *, issuer: str, client_id: str, grant: Grant,
                   lifetime: int, fhir_base: str, access_token: str,
                   now: float | None = None) -> str:
    """An OpenID Connect id token for the signed-in user, with SMART's fhirUser claim."""
    now = time.time() if now is None else now
    digest = hashlib.sha256(access_token.encode()).digest()
    claims: dict[str, Any] = {
        "iss": issuer, "sub": grant.subject, "aud": client_id, "iat": int(now),
        "exp": int(now) + lifetime,
        "at_hash": base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode(),
    }
    if grant.auth_time is not None:
        claims["auth_time"] = int(grant.auth_time)
    if grant.nonce:
        claims["nonce"] = grant.nonce
    if grant.fhir_user and "fhirUser" in parse(grant.scope):
        claims["fhirUser"] = f"{fhir_base}/{grant.fhir_user}"
    header = {"alg": ALG, "kid": keys.current.kid, "typ": "JWT"}
    return jwt.encode(header, claims, keys.current, algorithms=[ALG])


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, read without checking anything (to route it)."""
    try:
        compact = jws.extract_compact(token.encode())
        claims = orjson.loads(compact.payload)
    except (JoseError, ValueError, TypeError, orjson.JSONDecodeError):
        raise error(InvalidTokenError, "The token is not a signed JWT.") from None
    if not isinstance(claims, dict):
        raise error(InvalidTokenError, "The token's payload is not a JSON object.")
    return dict(compact.headers()), claims


def verify(token: str, keys: KeySet, *, issuer: str, audience: str, algorithms: list[str],
           typ: str | None = None, now: float | None = None) -> dict[str, Any]:
    """The claims of `token` once its signature, iss, aud, exp (and nbf/iat) check out."""
    try:
        decoded = jwt.decode(token, keys, algorithms=algorithms)
    except JoseError as exc:
        raise error(InvalidTokenError, f"The token's signature does not verify "
                    f"({exc.error}).") from None
    except (ValueError, TypeError):
        raise error(InvalidTokenError, "The token is malformed.") from None
    if typ is not None and str(decoded.header.get("typ", "")).lower() != typ:
        raise error(InvalidTokenError, f"The token is not of type {typ}.")
    claims = decoded.claims
    registry = jwt.JWTClaimsRegistry(
        now=int(time.time() if now is None else now), leeway=LEEWAY,
        iss={"essential": True, "value": issuer}, aud={"essential": True, "value": audience},
        exp={"essential": True})
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise error(InvalidTokenError, _claim_problem(exc)) from None
    return claims


def _claim_problem(exc: JoseError) -> str:
    text = (exc.description or exc.error or "").lower()
    if "expire" in text:
        return "The token has expired."
    if "aud" in text:
        return "The token is not meant for this server (aud)."
    if "iss" in text:
        return "The token comes from another issuer (iss)."
    return f"The token's claims are not acceptable ({exc.error})."


def verify_access_token(token: str, keys: SigningKeys, *, issuer: str, audience: str,
                        now: float | None = None) -> dict[str, Any]:
    """The claims of one of our access tokens (revocation is checked by `principal`)."""
    claims = verify(token, keys.verify, issuer=issuer, audience=audience, algorithms=[ALG],
                    typ=ACCESS_TOKEN_TYPE, now=now)
    for name in ("jti", "sub", "client_id", "scope"):
        if not isinstance(claims.get(name), str):
            raise error(InvalidTokenError, f"The token has no {name} claim.")
    return claims


async def is_revoked(conn: AsyncConnection, jti: str) -> bool:
    found = await conn.execute(sa.select(oauth_revoked.c.jti).where(oauth_revoked.c.jti == jti))
    return found.first() is not None


async def revoke(conn: AsyncConnection, jti: str, expires_at: float) -> None:
    """Put an access token on the revocation list until it would have expired anyway."""
    if await is_revoked(conn, jti):
        return
    # Entries whose token has expired anyway serve no purpose any more.
    await conn.execute(oauth_revoked.delete().where(oauth_revoked.c.expires_at < time.time()
                                                    - LEEWAY))
    await conn.execute(oauth_revoked.insert().values(jti=jti, expires_at=expires_at))


def caller_of(claims: dict[str, Any]) -> Caller:
    """The caller one of our (verified) access tokens speaks for."""
    fhir_user = claims.get("fhirUser")
    relative = None
    if isinstance(fhir_user, str) and (parts := users.split_reference(fhir_user)):
        relative = f"{parts[0]}/{parts[1]}"
    sub = claims["sub"]
    if sub.startswith("Patient/"):
        kind: Literal["patient", "practitioner", "system"] = "patient"
    elif sub.startswith("Practitioner/"):
        kind = "practitioner"
    else:
        kind = "system"
    return Caller(kind=kind, subject=sub, scopes=parse(claims["scope"]),
                  fhir_user=relative, patient=claims.get("patient"),
                  encounter=claims.get("encounter"), client_id=claims["client_id"],
                  issuer=claims["iss"], token_id=claims["jti"],
                  expires_at=float(claims["exp"]), claims=claims)


async def verify_external(token: str, trusted: list[TrustedIssuer], cache: JwksCache,
                          now: float | None = None) -> tuple[TrustedIssuer, dict[str, Any]]:
    """A trusted provider's token, verified against that provider's keys."""
    header, claims = unverified(token)
    config = next((t for t in trusted if t.issuer == claims.get("iss")), None)
    if config is None:
        raise error(InvalidTokenError, "The token's issuer is not trusted here.")
    if config.jwks is not None:
        try:
            keys = KeySet.import_key_set(config.jwks)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise error(InvalidTokenError, "The trusted issuer's configured keys are "
                        "unusable.") from None
    else:
        assert config.jwks_url is not None
        keys = await cache.get(config.jwks_url, header.get("kid"))
    verified = verify(token, keys, issuer=config.issuer, audience=config.audience,
                      algorithms=config.algorithms, now=now)
    return config, verified


async def external_caller(conn: AsyncConnection, config: TrustedIssuer,
                          claims: dict[str, Any]) -> Caller:
    """The Patient or Practitioner an external provider's token names by its identifier claim."""
    value = claims.get(config.claim)
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise error(InvalidTokenError, f"The token has no {config.claim} claim.")
    value = str(value).replace(" ", "")
    type_ = "Patient" if config.kind == "patient" else "Practitioner"
    ids = await users.find_by_identifier(conn, type_, config.system, value)
    if len(ids) != 1:
        why = "No" if not ids else "More than one"
        raise error(InvalidTokenError, f"{why} {type_} has the identifier in the token's "
                    f"{config.claim} claim.")
    user = await users.lookup(conn, f"{type_}/{ids[0]}")
    if user is None:
        raise error(InvalidTokenError, f"{type_}/{ids[0]} may not sign in (inactive, or "
                    "staff without a PractitionerRole).")
    jti = claims.get("jti")
    return Caller(kind=user.kind, subject=user.reference,
                  scopes=parse(config.granted_scope()), fhir_user=user.reference,
                  patient=user.id if user.kind == "patient" else None, client_id=None,
                  issuer=config.issuer, token_id=jti if isinstance(jti, str) else None,
                  expires_at=float(claims["exp"]), claims=claims)


async def caller(conn: AsyncConnection, token: str, *, keys: SigningKeys, issuer: str,
                 audience: str, trusted: list[TrustedIssuer], cache: JwksCache,
                 now: float | None = None) -> Caller:
    """The caller a bearer token speaks for, or InvalidTokenError (401)."""
    _header, claims = unverified(token)
    if claims.get("iss") == issuer:
        verified = verify_access_token(token, keys, issuer=issuer, audience=audience, now=now)
        if await is_revoked(conn, verified["jti"]):
            raise error(InvalidTokenError, "The token has been revoked.")
        return caller_of(verified)
    config, verified = await verify_external(token, trusted, cache, now)
    return await external_caller(conn, config, verified)
