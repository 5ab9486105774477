"""JSON for resources that keeps FHIR decimals exact.

A FHIR decimal has implicit precision (``2.00`` is not ``2.0``) and must not pass through IEEE
binary floating point (https://hl7.org/fhir/R4/datatypes.html#decimal): a float turns
``66.899999999999991`` into ``66.89999999999999`` and ``-2.00`` into ``-2.0``. So resources are
parsed with every non-integer number as a `Decimal` holding the digits as written, and written
back with those digits unchanged. Index extraction turns them into floats for search only.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def _int(text: str) -> int | Decimal:
    # Beyond 64 bits orjson cannot write an int back; as a Decimal its digits are kept.
    return int(text) if len(text) <= 18 else Decimal(text)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON; non-integer numbers become `Decimal`. Raises `JSONDecodeError`."""
    orjson.loads(data)  # the strict check: UTF-8 only, no NaN, no lone surrogates
    if isinstance(data, memoryview):
        data = bytes(data)
    return json.loads(data, parse_float=Decimal, parse_int=_int)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    """Serialise with orjson, writing each `Decimal` with exactly its own digits."""
    return orjson.dumps(value, default=_default)
