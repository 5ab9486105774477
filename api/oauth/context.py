"""Per-request facts of the authorisation server: its URLs, keys, and the caller's principal."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request

from api.http import FHIR_PREFIX, base_url
from api.settings import Settings
from consent import grants, tokens
from consent.keys import KeyRing, SigningKeys
from consent.oauth_errors import InvalidTokenError, error
from fhir.db import Database


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def db_of(request: Request) -> Database:
    return request.app.state.db


def fhir_base(request: Request) -> str:
    """The FHIR base: the `aud` of every access token."""
    return base_url(request)


def issuer(request: Request) -> str:
    """The authorisation server's identifier (iss): the server root, without /fhir."""
    configured = settings_of(request).issuer
    if configured:
        return configured.rstrip("/")
    return fhir_base(request).removesuffix(FHIR_PREFIX)


def endpoint(request: Request, name: str) -> str:
    return f"{issuer(request)}/oauth/{name}"


def key_ring(request: Request) -> KeyRing:
    state = request.app.state
    if getattr(state, "oauth_keys", None) is None:
        state.oauth_keys = KeyRing()
    return state.oauth_keys


def jwks_cache(request: Request) -> tokens.JwksCache:
    """Fetched key sets (clients' jwks_uri, trusted providers' jwks_url); tests replace it."""
    state = request.app.state
    if getattr(state, "jwks_cache", None) is None:
        state.jwks_cache = tokens.JwksCache()
    return state.jwks_cache


async def signing_keys(request: Request, kid: str | None = None) -> SigningKeys:
    return await key_ring(request).get(db_of(request), kid)


async def token_issuer(request: Request, kid: str | None = None) -> grants.Issuer:
    settings = settings_of(request)
    return grants.Issuer(
        keys=await signing_keys(request, kid), issuer=issuer(request), fhir_base=fhir_base(request),
        token_url=endpoint(request, "token"), access_lifetime=settings.access_token_seconds,
        refresh_lifetime=settings.refresh_token_seconds,
        id_token_lifetime=settings.access_token_seconds, cache=jwks_cache(request))


def bearer(request: Request) -> str:
    """The bearer token of the Authorization header (RFC 6750 2.1), or invalid_token."""
    header = request.headers.get("authorization")
    if not header:
        raise error(InvalidTokenError, "An Authorization: Bearer token is required.")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip() or " " in value.strip():
        raise error(InvalidTokenError, "The Authorization header must be Bearer <token>.")
    return value.strip()


async def caller_from_request(request: Request) -> tokens.Caller:
    """The caller of a request, from its bearer token: ours, or a trusted provider's.

    Raises InvalidTokenError (401) for a missing, malformed, forged, expired, revoked or
    misdirected token. The FHIR layer's access policy starts from the Caller.
    """
    token = bearer(request)
    header, claims = tokens.unverified(token)
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    keys = await signing_keys(request, kid)
    audience, iss = fhir_base(request), issuer(request)
    settings = settings_of(request)
    if not settings.base_url and not settings.issuer:
        audience = loopback_alias(audience, claims.get("aud")) or audience
        iss = loopback_alias(iss, claims.get("iss")) or iss
    async with db_of(request).read() as conn:
        return await tokens.caller(
            conn, token, keys=keys, issuer=iss, audience=audience,
            trusted=settings.trusted_issuers, cache=jwks_cache(request))


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def loopback_alias(expected: str, claimed: object) -> str | None:
    """`claimed` (a token's aud or iss) when it names the same server as `expected` through
    another loopback name (http://127.0.0.1:8000/fhir for http://localhost:8000/fhir), else
    None. Only where the server takes its URLs from the request (CARENET_BASE_URL and
    CARENET_ISSUER unset): on one's own machine both names reach the same server, and a token
    `python -m api token` made for one works with the other. A configured base (production)
    accepts only itself."""
    if not isinstance(claimed, str) or claimed == expected:
        return None
    want, got = urlsplit(expected), urlsplit(claimed)
    try:
        same_port = want.port == got.port
    except ValueError:
        return None
    if (want.hostname in LOOPBACK and got.hostname in LOOPBACK and same_port
            and want.scheme == got.scheme and want.path.rstrip("/") == got.path.rstrip("/")
            and not got.query and not got.fragment and got.username is None):
        return claimed
    return None
