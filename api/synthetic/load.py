"""Load a synthetic network into a FHIR server through its public API (`python -m api seed`).

The organisations-and-staff Bundle goes first (patients refer to it), then one transaction
Bundle per patient, `concurrency` at a time, with httpx. Every failure is reported with the
server's OperationOutcome text; nothing is hidden or retried silently past a few attempts.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO

import httpx
import orjson

from api.synthetic.generate import generate, transaction, write_ndjson

FHIR_JSON = "application/fhir+json"
RETRIES = 3


@dataclass(slots=True)
class Summary:
    patients: int = 0
    resources: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.resources / self.seconds if self.seconds else 0.0
        return (f"patients {self.patients}, resources {self.resources}, "
                f"{self.seconds:.1f} s, {rate:,.0f} resources/s, "
                f"failures {len(self.failures)}")


class Progress:
    """One stderr line, rewritten in place on a terminal; a line per tenth otherwise."""

    def __init__(self, total: int, stream: IO[str], prefix: str = "") -> None:
        self.total, self.stream, self.prefix = total, stream, prefix
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self._last_draw = 0.0
        self._last_tenth = -1

    def update(self, summary: Summary, *, final: bool = False) -> None:
        now = time.perf_counter()
        done = summary.patients + len(summary.failures)
        if self.tty:
            if final or now - self._last_draw > 0.2:
                self._last_draw = now
                width = 30
                filled = int(width * done / max(self.total, 1))
                rate = summary.resources / max(now - self.started, 1e-9)
                self.stream.write(f"\r{self.prefix}[{'#' * filled}{'.' * (width - filled)}] "
                                  f"{done}/{self.total} patients, {summary.resources} "
                                  f"resources, {rate:,.0f}/s, {len(summary.failures)} failed ")
                if final:
                    self.stream.write("\n")
                self.stream.flush()
            return
        tenth = 10 * done // max(self.total, 1)
        if tenth > self._last_tenth or (final and done < self.total):
            self._last_tenth = tenth
            self.stream.write(f"{self.prefix}{done}/{self.total} patients, "
                              f"{summary.resources} resources, "
                              f"{now - self.started:.1f} s\n")
            self.stream.flush()


def outcome_text(response: httpx.Response) -> str:
    """The diagnostics of an OperationOutcome answer, or the start of whatever came back."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return "; ".join(str(i.get("diagnostics") or i.get("details", {}).get("text") or
                             i.get("code")) for i in body.get("issue", []))
    return str(body)[:300]


async def post_bundle(client: httpx.AsyncClient, body: bytes) -> str | None:
    """POST one transaction Bundle to the base; None on success, else why it failed."""
    for attempt in range(RETRIES):
        try:
            response = await client.post("", content=body, headers={
                "Content-Type": FHIR_JSON, "Accept": FHIR_JSON, "Prefer": "return=minimal"})
        except httpx.TransportError as exc:
            if attempt == RETRIES - 1:
                return f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.5 * (attempt + 1))
            continue
        if response.status_code < 400:
            return None
        if response.status_code in (429, 503) and attempt < RETRIES - 1:
            await asyncio.sleep(0.5 * (attempt + 1))
            continue
        return f"HTTP {response.status_code}: {outcome_text(response)}"
    return "gave up"


async def load(*, client: httpx.AsyncClient, seed: int, n_patients: int, as_of: date,
               concurrency: int = 8, progress: IO[str] | None = None,
               prefix: str = "") -> Summary:
    """Generate the network and post it through `client` (its base_url is the FHIR base)."""
    summary = Summary()
    started = time.perf_counter()
    network, records = generate(seed, n_patients, as_of)
    error = await post_bundle(client, orjson.dumps(transaction(network.resources)))
    if error:
        summary.failures.append(f"organisations and staff: {error}")
        summary.seconds = time.perf_counter() - started
        return summary
    summary.resources += len(network.resources)
    bar = Progress(n_patients, progress, prefix) if progress else None
    queue: asyncio.Queue[tuple[int, bytes, int] | None] = asyncio.Queue(concurrency * 2)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            index, body, count = item
            try:
                error = await post_bundle(client, body)
            except Exception as exc:  # noqa: BLE001 - report it and keep the other workers going
                error = f"{type(exc).__name__}: {exc}"
            if error:
                summary.failures.append(f"patient {index}: {error}")
            else:
                summary.patients += 1
                summary.resources += count
            if bar:
                bar.update(summary)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        for record in records:
            body = orjson.dumps(transaction(record.resources))
            await queue.put((record.index, body, len(record.resources)))
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
    summary.seconds = time.perf_counter() - started
    if bar:
        bar.update(summary, final=True)
    return summary


async def has_patients(client: httpx.AsyncClient) -> bool:
    response = await client.get("Patient", params={"_count": "1"},
                                headers={"Accept": FHIR_JSON})
    response.raise_for_status()
    return bool(response.json().get("entry"))


async def wait_for(client: httpx.AsyncClient, seconds: float) -> None:
    """Wait until the server answers /metadata (it may still be starting)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if (await client.get("metadata")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no FHIR server at {client.base_url} after {seconds:.0f} s")
        await asyncio.sleep(0.2)


def report(summary: Summary, stream: IO[str], prefix: str = "") -> None:
    stream.write(f"{prefix}{summary.line()}\n")
    for failure in summary.failures[:20]:
        stream.write(f"{prefix}  failed: {failure}\n")
    if len(summary.failures) > 20:
        stream.write(f"{prefix}  ... and {len(summary.failures) - 20} more failures\n")


async def seed_command(*, url: str | None, out: Path | None, seed: int, n_patients: int,
                       as_of: date, concurrency: int, if_empty: bool, wait: float,
                       prefix: str = "",
                       token: Callable[[], Awaitable[str]] | None = None) -> int:
    """`python -m api seed`: write NDJSON and/or load through the API; exit status."""
    err = sys.stderr
    if out is not None:
        started = time.perf_counter()
        network, records = generate(seed, n_patients, as_of)
        counts = write_ndjson(out, network, records)
        err.write(f"{prefix}wrote {sum(counts.values())} resources of {len(counts)} types to "
                  f"{out} in {time.perf_counter() - started:.1f} s\n")
    if url is None:
        return 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url.rstrip("/") + "/", timeout=120,
                                 limits=limits) as client:
        if wait:
            await wait_for(client, wait)
        if token is not None:  # after the wait: the server may create its keys on start
            client.headers["Authorization"] = f"Bearer {await token()}"
        if if_empty and await has_patients(client):
            err.write(f"{prefix}{url} already holds patients; nothing loaded\n")
            return 0
        err.write(f"{prefix}loading {n_patients} patients (seed {seed}, as of {as_of}) "
                  f"into {url}\n")
        summary = await load(client=client, seed=seed, n_patients=n_patients, as_of=as_of,
                             concurrency=concurrency, progress=err, prefix=prefix)
    report(summary, err, prefix)
    return 1 if summary.failures else 0
