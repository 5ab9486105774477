"""Tables of the authorisation server (migration 0003), on the one schema `metadata`.

Secrets are never stored as given: authorization codes, refresh tokens and launch ids are
kept as SHA-256 hex digests, so a copy of the database hands out no live credential.
Access tokens are signed JWTs and not stored; revoking one records its `jti` until it expires.
Times are epoch seconds (UTC), as in the record's tables.
"""

from __future__ import annotations

import sqlalchemy as sa

from fhir.schema import metadata

Time = sa.Float(precision=53)

oauth_client = sa.Table(
    "oauth_client",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    # "none" (public client, PKCE only) or "private_key_jwt" (RFC 7523 assertion).
    sa.Column("auth_method", sa.String(32), nullable=False),
    # The RFC 7591 metadata as registered (JSON text): redirect_uris, jwks, scope, ...
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("created_at", Time, nullable=False),
)

oauth_code = sa.Table(
    "oauth_code",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("redirect_uri", sa.String(2048), nullable=False),
    sa.Column("code_challenge", sa.String(128), nullable=False),  # S256 only
    sa.Column("grant", sa.Text, nullable=False),  # the authorisation (JSON text)
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("used_at", Time, nullable=True),
    # What the code was exchanged for: revoked if the code is ever replayed (RFC 6749 4.1.2).
    sa.Column("access_jti", sa.String(64), nullable=True),
    sa.Column("family", sa.String(64), nullable=True),
    sa.Index("ix_oauth_code_expires", "expires_at"),
)

oauth_refresh = sa.Table(
    "oauth_refresh",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    # Every rotation of one grant shares a family; a replayed old token revokes the family.
    sa.Column("family", sa.String(64), nullable=False),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("grant", sa.Text, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("used_at", Time, nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    sa.Column("access_jti", sa.String(64), nullable=True),
    sa.Column("access_expires_at", Time, nullable=True),
    sa.Index("ix_oauth_refresh_family", "family"),
    sa.Index("ix_oauth_refresh_expires", "expires_at"),
)

# Access tokens revoked before their expiry (by jti).
oauth_revoked = sa.Table(
    "oauth_revoked",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("expires_at", Time, nullable=False),
    sa.Index("ix_oauth_revoked_expires", "expires_at"),
)

# Client assertion ids already used (RFC 7523 3: jti not replayed), kept until they expire.
oauth_assertion = sa.Table(
    "oauth_assertion",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("jti", sa.String(255), primary_key=True),
    sa.Column("expires_at", Time, nullable=False),
    sa.Index("ix_oauth_assertion_expires", "expires_at"),
)

# EHR launch contexts made by POST /oauth/launch, redeemed by an authorize request.
oauth_launch = sa.Table(
    "oauth_launch",
    metadata,
    sa.Column("launch_hash", sa.String(64), primary_key=True),
    sa.Column("user_ref", sa.String(128), nullable=False),
    sa.Column("patient", sa.String(64), nullable=True),
    sa.Column("encounter", sa.String(64), nullable=True),
    sa.Column("expires_at", Time, nullable=False),
)

# The server's own signing keys (private JWK, JSON text); the newest signs, all verify.
oauth_signing_key = sa.Table(
    "oauth_signing_key",
    metadata,
    sa.Column("kid", sa.String(128), primary_key=True),
    sa.Column("alg", sa.String(16), nullable=False),
    sa.Column("jwk", sa.Text, nullable=False),
    sa.Column("created_at", Time, nullable=False),
)
