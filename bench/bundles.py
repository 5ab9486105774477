"""Batch and transaction Bundles of 100, 1,000 and 5,000 Patient creates, on SQLite and
PostgreSQL: seconds per Bundle and milliseconds per entry.

In-process: the ASGI app (api.app.create_app, with access control and audit as served)
driven by httpx's ASGI transport, so the figures are the server's work without the network.
Each backend gets a fresh database (a temporary SQLite file; PostgreSQL database
`carenet_bench_bundles`, dropped and created at 127.0.0.1:5432 unless --pg names another
server). Every Bundle must answer 200 with every entry 201, or the run fails.

    uv run python bench/bundles.py                       # both backends, 100 1000 5000
    uv run python bench/bundles.py --sizes 100 1000 --backends sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from api.app import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from tests.tokens import bearer, mint  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/carenet_bench_bundles"


def bundle(kind: str, size: int, run: str) -> dict[str, Any]:
    """`size` Patient creates, each with its own identifier (nothing conditional)."""
    return {"resourceType": "Bundle", "type": kind, "entry": [
        {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
         "resource": {"resourceType": "Patient",
                      "identifier": [{"system": "urn:bench", "value": f"{run}-{i}"}],
                      "name": [{"family": f"Bench{i}", "given": ["Ann"]}],
                      "gender": "female", "birthDate": "1950-01-01"},
         "request": {"method": "POST", "url": "Patient"}} for i in range(size)]}


async def fresh_postgres(url: str) -> None:
    import asyncpg

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(False)
    conn = await asyncpg.connect(admin, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        await conn.close()


async def measure(url: str, sizes: list[int]) -> list[tuple[str, int, float]]:
    app = create_app(Settings(database_url=url))
    out = []
    async with app.router.lifespan_context(app):
        token = await mint(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test/fhir",
                                     headers=bearer(token), timeout=3600) as client:
            for size in sizes:
                for kind in ("transaction", "batch"):
                    body = bundle(kind, size, f"{kind}-{size}-{time.time_ns()}")
                    start = time.perf_counter()
                    r = await client.post("", json=body,
                                          headers={"Prefer": "return=minimal"})
                    seconds = time.perf_counter() - start
                    if r.status_code != 200:
                        raise SystemExit(f"{kind} of {size}: {r.status_code} {r.text[:500]}")
                    statuses = {e["response"]["status"] for e in r.json()["entry"]}
                    if statuses != {"201 Created"}:
                        raise SystemExit(f"{kind} of {size}: entry statuses {statuses}")
                    out.append((kind, size, seconds))
                    print(f"  {kind:<11} {size:>5}: {seconds:7.2f} s", file=sys.stderr)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])
    parser.add_argument("--pg", default=PG, help="a PostgreSQL database to drop and create")
    args = parser.parse_args()
    rows = []
    for backend in args.backends:
        print(f"{backend}:", file=sys.stderr)
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                results = await measure(f"sqlite:///{tmp}/bench.db", args.sizes)
        else:
            await fresh_postgres(args.pg)
            results = await measure(args.pg, args.sizes)
        rows += [(backend, *r) for r in results]
    print("| backend | Bundle | entries | seconds | ms per entry |")
    print("|---|---|---:|---:|---:|")
    for backend, kind, size, seconds in rows:
        print(f"| {backend} | {kind} | {size:,} | {seconds:.2f} | {1000 * seconds / size:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
