"""Python CPU per request, in-process: the app (access control and audit as served) driven
through httpx's ASGI transport, as a GP of a practice and as the backend service.

    uv run python bench/inproc.py --db postgresql://postgres@127.0.0.1:5432/carenet_x -n 2000
    uv run python bench/inproc.py ... --profile read-gp      # cProfile of that workload

The database is dropped and created. Requests are sent `--concurrency` at a time; each
workload reports wall time and this process's CPU time (`time.process_time`: the server's
Python, the client's and the audit log's background writes, not PostgreSQL's) per request,
after the audit log has stored everything the workload queued. The client's share is the
same before and after a change, so compare the figures of two runs, not their absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api import audit as api_audit  # noqa: E402
from api.app import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from bench.run import cpu_ticks, pg_backends  # noqa: E402
from tests.tokens import bearer, mint  # noqa: E402

SDS = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"


async def recreate(url: str) -> None:
    base, _, name = url.rpartition("/")
    conn = await asyncpg.connect(base + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def observation(patient: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                 "display": "Heart rate"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "effectiveDateTime": "2026-11-02T10:00:00Z",
            "valueQuantity": {"value": random.randint(50, 110), "unit": "beats/minute",
                              "system": "http://unitsofmeasure.org", "code": "/min"}}


async def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("-n", type=int, default=2000, help="requests per workload")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--profile", help="cProfile this workload (e.g. read-gp, create-gp)")
    ap.add_argument("--only", help="comma-separated workloads to run")
    ap.add_argument("--unaudited", action="store_true",
                    help="also run each read workload with the audit of reads switched off "
                         "(as bench/unaudited_app.py; never deployed): what the audit costs")
    args = ap.parse_args(argv)
    dbname = args.db.rpartition("/")[2]
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    await recreate(args.db)
    app = create_app(Settings(database_url=args.db))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test/fhir") as c:
            system = bearer(await mint(app))

            async def make(body: dict[str, Any]) -> str:
                r = await c.post(f"/{body['resourceType']}", json=body, headers=system)
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            org = await make({"resourceType": "Organization", "name": "Bench Surgery"})
            gp = await make({"resourceType": "Practitioner", "name": [{"family": "Gee"}]})
            await make({"resourceType": "PractitionerRole",
                        "practitioner": {"reference": f"Practitioner/{gp}"},
                        "organization": {"reference": f"Organization/{org}"},
                        "code": [{"coding": [{"system": SDS, "code": "R0260"}]}]})
            patients = [await make({
                "resourceType": "Patient", "name": [{"family": f"P{i}"}],
                "generalPractitioner": [{"reference": f"Organization/{org}"}]})
                for i in range(args.patients)]
            gp_headers = bearer(await mint(app, sub=f"Practitioner/{gp}", scope="user/*.cruds",
                                           fhir_user=f"Practitioner/{gp}"))

            def read(_: int) -> Any:
                return c.get(f"/Patient/{random.choice(patients)}", headers=headers)

            def create(_: int) -> Any:
                return c.post("/Observation", json=observation(random.choice(patients)),
                              headers={**headers, "Prefer": "return=minimal"})

            def mixed(i: int) -> Any:  # a GP's app: a write, then reads, in turn
                return create(i) if i % 4 == 0 else read(i)

            workloads = {"read-gp": (read, gp_headers), "read-system": (read, system),
                         "create-gp": (create, gp_headers), "create-system": (create, system),
                         "mixed-gp": (mixed, gp_headers)}
            wanted = args.only.split(",") if args.only else list(workloads)
            if args.unaudited:
                wanted = [w for name in wanted for w in (
                    (name, name + "-unaudited") if name.startswith("read") else (name,))]
            print("| workload | n | wall ms/req | process CPU ms/req | PG CPU ms/req |\n"
                  "|---|---:|---:|---:|---:|")
            submit = api_audit.AuditTrail.__dict__["_submit"]
            for name in wanted:
                send, headers = workloads[name.removesuffix("-unaudited")]
                api_audit.AuditTrail._submit = (  # type: ignore[method-assign]
                    staticmethod(lambda scope, status: None) if name.endswith("-unaudited")
                    else submit)
                for i in range(50):  # warm: every patient decided, every token cached
                    await send(i)
                await app.state.audit.flush()
                profiler = cProfile.Profile() if name == args.profile else None
                backends = pg_backends(dbname)
                pg0 = cpu_ticks(backends)
                t0, c0 = time.perf_counter(), time.process_time()
                if profiler:
                    profiler.enable()
                queue = iter(range(args.n))

                async def worker(queue: Any = queue, send: Any = send) -> None:
                    for i in queue:
                        r = await send(i)
                        assert r.status_code in (200, 201), r.text

                await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                await app.state.audit.flush()
                if profiler:
                    profiler.disable()
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                # Connections the pools opened during the run count from zero.
                pg1 = cpu_ticks(sorted(set(backends) | set(pg_backends(dbname))))
                pg = sum(t - pg0.get(p, 0) for p, t in pg1.items()) * tick_ms
                print(f"| {name} | {args.n} | {wall * 1000 / args.n:.3f} "
                      f"| {cpu * 1000 / args.n:.3f} | {pg / args.n:.3f} |", flush=True)
                if profiler:
                    out = Path(f"/tmp/inproc-{name}.prof")
                    profiler.dump_stats(out)
                    stats = pstats.Stats(str(out)).sort_stats("cumulative")
                    stats.print_stats(45)
                    stats.sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    asyncio.run(main())
