"""Do patient searches stay flat as the audit grows? (issue 16)

    uv run python bench/audit_growth.py --db sqlite:////tmp/carenet_audit.db \
        --checkpoints 0,10000,100000,1000000
    uv run python bench/audit_growth.py \
        --db postgresql://postgres@127.0.0.1:5432/carenet_audit --checkpoints 0,100000

In process, through the real application (ASGI, the operator's token): a fresh database with
one practice, its GP, the patient X with `--observations` Observations and a neighbour with as
many. Then, between checkpoints, AuditEvents are stored in bulk through the audit's own write
path (`consent.audit.AuditLog`: `submit`, then its background task stores batches with
`consent.audit.write`), every one filed
under X (a read of X's record by the GP: the worst case, X's own log grows); at each
checkpoint `Observation?patient=X`, `Observation?subject=Patient/X` and X's
`AuditEvent?patient=X&_count=10` are timed (the median of `--repeat` requests, as the GP,
after one unmeasured request). Prints one line per checkpoint and a markdown table.

The database given is emptied first (SQLite: the file is removed; PostgreSQL: the schema is
dropped and made again).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.app import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from consent import audit  # noqa: E402
from consent.grants import operator_token  # noqa: E402
from consent.principals import staff_principal  # noqa: E402

BASE = "http://127.0.0.1:8180"
SDS = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"


async def fresh(db: str) -> None:
    if db.startswith("sqlite"):
        path = db.split(":///", 1)[1]
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        return
    conn = await asyncpg.connect(db)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    r = await client.post(f"/fhir/{body['resourceType']}", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def timed(client: httpx.AsyncClient, path: str, headers: dict[str, str],
                repeat: int) -> tuple[float, int]:
    r = await client.get(path, headers=headers)
    assert r.status_code == 200, r.text
    found = len(r.json().get("entry", ()))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        r = await client.get(path, headers=headers)
        times.append(time.perf_counter() - start)
        assert r.status_code == 200, r.text
    return statistics.median(times), found


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="sqlite:////tmp/carenet_audit_growth.db")
    ap.add_argument("--checkpoints", default="0,10000,100000",
                    help="audit sizes (AuditEvents under X) at which to time the searches")
    ap.add_argument("--observations", type=int, default=50)
    ap.add_argument("--batch", type=int, default=5000, help="AuditEvents per transaction")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-log", action="store_true",
                    help="do not time X's own log search (before issue 16 it took minutes on "
                         "SQLite at 20,000 events)")
    args = ap.parse_args()
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    await fresh(args.db)
    settings = Settings(database_url=args.db, base_url=f"{BASE}/fhir")
    app = create_app(settings)
    rows = []
    async with app.router.lifespan_context(app):
        token = await operator_token(app.state.db, fhir_base=f"{BASE}/fhir",
                                     client_id="carenet-bench")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=600,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            org = await post(client, {"resourceType": "Organization", "name": "Practice"})
            gp = await post(client, {"resourceType": "Practitioner", "name": [{"family": "Gp"}]})
            role = await post(client, {
                "resourceType": "PractitionerRole",
                "practitioner": {"reference": f"Practitioner/{gp}"},
                "organization": {"reference": f"Organization/{org}"},
                "code": [{"coding": [{"system": SDS, "code": "R0260"}]}]})
            patients = [await post(client, {
                "resourceType": "Patient", "name": [{"family": f"P{i}"}],
                "generalPractitioner": [{"reference": f"Organization/{org}"}]}) for i in range(2)]
            for pid in patients:
                for i in range(args.observations):
                    await post(client, {"resourceType": "Observation", "status": "final",
                                        "code": {"coding": [{"system": "urn:bench",
                                                             "code": str(i)}]},
                                        "subject": {"reference": f"Patient/{pid}"}})
            x = patients[0]
            as_gp = {"Authorization": "Bearer " + await operator_token(
                app.state.db, fhir_base=f"{BASE}/fhir", client_id="carenet-bench",
                scope="user/*.rs", user=f"Practitioner/{gp}")}
            reader = staff_principal(user=f"Practitioner/{gp}", practitioner_role=role,
                                     organization=f"Organization/{org}", sds_code="R0260")
            await app.state.audit.flush()
            stored = 0
            for target in checkpoints:
                start = time.perf_counter()
                while stored < target:
                    n = min(args.batch, target - stored)
                    records = [audit.AuditRecord(
                        principal=reader, interaction="read", resource_type="Observation",
                        resource_id=f"bench-{stored + i}", patient_ids=(x,),
                        query=None, client_id="bench", request_id=f"bench-{stored + i}")
                        for i in range(n)]
                    app.state.audit.submit(records)  # the audit log's own bulk path
                    await app.state.audit.flush()
                    stored += n
                loaded = time.perf_counter() - start
                row = {"audit": stored, "load_s": loaded}
                row["log"], row["log_n"] = float("nan"), 0
                for name, path in (
                        ("patient", f"/fhir/Observation?patient={x}"),
                        ("subject", f"/fhir/Observation?subject=Patient/{x}"),
                        ("log", f"/fhir/AuditEvent?patient={x}&_count=10")):
                    if name == "log" and args.no_log:
                        continue
                    hdrs = as_gp if name != "log" else {}
                    row[name], row[name + "_n"] = await timed(client, path, hdrs, args.repeat)
                await app.state.audit.flush()
                print(f"audit={stored:>9} loaded in {loaded:7.1f} s  "
                      f"patient={row['patient'] * 1000:8.1f} ms ({row['patient_n']})  "
                      f"subject={row['subject'] * 1000:8.1f} ms ({row['subject_n']})  "
                      f"log={row['log'] * 1000:8.1f} ms", flush=True)
                rows.append(row)
    print()
    print(f"database: {args.db.split('://')[0]}; {args.observations} Observations of X; "
          f"median of {args.repeat}")
    print("| AuditEvents under X | Observation?patient=X | Observation?subject=Patient/X | "
          "AuditEvent?patient=X&_count=10 | load time |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['audit']:,} | {row['patient'] * 1000:.1f} ms | "
              f"{row['subject'] * 1000:.1f} ms | {row['log'] * 1000:.1f} ms | "
              f"{row['load_s']:.0f} s |")


if __name__ == "__main__":
    asyncio.run(main())
