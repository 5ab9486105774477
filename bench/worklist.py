"""Worklist speed on a synthetic network: full build, the event path's cost, "my worklist".

    uv run python bench/worklist.py --template carenet_riskbench_100000
    uv run python bench/worklist.py --db carenet_worklistbench --reuse   # skip the copy

1. Copies the stratified network `--template` (a database bench/stratify.py made: Patients,
   records and RiskAssessments) to `--db` with CREATE DATABASE ... TEMPLATE (the template
   is never modified), and migrates the copy (adds the worklist tables).
2. **Full build**: `careplans.worklist.build.build` over everyone, as `python -m careplans
   worklist build` does (items created, Tasks written and audited); then **rebuild** (nothing
   changed: creates nothing).
3. **Event path overhead**: `--writes` Encounter creates (class EMER, so the Encounter write
   rule stages an outbox row) through the store's write path, alternating with the rule
   registered and unregistered; the median difference per write. Then the **event latency**:
   with the worker running, from an A&E Encounter of a high-risk patient committed to its
   follow-up item committed.
4. **My worklist**: starts the server on 127.0.0.1:`--port` over the copy and runs
   `wrk --latency` with `--connections` connections for `--duration` s against
   `GET /fhir/Task/$my-worklist` as the case manager with the most open items.

The machine is shared: figures are wall-clock on whatever else was running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = "postgresql://postgres@127.0.0.1:5432"


async def copy(template: str, db: str) -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
        await conn.execute(f'CREATE DATABASE "{db}" TEMPLATE "{template}"')
    finally:
        await conn.close()


async def measure(args: argparse.Namespace) -> dict[str, object]:
    import sqlalchemy as sa

    from careplans.worklist import build as builder
    from careplans.worklist import events
    from fhir import interactions, writerules
    from fhir.db import Database
    from fhir.guard import guarding
    from fhir.migrate import upgrade

    url = f"{PG}/{args.db}"
    events.register_rules()
    db = Database(url)
    out: dict[str, object] = {}
    try:
        await upgrade(db.engine)
        today = datetime.now(UTC).date()
        started = time.perf_counter()
        built = await builder.build(db, as_of=today)
        out["full build s"] = round(time.perf_counter() - started, 1)
        out["patients considered"] = built.considered
        out["items created"] = built.created
        started = time.perf_counter()
        again = await builder.build(db, as_of=today)
        out["rebuild s"] = round(time.perf_counter() - started, 1)
        out["rebuild created"] = again.created

        async with db.read() as conn:
            risky = (await conn.execute(sa.text(
                "SELECT patient_id FROM worklist_item WHERE rule = 'no-plan' LIMIT 1"))).scalar()
        timings: dict[bool, list[float]] = {True: [], False: []}
        for i in range(args.writes * 2):
            on = i % 2 == 0
            if on:
                writerules.register("Encounter", events.RULE)
            else:
                writerules.unregister("Encounter")
            body = {"resourceType": "Encounter", "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                              "code": "EMER"},
                    "subject": {"reference": f"Patient/{risky}"},
                    "period": {"start": today.isoformat(), "end": today.isoformat()}}
            t0 = time.perf_counter()
            async with db.write() as conn:
                with guarding(None):
                    await interactions.create(conn, "Encounter", body)
            timings[on].append((time.perf_counter() - t0) * 1000)
        writerules.register("Encounter", events.RULE)
        with_rule, without = statistics.median(timings[True]), statistics.median(timings[False])
        out["write median ms (with outbox)"] = round(with_rule, 2)
        out["write median ms (without)"] = round(without, 2)
        out["event path adds ms"] = round(with_rule - without, 2)
        await events.drain(db)  # the staged events of the measurement
        worker = events.Worker(db)
        worker.start()
        try:
            body["period"] = {"start": today.isoformat(), "end": today.isoformat()}
            body.pop("id", None)
            t0 = time.perf_counter()
            async with db.write() as conn:
                with guarding(None):
                    made = await interactions.create(conn, "Encounter", body)
            assert made.stored is not None
            period = made.stored.id
            while True:
                async with db.read() as conn:
                    found = (await conn.execute(sa.text(
                        "SELECT 1 FROM worklist_item WHERE rule = 'ae-follow-up' "
                        "AND period = :p"), {"p": period})).scalar()
                if found or time.perf_counter() - t0 > 10:
                    break
                await asyncio.sleep(0.01)
            out["event to item s"] = round(time.perf_counter() - t0, 3) if found else "none"
        finally:
            await worker.stop()
        await claim_for_a_case_manager(db, args.claims)
        async with db.read() as conn:
            row = (await conn.execute(sa.text(
                "SELECT i.owner, count(*) FROM worklist_item i WHERE i.open AND i.owner "
                "LIKE 'PractitionerRole/%' GROUP BY i.owner ORDER BY 2 DESC LIMIT 1"))).first()
            out["case manager items"] = row[1] if row else 0
            practitioner = None
            if row:
                practitioner = (await conn.execute(sa.text(
                    "SELECT content->'practitioner'->>'reference' FROM resource WHERE "
                    "type = 'PractitionerRole' AND id = :id"),
                    {"id": row[0].partition("/")[2]})).scalar()
        out["_practitioner"] = practitioner
    finally:
        await db.dispose()
    return out


async def owner_only(args: argparse.Namespace) -> dict[str, object]:
    """The practitioner of the case manager with the most open items (for --only-wrk)."""
    import asyncpg as pg

    conn = await pg.connect(f"{PG}/{args.db}")
    try:
        practitioner = await conn.fetchval(
            "SELECT r.content->'practitioner'->>'reference' FROM resource r JOIN ("
            "SELECT owner, count(*) n FROM worklist_item WHERE open AND owner IS NOT NULL "
            "GROUP BY owner ORDER BY n DESC LIMIT 1) i ON r.type = 'PractitionerRole' "
            "AND 'PractitionerRole/' || r.id = i.owner")
    finally:
        await conn.close()
    return {"_practitioner": practitioner}


async def claim_for_a_case_manager(db: object, n: int) -> None:
    """Set-up for "my worklist": a case manager (SDS R0600) of the practice with the most
    open unassigned items (or of its network) claims `n` of them, through the write path
    ($claim's steps)."""
    import orjson
    import sqlalchemy as sa

    from careplans.worklist import states
    from fhir import interactions, store
    from fhir.guard import guarding

    async with db.read() as conn:  # type: ignore[attr-defined]
        team = (await conn.execute(sa.text(
            "SELECT team FROM worklist_item WHERE open AND owner IS NULL AND team IS NOT NULL "
            "GROUP BY team ORDER BY count(*) DESC LIMIT 1"))).scalar()
        role = (await conn.execute(sa.text(
            "SELECT id FROM resource WHERE type = 'PractitionerRole' AND "
            "content->'organization'->>'reference' IN (:org, (SELECT content->'partOf'->>"
            "'reference' FROM resource WHERE type = 'Organization' AND id = :team)) AND "
            "content::text LIKE '%R0600%' ORDER BY id LIMIT 1"),
            {"org": f"Organization/{team}", "team": team})).scalar()
        if role is None:
            return
        ids = (await conn.execute(sa.text(
            "SELECT task_id FROM worklist_item WHERE open AND owner IS NULL AND team = :t "
            "ORDER BY task_id LIMIT :n"), {"t": team, "n": n})).scalars().all()
    for task_id in ids:
        async with db.write() as conn:  # type: ignore[attr-defined]
            with guarding(None):
                current = await store.read_current(conn, "Task", task_id, for_update=True)
                assert current is not None and current.content is not None
                new = states.claim(orjson.loads(current.content), f"PractitionerRole/{role}")
                await interactions.update(conn, "Task", task_id, new, current.version)


def wrk(args: argparse.Namespace, practitioner: str) -> dict[str, object]:
    env = {**os.environ, "CARENET_DATABASE_URL": f"{PG}/{args.db}",
           "CARENET_MIGRATE_ON_START": "false"}
    base = f"http://127.0.0.1:{args.port}"
    token = subprocess.run(
        [sys.executable, "-m", "api", "token", "--user", practitioner, "--base", base + "/fhir"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout.strip()
    server = subprocess.Popen(
        [sys.executable, "-m", "api", "serve", "--host", "127.0.0.1", "--port", str(args.port),
         "--workers", str(args.workers)], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import httpx

        for _ in range(120):
            try:
                if httpx.get(base + "/fhir/metadata", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        probe = httpx.get(base + "/fhir/Task/$my-worklist",
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
        probe.raise_for_status()
        items = len(probe.json().get("entry", ()))
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n'
                         'wrk.headers["Accept"] = "application/fhir+json"\n'
                         'wrk.path = "/fhir/Task/$my-worklist"\n')
        result = subprocess.run(
            ["wrk", "--latency", "-t", "2", "-c", str(args.connections),
             "-d", f"{args.duration}s", "-s", script.name, base],
            check=True, capture_output=True, text=True).stdout
        found = dict(re.findall(r"^\s*(50|75|90|99)%\s+(\S+)\s*$", result, re.M))
        print(result, file=sys.stderr)
        rate = re.search(r"Requests/sec:\s+(\S+)", result)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result)
        return {"my worklist entries": items, "p50": found.get("50"), "p90": found.get("90"),
                "p99": found.get("99"),
                "requests/s": rate.group(1) if rate else None,
                "non-2xx": int(errors.group(1)) if errors else 0,
                "connections": args.connections}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--template", default="carenet_riskbench_100000")
    parser.add_argument("--db", default="carenet_worklistbench")
    parser.add_argument("--reuse", action="store_true", help="use --db as it is")
    parser.add_argument("--only-wrk", action="store_true",
                        help="with --reuse: only the my-worklist load (after a full run)")
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--claims", type=int, default=60,
                        help="items the case manager claims (the length of their worklist)")
    parser.add_argument("--port", type=int, default=8137)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--drop", action="store_true", help="drop --db at the end")
    args = parser.parse_args()
    if not args.reuse:
        t0 = time.perf_counter()
        asyncio.run(copy(args.template, args.db))
        print(f"copied {args.template} -> {args.db} in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
    figures = asyncio.run(owner_only(args) if args.only_wrk else measure(args))
    practitioner = figures.pop("_practitioner")
    if practitioner:
        figures.update(wrk(args, str(practitioner)))
    print("| figure | value |\n|---|---|")
    for key, value in figures.items():
        print(f"| {key} | {value} |")
    if args.drop:
        async def drop() -> None:
            conn = await asyncpg.connect(f"{PG}/postgres")
            await conn.execute(f'DROP DATABASE IF EXISTS "{args.db}"')
            await conn.close()
        asyncio.run(drop())


if __name__ == "__main__":
    main()
