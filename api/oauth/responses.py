"""OAuth answers: JSON bodies that are never cached, RFC 6749 errors, redirects back to apps."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from consent.oauth_errors import OAuth2Error

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 5.1
OAUTH_PREFIX = "/oauth/"


def json_response(body: Any, status: int = 200, *, no_store: bool = True,
                  headers: dict[str, str] | None = None) -> Response:
    merged = {**(NO_STORE if no_store else {}), **(headers or {})}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=merged)


def redirect(uri: str, params: dict[str, str]) -> Response:
    """A 302 to `uri` with `params` added to its query (RFC 6749 4.1.2)."""
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return Response(status_code=302, headers={"Location": urlunsplit(parts._replace(query=query)),
                                              **NO_STORE})


def error_body(error: str, description: str | None) -> dict[str, str]:
    body = {"error": error}
    if description:
        body["error_description"] = description
    return body


def oauth_error(exc: OAuth2Error) -> Response:
    """RFC 6749 5.2 (or 4.1.2.1, back to the app when the redirect URI is trusted)."""
    description = exc.get_error_description() if exc.description else None
    if exc.redirect_uri:
        params = error_body(exc.error, description)
        if exc.state:
            params["state"] = exc.state
        return redirect(exc.redirect_uri, params)
    status = exc.status_code or 400
    headers = {}
    if status == 401:
        scheme = "Bearer" if exc.error == "invalid_token" else "private_key_jwt"
        headers["WWW-Authenticate"] = f'{scheme} error="{exc.error}"'
    return json_response(error_body(exc.error, description), status, headers=headers)


async def _handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuth2Error)
    return oauth_error(exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(OAuth2Error, _handler)


def is_oauth_path(path: str) -> bool:
    return path.startswith(OAUTH_PREFIX) or path.endswith("/.well-known/smart-configuration")


def oauth_http_error(status: int, detail: str, allowed: str) -> Response:
    """404/405 and the like on an OAuth path, as an RFC 6749-shaped error."""
    headers = {"Allow": allowed} if status == 405 and allowed else {}
    return json_response(error_body("invalid_request", detail), status, headers=headers)
