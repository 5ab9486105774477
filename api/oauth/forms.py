"""Reading OAuth requests: form bodies (RFC 6749 uses application/x-www-form-urlencoded)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request

from consent.oauth_errors import InvalidRequestError, error

MAX_FORM_BYTES = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"


def to_params(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Parameters as a dict; empty ones are absent, repeated ones an error (RFC 6749 3.1)."""
    out: dict[str, str] = {}
    for name, value in pairs:
        if value == "":
            continue
        if name in out:
            raise error(InvalidRequestError, f"Parameter {name} is repeated.")
        if "\x00" in value:
            raise error(InvalidRequestError, f"Parameter {name} holds a NUL character.")
        out[name] = value
    return out


async def read_form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != FORM_TYPE:
        raise error(InvalidRequestError, f"Send the parameters as {FORM_TYPE}.")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise error(InvalidRequestError, "The request body is too large.")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                          errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise error(InvalidRequestError, "The body is not a valid form.") from None
    return to_params(pairs)


def query_params(request: Request) -> dict[str, str]:
    return to_params(list(request.query_params.multi_items()))
