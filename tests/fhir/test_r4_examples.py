"""The official R4 examples of clinical resources round-trip through the server, on both backends.

Every JSON example of a clinical type (tests/r4_examples.py, CLINICAL_TYPES) in the npm package
hl7.fhir.r4.examples 4.0.1 that has a valid FHIR id and that the R4B models of fhir.resources
accept is PUT to [type]/[id] as the package's exact bytes, read back equal (apart from `meta`,
which the server stamps), and found again by `_id` search. Decimals are compared as decimals,
value and decimal places, so a number the server rounds or trims (66.899999999999991 to
66.89999999999999, 2.00 to 2.0) is a failure, not a float coincidence.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest

from tests.r4_examples import CLINICAL_TYPES, Example, Examples, Unavailable, clinical_examples
from tests.r4_examples import package_dir as find_package

# The package holds 463 examples of clinical types; all but one (Questionnaire qs1, which
# lacks required linkIds) pass fhir.resources. Far fewer means the filter or the package broke.
MIN_ACCEPTED = 400
CONCURRENCY = 16
SERVER_META = ("versionId", "lastUpdated")
T = TypeVar("T")


@pytest.fixture(scope="session")
def r4_examples() -> Examples:
    """The clinical examples, from $CARENET_R4_EXAMPLES, .cache/, or fetched with npm."""
    try:
        package = find_package()
    except Unavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the R4 examples: {exc}")
        pytest.skip(str(exc))
    return clinical_examples(package)


def _parse(content: bytes | str) -> Any:
    return json.loads(content, parse_float=Decimal)


def _split_meta(resource: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the resource without meta, its meta without what the server stamps)."""
    body = dict(resource)
    meta = {k: v for k, v in (body.pop("meta", None) or {}).items() if k not in SERVER_META}
    return body, meta


