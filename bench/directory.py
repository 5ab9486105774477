"""Directory and booking on a network database: how fast free slots are found, how many
bookings a second the server takes, and what 50 concurrent bookings of one slot give.

    # once: a copy of a loaded network database, with the directory loaded into it
    uv run python bench/directory.py prepare --template carenet_riskbench_25000 \
        --db carenet_directory_bench25k [--patients 25000 --seed 42 --as-of 2025-06-01]
    # then (each run books slots, so free slots get fewer; prepare again to start afresh)
    uv run python bench/directory.py run --db carenet_directory_bench25k [--requests 400]

`prepare` copies the template (CREATE DATABASE ... TEMPLATE: the template is only read),
adds what migrations 0005 (hash columns: no value of the synthetic network is long enough to
need re-indexing) and 0009 (the position index table) add, when the copy lacks them, starts
the server on the copy and PUTs the directory of the same generated network (Locations,
HealthcareServices, Organizations, staff, Schedules, Slots) through the API as transaction
Bundles, then ANALYZE. `run` starts the server (`--workers`) on the copy, then as a patient of
the network:
- slot finding: the chained search `Slot?status=free&start=ge..&start=lt..&schedule.actor:
  HealthcareService.service-type=..&schedule.actor:Location.near=lat|lon|10|km&_sort=start
  &_count=10` (`--chain-requests`) and the same question as `Slot/$find` (`--requests`), for
  a random service type, week and postcode district, one request at a time (latency as a
  person typing sees it), then $find from `--clients` concurrent clients (throughput);
- booking: `--bookings` distinct free slots booked by `--clients` concurrent clients
  (the network's backend service books, so one token serves all patients);
- contention: 50 concurrent bookings of one free slot (exactly one must succeed).
Results: printed and written to bench/results/<timestamp>-network-directory.{json,md}.
Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from network import PG, launch, machine, save, stop_server  # noqa: E402

SERVICE = "https://carenet.invalid/fhir/CodeSystem/network-service"
TYPES = ("gp-appointment", "medication-review", "community-physiotherapy", "frailty-clinic",
         "social-prescribing")
POSITION_DDL = (  # migrations 0005 (hash columns) and 0009, for a database made before them
    "ALTER TABLE sp_token ADD COLUMN IF NOT EXISTS system_hash varchar(64)",
    "ALTER TABLE sp_token ADD COLUMN IF NOT EXISTS code_hash varchar(64)",
    "ALTER TABLE sp_string ADD COLUMN IF NOT EXISTS value_hash varchar(64)",
    "ALTER TABLE sp_uri ADD COLUMN IF NOT EXISTS value_hash varchar(64)",
    "CREATE TABLE IF NOT EXISTS sp_position (rid bigint NOT NULL, param varchar(64) NOT NULL, "
    "lat double precision NOT NULL, lon double precision NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_sp_position_lookup ON sp_position (param, lat, lon) "
    "INCLUDE (rid)",
    "CREATE INDEX IF NOT EXISTS ix_sp_position_rid ON sp_position (rid)",
)


def start(db: str, port: int, workers: int) -> Any:
    import subprocess
    cmd = [sys.executable, "-m", "api", "serve", "--port", str(port), "--workers", str(workers)]
    proc: subprocess.Popen = launch(cmd, {"CARENET_DATABASE_URL": f"{PG}/{db}",
                                          "CARENET_LOG_LEVEL": "warning",
                                          "CARENET_MIGRATE_ON_START": "false"}, port, None,
                                    "the server")
    return proc


async def token(db: str, port: int, **kw: Any) -> str:
    from consent.grants import operator_token
    from fhir.db import Database

    database = Database(f"{PG}/{db}", pool_size=1)
    try:
        return await operator_token(database, fhir_base=f"http://127.0.0.1:{port}/fhir",
                                    client_id="carenet-bench", lifetime=7200, **kw)
    finally:
        await database.dispose()


async def prepare(args: argparse.Namespace) -> None:
    from api.synthetic import generate, transaction

    admin = await asyncpg.connect(f"{PG}/postgres")
    try:
        if await admin.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", args.db):
            raise SystemExit(f"{args.db} exists; drop it first (DROP DATABASE {args.db})")
        await admin.execute(f'CREATE DATABASE "{args.db}" TEMPLATE "{args.template}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(f"{PG}/{args.db}")
    try:
        for statement in POSITION_DDL:
            await conn.execute(statement)
    finally:
        await conn.close()
    network, _ = generate(args.seed, args.patients, date.fromisoformat(args.as_of))
    directory = network.directory.resources
    staff = [r for r in network.resources if r["resourceType"] in ("Practitioner",
                                                                  "PractitionerRole")]
    resources = [*staff, *directory]
    proc = start(args.db, args.port, 1)
    try:
        headers = {"Authorization": f"Bearer {await token(args.db, args.port)}"}
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{args.port}/fhir",
                                     headers=headers, timeout=300) as client:
            for i in range(0, len(resources), 500):
                r = await client.post("", json=transaction(resources[i:i + 500]))
                if r.status_code != 200:
                    raise SystemExit(f"loading failed: {r.status_code} {r.text[:500]}")
        print(f"loaded {len(resources)} directory resources in "
              f"{time.perf_counter() - started:.1f} s")
    finally:
        stop_server(proc)
    conn = await asyncpg.connect(f"{PG}/{args.db}")
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 1),
            "mean": round(statistics.fmean(ordered), 1)}


async def _facts(db: str) -> tuple[str, date, list[tuple[float, float]], list[str]]:
    """A patient, the first slot date, the positions of the Locations, free slot ids."""
    conn = await asyncpg.connect(f"{PG}/{db}")
    try:
        patient = await conn.fetchval("SELECT id FROM resource WHERE type='Patient' AND NOT "
                                      "deleted ORDER BY rid LIMIT 1")
        first = await conn.fetchval("SELECT min(content->>'start') FROM resource "
                                    "WHERE type='Slot' AND NOT deleted")
        positions = [(r["lat"], r["lon"]) for r in await conn.fetch(
            "SELECT DISTINCT lat, lon FROM sp_position WHERE param='near'")]
        free = [r["id"] for r in await conn.fetch(
            "SELECT id FROM resource WHERE type='Slot' AND NOT deleted AND "
            "content->>'status' = 'free' ORDER BY random()")]
    finally:
        await conn.close()
    if first is None:
        raise SystemExit(f"{db} has no Slots: run `prepare` first")
    return patient, date.fromisoformat(first[:10]), positions, free


def find_query(rng: random.Random, first: date, positions: list[tuple[float, float]]
               ) -> list[tuple[str, str]]:
    """Slot/$find: the same question as `slot_query`."""
    day = first + timedelta(days=rng.randrange(14))
    lat, lon = rng.choice(positions)
    return [("service-type", f"{SERVICE}|{rng.choice(TYPES)}"), ("start", day.isoformat()),
            ("end", (day + timedelta(days=7)).isoformat()),
            ("near", f"{lat + rng.uniform(-0.02, 0.02):.5f}|{lon + rng.uniform(-0.02, 0.02):.5f}"
                     "|10|km"), ("_count", "10")]


def slot_query(rng: random.Random, first: date, positions: list[tuple[float, float]]
               ) -> list[tuple[str, str]]:
    day = first + timedelta(days=rng.randrange(14))
    lat, lon = rng.choice(positions)
    return [("status", "free"), ("start", f"ge{day.isoformat()}"),
            ("start", f"lt{(day + timedelta(days=7)).isoformat()}"),
            ("schedule.actor:HealthcareService.service-type",
             f"{SERVICE}|{rng.choice(TYPES)}"),
            ("schedule.actor:Location.near", f"{lat + rng.uniform(-0.02, 0.02):.5f}|"
                                             f"{lon + rng.uniform(-0.02, 0.02):.5f}|10|km"),
            ("_sort", "start"), ("_count", "10")]


async def run(args: argparse.Namespace) -> None:
    patient, first, positions, free = await _facts(args.db)
    rng = random.Random(7)
    proc = start(args.db, args.port, args.workers)
    result: dict[str, Any] = {"machine": machine(), "db": args.db, "workers": args.workers,
                              "clients": args.clients}
    try:
        as_patient = {"Authorization": "Bearer " + await token(
            args.db, args.port, scope="patient/*.rs openid fhirUser",
            user=f"Patient/{patient}", patient=patient)}
        as_system = {"Authorization": f"Bearer {await token(args.db, args.port)}"}
        base = f"http://127.0.0.1:{args.port}/fhir"
        limits = httpx.Limits(max_connections=args.clients + 60)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            for path, make, n, key in (("/Slot", slot_query, args.chain_requests, "search"),
                                       ("/Slot/$find", find_query, args.requests, "find")):
                for _ in range(10):  # warm up
                    await client.get(path, params=make(rng, first, positions),
                                     headers=as_patient)
                latencies, found = [], []
                for _ in range(n):
                    params = make(rng, first, positions)
                    t = time.perf_counter()
                    r = await client.get(path, params=params, headers=as_patient)
                    latencies.append(1000 * (time.perf_counter() - t))
                    if r.status_code != 200:
                        raise SystemExit(f"{path} failed: {r.status_code} {r.text[:300]}")
                    found.append(sum(e["search"]["mode"] == "match"
                                     for e in r.json().get("entry", ())))
                result[f"{key}_sequential_ms"] = percentiles(latencies)
                result[f"{key}_mean_results"] = round(statistics.fmean(found), 1)

            async def finder(n: int, out: list[float]) -> None:
                local = random.Random(n)
                for _ in range(args.requests // args.clients):
                    t = time.perf_counter()
                    r = await client.get("/Slot/$find",
                                         params=find_query(local, first, positions),
                                         headers=as_patient)
                    out.append(1000 * (time.perf_counter() - t))
                    assert r.status_code == 200, r.text[:300]

            concurrent: list[float] = []
            t0 = time.perf_counter()
            await asyncio.gather(*(finder(n, concurrent) for n in range(args.clients)))
            result["find_concurrent"] = {**percentiles(concurrent), "per_s": round(
                len(concurrent) / (time.perf_counter() - t0), 1)}

            patients = await _patients(args.db, args.bookings + 50)
            slots = free[:args.bookings]

            async def book(slot: str, who: str) -> int:
                body = {"resourceType": "Appointment", "status": "booked",
                        "slot": [{"reference": f"Slot/{slot}"}],
                        "participant": [{"actor": {"reference": f"Patient/{who}"},
                                         "status": "accepted"}]}
                r = await client.post("/Appointment", json=body, headers=as_system)
                return r.status_code

            queue = list(zip(slots, patients, strict=False))
            statuses: list[int] = []

            async def booker() -> None:
                while queue:
                    slot, who = queue.pop()
                    statuses.append(await book(slot, who))

            t0 = time.perf_counter()
            await asyncio.gather(*(booker() for _ in range(args.clients)))
            seconds = time.perf_counter() - t0
            result["booking"] = {"bookings": len(statuses), "seconds": round(seconds, 2),
                                 "per_s": round(len(statuses) / seconds, 1),
                                 "statuses": {str(s): statuses.count(s) for s in set(statuses)}}
            contested = free[args.bookings]
            t0 = time.perf_counter()
            fight = await asyncio.gather(*(book(contested, p) for p in patients[-50:]))
            result["contention"] = {"requests": 50, "seconds": round(time.perf_counter() - t0, 2),
                                    "statuses": {str(s): fight.count(s) for s in set(fight)}}
    finally:
        stop_server(proc)
    f, c, b, k = (result["find_sequential_ms"], result["find_concurrent"], result["booking"],
                  result["contention"])
    g = result["search_sequential_ms"]
    table = (f"## directory and booking on {args.db}\n\n- machine: {machine()} (shared with "
             f"other engineers' work: figures are noisy)\n- server: {args.workers} worker(s)\n\n"
             "| measure | p50 ms | p95 ms | p99 ms | max ms | rate |\n"
             "|---|---:|---:|---:|---:|---:|\n"
             f"| chained Slot search, one at a time ({args.chain_requests}) | {g['p50']} | "
             f"{g['p95']} | {g['p99']} | {g['max']} | mean {result['search_mean_results']} "
             "slots found |\n"
             f"| Slot/$find, one at a time ({args.requests}) | {f['p50']} | {f['p95']} | "
             f"{f['p99']} | {f['max']} | mean {result['find_mean_results']} slots found |\n"
             f"| Slot/$find, {args.clients} clients | {c['p50']} | {c['p95']} | {c['p99']} | "
             f"{c['max']} | {c['per_s']} searches/s |\n"
             f"| booking distinct slots, {args.clients} clients | | | | | {b['per_s']} "
             f"bookings/s ({b['statuses']}) |\n"
             f"| 50 concurrent bookings of one slot | | | | | {k['seconds']} s: "
             f"{k['statuses']} |\n")
    save("directory", result, table)


async def _patients(db: str, n: int) -> list[str]:
    conn = await asyncpg.connect(f"{PG}/{db}")
    try:
        return [r["id"] for r in await conn.fetch(
            "SELECT id FROM resource WHERE type='Patient' AND NOT deleted ORDER BY random() "
            "LIMIT $1", n)]
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--template", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--patients", type=int, default=25_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--as-of", default="2025-06-01")
    p.add_argument("--port", type=int, default=8137)
    r = sub.add_parser("run")
    r.add_argument("--db", required=True)
    r.add_argument("--port", type=int, default=8137)
    r.add_argument("--workers", type=int, default=1)
    r.add_argument("--clients", type=int, default=8)
    r.add_argument("--requests", type=int, default=400)
    r.add_argument("--chain-requests", type=int, default=100)
    r.add_argument("--bookings", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(prepare(args) if args.command == "prepare" else run(args))


if __name__ == "__main__":
    main()
