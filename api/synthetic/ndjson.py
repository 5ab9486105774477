"""Load NDJSON files (a bulk export, or `python -m api seed --out DIR`) into a FHIR server
through its public API: the seed's load path (`load.post_bundle`, transaction Bundles that
PUT each resource at its id), fed from files instead of the generator.

Types that others refer to go first (organisations, sites, staff, patients), then the rest,
one type at a time; a file is read line by line and posted `batch` resources at a time,
`concurrency` Bundles at once, so memory holds a few Bundles whatever the size of the files.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import orjson

from api.synthetic.generate import transaction
from api.synthetic.load import Summary, post_bundle, report

FIRST = ("Organization", "Location", "Practitioner", "PractitionerRole", "HealthcareService",
         "Patient", "RelatedPerson")


def files_in_order(directory: Path) -> list[Path]:
    """The `<Type>.ndjson` files of `directory`, referred-to types first."""
    found = {p.name.removesuffix(".ndjson"): p for p in directory.glob("*.ndjson")}
    first = [found.pop(t) for t in FIRST if t in found]
    return first + [found[t] for t in sorted(found)]


def batches(path: Path, size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                batch.append(orjson.loads(line))
                if len(batch) >= size:
                    yield batch
                    batch = []
    if batch:
        yield batch


Posted = tuple[str, int, bool, str | None]  # file, resources, Patients?, error


async def _post(client: httpx.AsyncClient, name: str, resources: list[dict]) -> Posted:
    error = await post_bundle(client, orjson.dumps(transaction(resources)))
    return name, len(resources), resources[0]["resourceType"] == "Patient", error


def _settle(summary: Summary, done: set[asyncio.Task[Posted]]) -> None:
    for task in done:
        name, count, patients, error = task.result()
        if error:
            summary.failures.append(f"{name}: {error}")
        else:
            summary.resources += count
            summary.patients += count if patients else 0


async def load_ndjson(*, client: httpx.AsyncClient, directory: Path, batch: int = 100,
                      concurrency: int = 4) -> Summary:
    """Post every resource in the NDJSON files of `directory` through `client` (its base_url
    the FHIR base); `patients` counts the Patients loaded."""
    summary = Summary()
    started = time.perf_counter()
    for path in files_in_order(directory):
        pending: set[asyncio.Task[Posted]] = set()
        for resources in batches(path, batch):
            pending.add(asyncio.create_task(_post(client, path.name, resources)))
            if len(pending) >= concurrency:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                _settle(summary, done)
        if pending:  # a type is in before the next (which may refer to it) starts
            done, _ = await asyncio.wait(pending)
            _settle(summary, done)
    summary.seconds = time.perf_counter() - started
    return summary


async def load_command(*, url: str, directory: Path, concurrency: int,
                       token: Callable[[], Awaitable[str]]) -> int:
    """`python -m api seed --from DIR`: load NDJSON files through the API; exit status."""
    if not directory.is_dir() or not any(directory.glob("*.ndjson")):
        sys.stderr.write(f"{directory} holds no <Type>.ndjson files\n")
        return 2
    async with httpx.AsyncClient(base_url=url.rstrip("/") + "/", timeout=120) as client:
        client.headers["Authorization"] = f"Bearer {await token()}"
        summary = await load_ndjson(client=client, directory=directory,
                                    concurrency=concurrency)
    report(summary, sys.stderr)
    return 1 if summary.failures else 0
