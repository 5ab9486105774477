"""FHIR over HTTP: media types, bodies, ETags, Prefer, and the response helpers routes share.

https://hl7.org/fhir/R4/http.html. Only JSON is spoken: an XML answer asked for is a 406,
an XML body a 415, both as OperationOutcomes.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from fhir import jsontext
from fhir.errors import (
    BadRequest,
    FhirError,
    Issue,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
    operation_outcome,
)
from fhir.store import Stored

FHIR_JSON = "application/fhir+json; charset=utf-8"
FHIR_PREFIX = "/fhir"  # the FHIR base is [server]/fhir
JSON_TYPES = ("application/fhir+json", "application/json", "application/json-patch+json")
_FORMAT_OK = {"json", "application/json", "application/fhir+json"}


def accept_ok(accept: str) -> bool:
    """Whether an Accept header admits a JSON answer."""
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("*/*", "application/*", "application/fhir+json", "application/json",
                     "json") or media.endswith("+json"):
            return True
    return False


async def check_accept(request: Request) -> None:
    """406 when the client asks for anything but JSON (`_format` or Accept)."""
    fmt = request.query_params.get("_format")
    if fmt is not None and fmt.split(";")[0].strip() not in _FORMAT_OK:
        raise NotAcceptable(f"_format={fmt} is not available; this server speaks JSON only "
                            "(_format=json or application/fhir+json).")
    accept = request.headers.get("accept")
    if not accept or accept_ok(accept):
        return
    raise NotAcceptable(f"Accept: {accept} cannot be met; this server answers "
                        "application/fhir+json only.")


async def read_json(request: Request, max_bytes: int, *, patch: bool = False) -> Any:
    """The request body parsed as JSON, after checking its media type and size."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if patch:
        if ctype != "application/json-patch+json":
            raise UnsupportedMediaType(f"PATCH takes application/json-patch+json (JSON Patch), "
                                       f"not '{ctype or 'no content type'}'.")
    elif ctype and ctype not in JSON_TYPES:
        raise UnsupportedMediaType(f"Content-Type '{ctype}' is not supported; send "
                                   "application/fhir+json.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The body is {declared} bytes; the limit is {max_bytes}.")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_bytes:
                raise PayloadTooLarge(f"The body exceeds the limit of {max_bytes} bytes.")
    except ClientDisconnect:  # the client's doing, not a server error: nothing to log
        raise BadRequest("The client closed the connection before the whole body "
                         "arrived; nothing was changed.") from None
    if not body:
        raise BadRequest("The request has no body; send a JSON resource.")
    try:
        return jsontext.loads(body)  # decimals kept exact (fhir/jsontext.py)
    except jsontext.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}.") from None


def if_match(request: Request) -> int | None:
    """The version named by If-Match (W/"3" or "3"), or None."""
    value = request.headers.get("if-match")
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not (text.isascii() and text.isdigit()):
        raise BadRequest(f"If-Match '{value}' is not a version ETag such as W/\"3\".")
    return int(text)


def prefer(request: Request, key: str) -> str | None:
    for part in request.headers.get("prefer", "").split(";"):
        for item in part.split(","):
            name, _, value = item.strip().partition("=")
            if name.strip().lower() == key:
                return value.strip().strip('"')
    return None


def base_url(request: Request) -> str:
    configured = request.app.state.settings.base_url
    if configured:
        return configured.rstrip("/")
    return str(request.base_url).rstrip("/") + FHIR_PREFIX


def fhir_response(content: bytes | str, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return Response(content=content, status_code=status, media_type=FHIR_JSON, headers=headers)


def outcome_response(status: int, message: str, severity: str = "information",
                     code: str = "informational",
                     headers: dict[str, str] | None = None) -> Response:
    body = operation_outcome([Issue(code, message, severity=severity)])
    return fhir_response(orjson.dumps(body), status, headers)


def error_response(exc: FhirError) -> Response:
    return fhir_response(orjson.dumps(exc.outcome()), exc.status, getattr(exc, "headers", None))


def resource_response(request: Request, stored: Stored, status: int = 200,
                      message: str | None = None, location: bool = False) -> Response:
    """A resource answer with ETag, Last-Modified and (for writes) Location, honouring Prefer."""
    headers = {"ETag": stored.etag, "Last-Modified": stored.last_modified}
    if location:
        headers["Location"] = (f"{base_url(request)}/{stored.type}/{stored.id}"
                               f"/_history/{stored.version}")
    wanted = prefer(request, "return") if location else None
    if wanted == "minimal" or stored.content is None:
        return Response(status_code=status, headers=headers)
    if wanted == "OperationOutcome":
        text = message or f"{stored.type}/{stored.id} is at version {stored.version}."
        return outcome_response(status, text, headers=headers)
    return fhir_response(stored.content, status, headers)