def _first_difference(want: Any, got: Any, path: str = "") -> str | None:
    if type(want) is not type(got) and not (
        isinstance(want, (int, Decimal)) and isinstance(got, (int, Decimal))
    ):
        return f"{path or '/'}: {want!r} became {got!r}"
    if isinstance(want, dict):
        for key in sorted(set(want) | set(got)):
            if key not in got:
                return f"{path}/{key}: missing"
            if key not in want:
                return f"{path}/{key}: added {got[key]!r}"
            found = _first_difference(want[key], got[key], f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(want, list):
        if len(want) != len(got):
            return f"{path}: {len(want)} items became {len(got)}"
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            found = _first_difference(w, g, f"{path}/{i}")
            if found:
                return found
        return None
    same = want == got and _places(want) == _places(got)
    return None if same else f"{path or '/'}: {want!r} became {got!r}"


def _places(value: Any) -> int | None:
    """Digits after the decimal point: FHIR decimals carry their precision (2.00 is not 2.0).

    PostgreSQL's jsonb writes 1E-22 as 0.0000000000000000000001, which keeps this count.
    """
    if isinstance(value, Decimal):
        return max(0, -int(value.as_tuple().exponent))
    return 0 if isinstance(value, int) and not isinstance(value, bool) else None


async def _each(items: list[Example], job: Callable[[Example], Awaitable[T]]) -> list[T]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def run(item: Example) -> T:
        async with gate:
            return await job(item)

    return await asyncio.gather(*(run(item) for item in items))


def _report(what: str, failures: list[str], total: int) -> str:
    shown = "\n  ".join(failures[:40])
    more = f"\n  ... and {len(failures) - 40} more" if len(failures) > 40 else ""
    return f"{len(failures)} of {total} examples {what}:\n  {shown}{more}"


def test_examples_are_numerous_and_filtered(r4_examples: Examples) -> None:
    assert r4_examples.found >= len(r4_examples.accepted) > MIN_ACCEPTED, (
        f"found {r4_examples.found}, accepted {len(r4_examples.accepted)}; "
        f"bad ids {r4_examples.bad_id}, rejected {r4_examples.rejected}"
    )
    left_out = len(r4_examples.bad_id) + len(r4_examples.rejected)
    assert r4_examples.found == len(r4_examples.accepted) + left_out
    assert {e.type for e in r4_examples.accepted} <= CLINICAL_TYPES
    assert len({(e.type, e.id) for e in r4_examples.accepted}) == len(r4_examples.accepted)
    # Most clinical types have at least one example: the filter does not drop whole types.
    assert len({e.type for e in r4_examples.accepted}) > 45


async def test_r4_examples_put_read_and_search(client: httpx.AsyncClient,
                                               r4_examples: Examples) -> None:
    examples = r4_examples.accepted
    assert len(examples) > MIN_ACCEPTED

    async def put(ex: Example) -> str | None:
        r = await client.put(f"/{ex.type}/{ex.id}", content=ex.text,
                             headers={"Content-Type": "application/fhir+json"})
        if r.status_code not in (200, 201):
            return f"{ex.file}: PUT answered {r.status_code}: {r.text[:300]}"
        return None

    failed = [f for f in await _each(examples, put) if f]
    assert not failed, _report("could not be PUT", failed, len(examples))

    async def read(ex: Example) -> str | None:
        r = await client.get(f"/{ex.type}/{ex.id}")
        if r.status_code != 200:
            return f"{ex.file}: read answered {r.status_code}: {r.text[:300]}"
        want, want_meta = _split_meta(_parse(ex.text))
        got, got_meta = _split_meta(_parse(r.content))
        diff = _first_difference(want, got) or _first_difference(want_meta, got_meta, "/meta")
        return f"{ex.file}: {diff}" if diff else None

    failed = [f for f in await _each(examples, read) if f]
    assert not failed, _report("did not read back as written", failed, len(examples))

    async def find(ex: Example) -> str | None:
        r = await client.get(f"/{ex.type}", params={"_id": ex.id})
        if r.status_code != 200:
            return f"{ex.file}: search answered {r.status_code}: {r.text[:300]}"
        bundle = r.json()
        found = [(e["resource"]["resourceType"], e["resource"]["id"])
                 for e in bundle.get("entry", ())]
        if bundle.get("total") != 1 or found != [(ex.type, ex.id)]:
            return f"{ex.file}: _id search found {found} (total {bundle.get('total')})"
        return None

    failed = [f for f in await _each(examples, find) if f]
    assert not failed, _report("were not found by _id", failed, len(examples))

    # Leave the shared database as other tests expect it: delete what this test wrote.
    async def delete(ex: Example) -> str | None:
        r = await client.delete(f"/{ex.type}/{ex.id}")
        return None if r.status_code == 200 else f"{ex.file}: DELETE answered {r.status_code}"

    failed = [f for f in await _each(examples, delete) if f]
    assert not failed, _report("could not be deleted", failed, len(examples))


async def test_decimals_keep_their_digits(client: httpx.AsyncClient, tag: str) -> None:
    """The server bug the examples found: decimals went through floats (fhir/jsontext.py)."""
    text = (
        '{"resourceType":"Observation","id":"dec-TAG","status":"final",'
        '"identifier":[{"system":"urn:test","value":"TAG"}],"code":{"text":"height"},'
        '"valueQuantity":{"value":66.899999999999991,"unit":"in"},'
        '"component":[{"code":{"text":"a"},"valueQuantity":{"value":-2.00}},'
        '{"code":{"text":"b"},"valueQuantity":{"value":0.001530}},'
        '{"code":{"text":"c"},"valueQuantity":{"value":123456789012345678901234567890}}]}'
    ).replace("TAG", tag)
    r = await client.put(f"/Observation/dec-{tag}", content=text,
                         headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    r = await client.patch(f"/Observation/dec-{tag}", json=patch,
                           headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    read = await client.get(f"/Observation/dec-{tag}")
    want, _ = _split_meta(_parse(text))
    got, _ = _split_meta(_parse(read.content))
    want["status"] = "amended"
    assert _first_difference(want, got) is None
    for literal in (b"66.899999999999991", b"-2.00", b"0.001530",
                    b"123456789012345678901234567890"):
        assert literal in read.content
    # The index still holds the number: quantity search finds it.
    r = await client.get("/Observation", params={"identifier": f"urn:test|{tag}",
                                                 "value-quantity": "gt66.8"})
    assert r.json()["total"] == 1
