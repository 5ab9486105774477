"""OAuth clients: dynamic registration (RFC 7591) and client authentication at the token endpoint.

Two kinds of client, as SMART App Launch v2 names them
(https://hl7.org/fhir/smart-app-launch/client-authentication.html):

- public (`token_endpoint_auth_method: none`): a browser or native app; sends its client_id
  and proves possession of the authorization code with PKCE;
- confidential asymmetric (`private_key_jwt`): signs a client assertion (RFC 7523) with a key
  from the JWKS it registered (inline `jwks` or `jwks_uri`); the only kind that may use
  client_credentials (SMART Backend Services).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
import sqlalchemy as sa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from consent import tokens
from consent.oauth_errors import (
    InvalidClientError,
    InvalidClientMetadataError,
    InvalidRedirectUriError,
    OAuth2Error,
    error,
)
from consent.oauth_schema import oauth_assertion, oauth_client
from consent.scopes import parse

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUTH_METHODS = ("none", "private_key_jwt")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
# SMART requires RS384 and ES384 for client assertions; RS256 and ES256 are common too.
ASSERTION_ALGORITHMS = ["RS384", "ES384", "RS256", "ES256"]
MAX_ASSERTION_LIFETIME = 300  # SMART Backend Services: exp no more than five minutes ahead


@dataclass(slots=True)
class Client:
    client_id: str
    auth_method: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.metadata.get("client_name") or self.client_id)

    @property
    def redirect_uris(self) -> list[str]:
        return list(self.metadata.get("redirect_uris") or ())

    @property
    def grant_types(self) -> list[str]:
        return list(self.metadata.get("grant_types") or ())

    @property
    def scope(self) -> str | None:
        """The scopes the client may ask for (None: any)."""
        return self.metadata.get("scope")

    @property
    def public(self) -> bool:
        return self.auth_method == "none"

    @property
    def operator_registered(self) -> bool:
        return self.metadata.get(OPERATOR) is True

    @property
    def resource_server(self) -> bool:
        """The operator registered it as a resource server: it may introspect any token."""
        return self.operator_registered and self.metadata.get(RESOURCE_SERVER) is True


def check_metadata(body: Any) -> dict[str, Any]:
    """RFC 7591 client metadata, checked and completed with defaults."""
    if not isinstance(body, dict):
        raise error(InvalidClientMetadataError, "The registration body must be a JSON object.")
    meta = {k: v for k, v in body.items() if v is not None}
    for name in ("client_name", "scope", "jwks_uri", "token_endpoint_auth_method",
                 "client_uri", "logo_uri", "software_id", "software_version"):
        if name in meta and not isinstance(meta[name], str):
            raise error(InvalidClientMetadataError, f"{name} must be a string.")
    for name in ("redirect_uris", "grant_types", "response_types", "contacts"):
        value = meta.get(name)
        if value is not None and not (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value)):
            raise error(InvalidClientMetadataError, f"{name} must be an array of strings.")
    if "jwks" in meta and "jwks_uri" in meta:
        raise error(InvalidClientMetadataError, "Give jwks or jwks_uri, not both (RFC 7591 2).")
    has_keys = "jwks" in meta or "jwks_uri" in meta
    method = meta.setdefault("token_endpoint_auth_method",
                             "private_key_jwt" if has_keys else "none")
    if method not in AUTH_METHODS:
        raise error(InvalidClientMetadataError, f"token_endpoint_auth_method {method} is not "
                    f"supported; use one of {', '.join(AUTH_METHODS)}.")
    if method == "private_key_jwt":
        if not has_keys:
            raise error(InvalidClientMetadataError, "private_key_jwt needs jwks or jwks_uri.")
        if "jwks" in meta:
            _check_jwks(meta["jwks"])
        else:
            _check_url(meta["jwks_uri"], "jwks_uri", InvalidClientMetadataError)
    elif has_keys:
        raise error(InvalidClientMetadataError, "A public client (auth method none) registers "
                    "no keys.")
    redirects = meta.get("redirect_uris") or []
    default_grants = ["authorization_code", "refresh_token"] if redirects else (
        ["client_credentials"] if method == "private_key_jwt" else ["authorization_code"])
    grants = meta.setdefault("grant_types", default_grants)
    for grant in grants:
        if grant not in GRANT_TYPES:
            raise error(InvalidClientMetadataError, f"grant type {grant} is not supported.")
    if "client_credentials" in grants and method != "private_key_jwt":
        raise error(InvalidClientMetadataError, "client_credentials needs private_key_jwt "
                    "(SMART Backend Services).")
    if "authorization_code" in grants:
        if not redirects:
            raise error(InvalidRedirectUriError, "authorization_code needs redirect_uris.")
        for uri in redirects:
            _check_redirect(uri)
        meta.setdefault("response_types", ["code"])
    if any(r != "code" for r in meta.get("response_types") or ()):
        raise error(InvalidClientMetadataError, "Only the response type code is supported.")
    if "scope" in meta:
        parsed = parse(meta["scope"])
        if parsed.invalid:
            raise error(InvalidClientMetadataError, f"Unknown scopes: {' '.join(parsed.invalid)}")
    return meta


def _check_jwks(jwks: Any) -> None:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise error(InvalidClientMetadataError, "jwks must be a JWK Set with at least one key.")
    for key in jwks["keys"]:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise error(InvalidClientMetadataError, "jwks keys must be RSA or EC public keys.")
        if any(p in key for p in ("d", "p", "q", "dp", "dq", "qi")):
            raise error(InvalidClientMetadataError, "jwks holds a private key: register the "
                        "public key only.")
    try:
        KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError):
        raise error(InvalidClientMetadataError, "jwks is not a valid JWK Set.") from None


def _check_url(url: str, name: str, kind: type[OAuth2Error]) -> None:
    parts = urlsplit(url)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment or (
            parts.scheme == "http" and not loopback):
        raise error(kind, f"{name} must be an https URL (http only on the loopback host).")


def _check_redirect(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.fragment or not parts.scheme:
        raise error(InvalidRedirectUriError, f"{uri} is not an absolute URI without fragment.")
    if parts.scheme in ("http", "https"):
        _check_url(uri, "redirect_uri", InvalidRedirectUriError)
    elif "." not in parts.scheme:  # RFC 8252 7.1: private-use schemes are reverse domain names
        raise error(InvalidRedirectUriError, f"{uri}: a private-use scheme must be a reverse "
                    "domain name (com.example.app:/callback).")


# Metadata only the operator's registration (`python -m api register-client`) sets: a backend
# service it vouches for, which may reach records (api/access.py), the Organization a
# member practice's system acts for, and a resource server that may introspect any token
# (api/oauth/routes.py). Open registration strips them.
OPERATOR = "carenet_operator_registered"
ORGANIZATION = "organization"
# A resource server the operator registered: it may introspect any token (RFC 7662 4).
RESOURCE_SERVER = "resource_server"


async def register(conn: AsyncConnection, body: Any, now: float | None = None, *,
                   operator: bool = False) -> dict[str, Any]:
    """Register a client; the RFC 7591 3.2.1 response (client_id and the metadata).

    `operator`: registered by the server's operator, who vouches for it; through open
    registration (`operator=False`) a backend service gets tokens but no access to records.
    """
    meta = check_metadata(body)
    meta.pop(OPERATOR, None)
    if operator:
        meta[OPERATOR] = True
        org = meta.get(ORGANIZATION)
        if org is not None and not (isinstance(org, str) and org.startswith("Organization/")
                                    and len(org) > len("Organization/")):
            raise error(InvalidClientMetadataError,
                        "organization must be a reference such as Organization/<id>.")
        if meta.get(RESOURCE_SERVER) not in (None, True, False):
            raise error(InvalidClientMetadataError, "resource_server must be true or false.")
    else:
        meta.pop(ORGANIZATION, None)
        meta.pop(RESOURCE_SERVER, None)
    client_id = uuid.uuid4().hex
    issued = int(time.time() if now is None else now)
    await conn.execute(oauth_client.insert().values(
        client_id=client_id, auth_method=meta["token_endpoint_auth_method"],
        metadata=orjson.dumps(meta).decode(), created_at=issued))
    return {"client_id": client_id, "client_id_issued_at": issued, **meta}


async def find(conn: AsyncConnection, client_id: str | None) -> Client | None:
    if not client_id or len(client_id) > 64:
        return None
    row = (await conn.execute(sa.select(oauth_client.c.auth_method, oauth_client.c.metadata)
                              .where(oauth_client.c.client_id == client_id))).first()
    return Client(client_id, row[0], orjson.loads(row[1])) if row else None


async def authenticate(conn: AsyncConnection, form: dict[str, str], *, token_url: str,
                       cache: tokens.JwksCache, now: float | None = None) -> Client:
    """The client making a token, revocation or introspection request (RFC 6749 2.3).

    A confidential client proves itself with a private_key_jwt assertion; a public client
    names itself with client_id (and may not send an assertion).
    """
    now = time.time() if now is None else now
    assertion_type = form.get("client_assertion_type")
    assertion = form.get("client_assertion")
    if assertion_type is None and assertion is None:
        client = await find(conn, form.get("client_id"))
        if client is None:
            raise error(InvalidClientError, "Unknown client (client_id)." if form.get(
                "client_id") else "The request does not say which client sends it (client_id).")
        if not client.public:
            raise error(InvalidClientError, "This client must authenticate with a "
                        "private_key_jwt client assertion.")
        return client
    if assertion_type != ASSERTION_TYPE or not assertion:
        raise error(InvalidClientError, f"client_assertion_type must be {ASSERTION_TYPE}, "
                    "with a client_assertion.")
    try:
        header, claims = tokens.unverified(assertion)
    except OAuth2Error:
        raise error(InvalidClientError, "The client assertion is not a signed JWT.") from None
    client_id = claims.get("iss")
    if not isinstance(client_id, str) or claims.get("sub") != client_id:
        raise error(InvalidClientError, "The client assertion's iss and sub must both be the "
                    "client_id.")
    if form.get("client_id") not in (None, client_id):
        raise error(InvalidClientError, "client_id and the assertion's issuer differ.")
    client = await find(conn, client_id)
    if client is None:
        raise error(InvalidClientError, "Unknown client (the assertion's iss).")
    if client.auth_method != "private_key_jwt":
        raise error(InvalidClientError, "This client registered no keys: it is public.")
    keys = await _client_keys(client, cache, header.get("kid"))
    try:
        verified = jwt.decode(assertion, keys, algorithms=ASSERTION_ALGORITHMS)
    except (JoseError, ValueError, TypeError):
        raise error(InvalidClientError, "The client assertion's signature does not verify with "
                    "the client's registered keys.") from None
    _check_assertion(verified.claims, client_id, token_url, now)
    await remember_assertion(conn, client_id, verified.claims["jti"],
                             float(verified.claims["exp"]), now)
    return client


async def _client_keys(client: Client, cache: tokens.JwksCache, kid: str | None) -> KeySet:
    jwks = client.metadata.get("jwks")
    try:
        if jwks is not None:
            return KeySet.import_key_set(jwks)
        return await cache.get(client.metadata["jwks_uri"], kid)
    except OAuth2Error:
        raise error(InvalidClientError, "The client's jwks_uri could not be read.") from None
    except (JoseError, ValueError, TypeError, KeyError):
        raise error(InvalidClientError, "The client's registered keys are unusable.") from None


def _check_assertion(claims: dict[str, Any], client_id: str, token_url: str, now: float) -> None:
    aud = claims.get("aud")
    if not (aud == token_url or (isinstance(aud, list) and token_url in aud)):
        raise error(InvalidClientError, f"The client assertion's aud must be the token "
                    f"endpoint, {token_url}.")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise error(InvalidClientError, "The client assertion has no exp.")
    if exp < now - tokens.LEEWAY:
        raise error(InvalidClientError, "The client assertion has expired.")
    if exp > now + MAX_ASSERTION_LIFETIME + tokens.LEEWAY:
        raise error(InvalidClientError, "The client assertion's exp is more than five minutes "
                    "ahead.")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + tokens.LEEWAY:
        raise error(InvalidClientError, "The client assertion is not valid yet (nbf).")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise error(InvalidClientError, "The client assertion needs a jti (at most 255 "
                    "characters).")


async def remember_assertion(conn: AsyncConnection, client_id: str, jti: str, exp: float,
                             now: float) -> None:
    """Record a used assertion id; a second use is a replay (invalid_client)."""
    await conn.execute(oauth_assertion.delete().where(oauth_assertion.c.expires_at < now
                                                      - tokens.LEEWAY))
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)
    stmt = insert(oauth_assertion).values(client_id=client_id, jti=jti, expires_at=exp)
    result = await conn.execute(stmt.on_conflict_do_nothing())
    if result.rowcount != 1:
        raise error(InvalidClientError, "The client assertion was used before (jti replay).")

