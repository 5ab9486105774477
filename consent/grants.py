"""The token endpoint's grants, token introspection (RFC 7662) and revocation (RFC 7009).

- authorization_code (RFC 6749 4.1.3) with the PKCE verifier (RFC 7636 4.5, S256);
- refresh_token (RFC 6749 6) with rotation: each use returns a new refresh token; using an
  old one again is taken as theft and revokes the whole family and its access tokens
  (OAuth 2.0 Security BCP, refresh token rotation);
- client_credentials for SMART Backend Services with a private_key_jwt client
  (https://hl7.org/fhir/smart-app-launch/backend-services.html), system/ scopes only.

A replayed authorization code is refused and what it was exchanged for is revoked
(RFC 6749 4.1.2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy.ext.asyncio import AsyncConnection

from consent import authorize, clients, tokens
from consent.keys import SigningKeys
from consent.oauth_errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    UnsupportedTokenTypeError,
    error,
)
from consent.oauth_schema import oauth_code, oauth_refresh
from consent.scopes import parse

VERIFIER = authorize.CHALLENGE  # RFC 7636 4.1: 43 to 128 unreserved characters


@dataclass(frozen=True, slots=True)
class Issuer:
    """What signing needs to know about this server, for one request."""

    keys: SigningKeys
    issuer: str  # the authorisation server (iss)
    fhir_base: str  # the resource server (aud)
    token_url: str
    access_lifetime: int
    refresh_lifetime: int
    id_token_lifetime: int
    cache: tokens.JwksCache


async def token(conn: AsyncConnection, form: dict[str, str], issuer: Issuer,
                now: float | None = None) -> dict[str, Any]:
    """Answer a token request: the RFC 6749 5.1 response, or an OAuth2Error."""
    now = time.time() if now is None else now
    grant_type = form.get("grant_type")
    if not grant_type:
        raise error(InvalidRequestError, "grant_type is required.")
    if grant_type not in clients.GRANT_TYPES:
        raise error(UnsupportedGrantTypeError, f"grant_type {grant_type} is not supported.")
    client = await clients.authenticate(conn, form, token_url=issuer.token_url,
                                        cache=issuer.cache, now=now)
    if grant_type not in client.grant_types:
        raise error(UnauthorizedClientError, f"The client did not register the {grant_type} "
                    "grant.")
    if grant_type == "authorization_code":
        return await _authorization_code(conn, form, client, issuer, now)
    if grant_type == "refresh_token":
        return await _refresh(conn, form, client, issuer, now)
    return await _client_credentials(form, client, issuer, now)


async def _authorization_code(conn: AsyncConnection, form: dict[str, str],
                              client: clients.Client, issuer: Issuer,
                              now: float) -> dict[str, Any]:
    code, redirect_uri, verifier = (form.get("code"), form.get("redirect_uri"),
                                    form.get("code_verifier"))
    if not code or not redirect_uri:
        raise error(InvalidRequestError, "code and redirect_uri are required.")
    if not verifier:
        raise error(InvalidRequestError, "code_verifier is required (PKCE).")
    code_hash = authorize.digest(code)
    row = (await conn.execute(sa.select(oauth_code).where(oauth_code.c.code_hash == code_hash))
           ).mappings().first()
    if row is None or row["client_id"] != client.client_id:
        raise error(InvalidGrantError, "The authorization code is not valid for this client.")
    if row["used_at"] is not None:
        await _revoke_code_tokens(conn, row, now, issuer.access_lifetime)
        raise error(InvalidGrantError, "The authorization code was used before; the tokens "
                    "issued for it are revoked.")
    if row["expires_at"] < now:
        raise error(InvalidGrantError, "The authorization code has expired.")
    if row["redirect_uri"] != redirect_uri:
        raise error(InvalidGrantError, "redirect_uri differs from the authorization request's.")
    if not VERIFIER.match(verifier) or create_s256_code_challenge(verifier) != row[
            "code_challenge"]:
        raise error(InvalidGrantError, "The code_verifier does not match the code_challenge.")
    used = await conn.execute(oauth_code.update().where(
        oauth_code.c.code_hash == code_hash, oauth_code.c.used_at.is_(None)).values(used_at=now))
    if used.rowcount != 1:  # another request redeemed it a moment ago
        raise error(InvalidGrantError, "The authorization code was used before.")
    grant = tokens.Grant.from_json(row["grant"])
    response, access, family = await _issue(conn, client, grant, issuer, now)
    await conn.execute(oauth_code.update().where(oauth_code.c.code_hash == code_hash)
                       .values(access_jti=access.jti, family=family))
    return response


async def _refresh(conn: AsyncConnection, form: dict[str, str], client: clients.Client,
                   issuer: Issuer, now: float) -> dict[str, Any]:
    presented = form.get("refresh_token")
    if not presented:
        raise error(InvalidRequestError, "refresh_token is required.")
    token_hash = authorize.digest(presented)
    row = (await conn.execute(sa.select(oauth_refresh)
                              .where(oauth_refresh.c.token_hash == token_hash))
           ).mappings().first()
    if row is None or row["client_id"] != client.client_id:
        raise error(InvalidGrantError, "The refresh token is not valid for this client.")
    if row["revoked"]:
        raise error(InvalidGrantError, "The refresh token has been revoked.")
    if row["used_at"] is not None:
        await revoke_family(conn, row["family"], now)
        raise error(InvalidGrantError, "The refresh token was used before; every token of "
                    "this grant is revoked.")
    if row["expires_at"] < now:
        raise error(InvalidGrantError, "The refresh token has expired.")
    grant = tokens.Grant.from_json(row["grant"])
    if form.get("scope"):  # RFC 6749 6: a narrower scope may be asked for, never a wider one
        asked, had = parse(form["scope"]), set(grant.scope.split())
        if asked.invalid or not set(asked.texts()) <= had:
            raise error(InvalidScopeError, "A refresh may only narrow the granted scope.")
        grant.scope = " ".join(t for t in grant.scope.split() if t in set(asked.texts()))
    used = await conn.execute(oauth_refresh.update().where(
        oauth_refresh.c.token_hash == token_hash, oauth_refresh.c.used_at.is_(None),
        oauth_refresh.c.revoked.is_(False)).values(used_at=now))
    if used.rowcount != 1:  # a concurrent use of the same token: a replay
        await revoke_family(conn, row["family"], now)
        raise error(InvalidGrantError, "The refresh token was used before.")
    response, _access, _family = await _issue(conn, client, grant, issuer, now,
                                              family=row["family"])
    return response


async def _client_credentials(form: dict[str, str], client: clients.Client, issuer: Issuer,
                              now: float) -> dict[str, Any]:
    if client.public:
        raise error(UnauthorizedClientError, "client_credentials needs a confidential client.")
    asked = parse(form.get("scope", ""))
    if asked.invalid:
        raise error(InvalidScopeError, f"Unknown scopes: {' '.join(asked.invalid)}.")
    allowed = parse(client.scope) if client.scope is not None else None
    granted = [s for s in asked.resources if s.context == "system"
               and (allowed is None or authorize.within(s, allowed))]
    if not granted:
        raise error(InvalidScopeError, "Backend services get system/ scopes: ask for at least "
                    "one the client may have.")
    scope = " ".join(s.text for s in granted)
    grant = tokens.Grant(subject=client.client_id, scope=scope)
    access = tokens.issue_access_token(issuer.keys, issuer=issuer.issuer,
                                       audience=issuer.fhir_base, client_id=client.client_id,
                                       grant=grant, lifetime=issuer.access_lifetime,
                                       fhir_base=issuer.fhir_base, now=now)
    return {"access_token": access.token, "token_type": "Bearer",
            "expires_in": issuer.access_lifetime, "scope": scope}


async def _issue(conn: AsyncConnection, client: clients.Client, grant: tokens.Grant,
                 issuer: Issuer, now: float, family: str | None = None,
                 ) -> tuple[dict[str, Any], tokens.Issued, str | None]:
    """Access token, and as the scopes ask, a rotated refresh token and an id token."""
    access = tokens.issue_access_token(issuer.keys, issuer=issuer.issuer,
                                       audience=issuer.fhir_base, client_id=client.client_id,
                                       grant=grant, lifetime=issuer.access_lifetime,
                                       fhir_base=issuer.fhir_base, now=now)
    scopes = parse(grant.scope)
    response: dict[str, Any] = {"access_token": access.token, "token_type": "Bearer",
                                "expires_in": issuer.access_lifetime, "scope": grant.scope}
    if "offline_access" in scopes:
        family = family or tokens.new_jti()
        refresh = authorize.new_secret()
        await conn.execute(oauth_refresh.delete().where(oauth_refresh.c.expires_at < now))
        await conn.execute(oauth_refresh.insert().values(
            token_hash=authorize.digest(refresh), family=family, client_id=client.client_id,
            grant=grant.to_json(), expires_at=now + issuer.refresh_lifetime, used_at=None,
            revoked=False, access_jti=access.jti, access_expires_at=access.expires_at))
        response["refresh_token"] = refresh
    else:
        family = None
    if "openid" in scopes:
        response["id_token"] = tokens.issue_id_token(
            issuer.keys, issuer=issuer.issuer, client_id=client.client_id, grant=grant,
            lifetime=issuer.id_token_lifetime, fhir_base=issuer.fhir_base,
            access_token=access.token, now=now)
    if grant.patient:
        response["patient"] = grant.patient
    if grant.encounter:
        response["encounter"] = grant.encounter
    if grant.need_patient_banner is not None:
        response["need_patient_banner"] = grant.need_patient_banner
    return response, access, family


async def revoke_family(conn: AsyncConnection, family: str, now: float) -> None:
    """Revoke every refresh token of a grant and the live access tokens issued with them."""
    rows = (await conn.execute(
        sa.select(oauth_refresh.c.access_jti, oauth_refresh.c.access_expires_at)
        .where(oauth_refresh.c.family == family))).all()
    await conn.execute(oauth_refresh.update().where(oauth_refresh.c.family == family)
                       .values(revoked=True))
    for jti, exp in rows:
        if jti and exp and exp > now:
            await tokens.revoke(conn, jti, exp)


async def _revoke_code_tokens(conn: AsyncConnection, row: Any, now: float,
                              access_lifetime: int) -> None:
    if row["family"]:
        await revoke_family(conn, row["family"], now)
    if row["access_jti"]:  # issued when the code was redeemed
        await tokens.revoke(conn, row["access_jti"], row["used_at"] + access_lifetime + 1)


async def introspect(conn: AsyncConnection, token_value: str, issuer: Issuer,
                     now: float | None = None) -> dict[str, Any]:
    """RFC 7662 2.2: what the token is, or only {"active": false}."""
    now = time.time() if now is None else now
    if token_value.count(".") == 2:
        try:
            claims = tokens.verify_access_token(token_value, issuer.keys, issuer=issuer.issuer,
                                                audience=issuer.fhir_base, now=now)
        except OAuth2Error:
            return {"active": False}
        if await tokens.is_revoked(conn, claims["jti"]):
            return {"active": False}
        out = {"active": True, "token_type": "Bearer"}
        for name in ("scope", "client_id", "sub", "exp", "iat", "iss", "aud", "jti", "patient",
                     "encounter", "fhirUser"):
            if name in claims:
                out[name] = claims[name]
        return out
    row = (await conn.execute(sa.select(oauth_refresh).where(
        oauth_refresh.c.token_hash == authorize.digest(token_value)))).mappings().first()
    if row is None or row["revoked"] or row["used_at"] is not None or row["expires_at"] < now:
        return {"active": False}
    grant = tokens.Grant.from_json(row["grant"])
    out = {"active": True, "token_type": "refresh_token", "client_id": row["client_id"],
           "scope": grant.scope, "sub": grant.subject, "exp": int(row["expires_at"]),
           "iss": issuer.issuer}
    if grant.patient:
        out["patient"] = grant.patient
    return out


async def revoke(conn: AsyncConnection, token_value: str, hint: str | None,
                 client: clients.Client, issuer: Issuer, now: float | None = None) -> None:
    """RFC 7009 2.1: revoke a token the client holds; an unknown token is not an error."""
    now = time.time() if now is None else now
    if hint not in (None, "access_token", "refresh_token"):
        raise error(UnsupportedTokenTypeError, f"token_type_hint {hint} is not supported.")
    if token_value.count(".") == 2:
        try:
            claims = tokens.verify_access_token(token_value, issuer.keys, issuer=issuer.issuer,
                                                audience=issuer.fhir_base, now=now)
        except OAuth2Error:
            return  # invalid or expired: nothing left to revoke
        if claims["client_id"] != client.client_id:
            raise error(UnauthorizedClientError, "The token was issued to another client.")
        await tokens.revoke(conn, claims["jti"], float(claims["exp"]))
        return
    row = (await conn.execute(sa.select(oauth_refresh.c.family, oauth_refresh.c.client_id)
                              .where(oauth_refresh.c.token_hash
                                     == authorize.digest(token_value)))).first()
    if row is None:
        return
    if row[1] != client.client_id:
        raise error(UnauthorizedClientError, "The token was issued to another client.")
    await revoke_family(conn, row[0], now)



async def operator_token(db: Any, *, fhir_base: str, client_id: str,
                         scope: str = "system/*.cruds", lifetime: int = 3600,
                         issuer: str | None = None, user: str | None = None,
                         patient: str | None = None) -> str:
    """An access token for the server's operator, signed with the server's own keys read from
    its database (`python -m api seed` and `serve --demo` load through the API with one).

    Whoever can read the database holds the keys already, so this grants nothing new; it is
    the backend-services token a registered client would get, without a registration.
    `issuer`: the authorisation server (default: `fhir_base` without /fhir). `user`: a
    token for that Patient or Practitioner instead (`python -m api token`), as if they had
    signed in; `patient`: the patient in context (patient/ scopes).
    """
    from consent.keys import KeyRing

    keys = await KeyRing().get(db)
    grant = tokens.Grant(subject=user or client_id, scope=scope, fhir_user=user,
                         patient=patient or (user.partition("/")[2]
                                             if user and user.startswith("Patient/") else None))
    return tokens.issue_access_token(
        keys, issuer=issuer or fhir_base.removesuffix("/fhir"), audience=fhir_base,
        client_id=client_id, grant=grant, lifetime=lifetime, fhir_base=fhir_base).token
