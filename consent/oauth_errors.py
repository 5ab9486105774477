"""OAuth 2.0 errors (RFC 6749 5.2, RFC 6750 3.1), as authlib defines them.

`api/oauth` renders each as `{"error": ..., "error_description": ...}` with its status.
`error()` builds one with a description made safe for the RFC's character set (authlib
refuses a description with a quote or a character outside printable ASCII, and a description
may quote what the client sent).
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6750.errors import InvalidTokenError

__all__ = [
    "AccessDeniedError", "InvalidClientError", "InvalidGrantError", "InvalidRequestError",
    "InvalidScopeError", "InvalidTokenError", "OAuth2Error", "UnauthorizedClientError",
    "UnsupportedGrantTypeError", "UnsupportedResponseTypeError", "UnsupportedTokenTypeError",
    "InvalidClientMetadataError", "InvalidRedirectUriError", "error", "safe",
]


class UnsupportedGrantTypeError(OAuth2Error):
    """RFC 6749 5.2 (authlib's class wants the grant type, not a description)."""

    error = "unsupported_grant_type"


class UnsupportedResponseTypeError(OAuth2Error):
    """RFC 6749 4.1.2.1 (authlib's class wants the response type, not a description)."""

    error = "unsupported_response_type"


class UnsupportedTokenTypeError(OAuth2Error):
    """RFC 7009 2.2.1: the server cannot revoke this type of token."""

    error = "unsupported_token_type"


class InvalidClientMetadataError(OAuth2Error):
    """RFC 7591 3.2.2: a registration metadata field is invalid."""

    error = "invalid_client_metadata"


class InvalidRedirectUriError(OAuth2Error):
    """RFC 7591 3.2.2: a registered redirect URI is invalid."""

    error = "invalid_redirect_uri"


def safe(text: str, limit: int = 300) -> str:
    """`text` within RFC 6749's error_description characters (%x20-21 / %x23-5B / %x5D-7E)."""
    out = "".join(c if (0x20 <= ord(c) <= 0x7E and c not in '"\\') else "?" for c in text)
    return out[:limit]


def error(kind: type[OAuth2Error], description: str, **kwargs: Any) -> OAuth2Error:
    """An OAuth error of `kind`; invalid_client is a 401 (the client did not authenticate)."""
    if kind is InvalidClientError:
        kwargs.setdefault("status_code", 401)
    return kind(description=safe(description), **kwargs)
