"""The one place errors become responses: every failure is an OperationOutcome, never a trace."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.routing import Match
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.http import error_response, outcome_response
from api.oauth.responses import is_oauth_path, oauth_http_error
from fhir.errors import FhirError, Issue, operation_outcome

log = logging.getLogger("carenet")

_HTTP_CODES = {404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}


async def _fhir_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return error_response(exc)


def _allowed(request: Request) -> str:
    """Every method some route takes at this path (Starlette's Allow names one route's)."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = getattr(exc, "headers", None)
    if is_oauth_path(request.url.path):  # the OAuth endpoints answer in RFC 6749's shape
        return oauth_http_error(exc.status_code, str(exc.detail), _allowed(request))
    if exc.status_code == 404:
        message = f"No FHIR endpoint at {request.url.path}."
    elif exc.status_code == 405:
        allowed = _allowed(request)
        headers = {**(headers or {}), "Allow": allowed} if allowed else headers
        message = f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})."
    else:
        message = str(exc.detail)
    return outcome_response(exc.status_code, message, severity="error",
                            code=_HTTP_CODES.get(exc.status_code, "processing"),
                            headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return outcome_response(400, f"The request is malformed: {details}", severity="error",
                            code="invalid")


def _sqlstate(exc: BaseException) -> str | None:
    for candidate in (exc, getattr(exc, "orig", None), getattr(exc, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if code:
            return str(code)
    return None


async def _database_error(request: Request, exc: Exception) -> Response:
    """Database trouble a client can act on: a query over the time limit, or no connection."""
    state = _sqlstate(exc)
    if state == "57014":  # query_canceled: the statement timeout stopped it
        return outcome_response(400, "The request took longer than the server allows and was "
                                "stopped; narrow the search (fewer values, chains or includes).",
                                severity="error", code="too-costly")
    if state in ("53300", "57P01", "57P03", "08006", "08001", "08004") or isinstance(
            exc, (OSError, asyncio.TimeoutError)) or getattr(exc, "connection_invalidated", False):
        log.warning("database unavailable: %s", exc)
        return outcome_response(503, "The database is busy or unreachable; nothing was changed. "
                                "Retry shortly.", severity="error", code="transient",
                                headers={"Retry-After": "1"})
    return await _unexpected(request, exc)


async def _unexpected(_request: Request, exc: Exception) -> Response:
    ref = uuid.uuid4().hex[:12]
    log.exception("unhandled error %s", ref, exc_info=exc)
    return outcome_response(500, f"The server failed unexpectedly (reference {ref}); the request "
                            "was not completed and nothing was changed.", severity="fatal",
                            code="exception")


class CatchAll:
    """ASGI middleware: an unexpected exception becomes the 500 OperationOutcome here, and
    goes no further. Starlette's outermost handler would answer the same but then re-raise,
    and uvicorn closes the connection of an exception it sees, so the client's next request
    on that keep-alive connection failed. Only an exception after the answer has started
    (nothing can be sent then) still goes on, for the server to drop the connection."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:
                raise
            response = await _unexpected(Request(scope), exc)
            await response(scope, receive, send)


class FhirHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, answering a request it cannot parse (an unknown method,
    a malformed line or header) with an OperationOutcome instead of plain text."""

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(operation_outcome([Issue(
            "invalid", "The request is not valid HTTP/1.1 or uses a method this server does "
            "not know; FHIR uses GET, HEAD, POST, PUT, PATCH and DELETE "
            f"(https://hl7.org/fhir/R4/http.html). {msg}")]))
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/fhir+json; charset=utf-8\r\n",
                 b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                 b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))
        self.transport.close()


def install(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, _fhir_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
