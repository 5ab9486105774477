"""What one audited read costs, part by part: Python (building the AuditEvent, its index
rows, its JSON, the statement's parameters) and PostgreSQL (the resource row, the history
row, the index rows), per record, in batches as the audit log writes them.

    uv run python bench/audit_cost.py --db postgresql://postgres@127.0.0.1:5432/carenet_x

The database is dropped and created (and migrated). Python: this process's CPU time
(`time.process_time`); PostgreSQL: the CPU of this connection's backend (/proc), both per
record. Each PostgreSQL part is measured by writing the same batches with less: the
resource rows alone, then with their history rows, then everything (`consent.audit.write`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inproc import recreate  # noqa: E402
from consent import audit  # noqa: E402
from consent.principals import Kind, Principal, Role  # noqa: E402
from fhir import interactions, store  # noqa: E402
from fhir.db import Database  # noqa: E402
from fhir.index import finish  # noqa: E402
from fhir.migrate import upgrade  # noqa: E402

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def backend_ms(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * TICK_MS


def records(n: int) -> list[audit.AuditRecord]:
    gp = Principal(Kind.STAFF, user="Practitioner/gp-1", organizations=("Organization/o-1",),
                   identities=("PractitionerRole/r-1",), role=next(iter(Role)),
                   scopes=frozenset({"user/*.cruds"}), client_id="ehr-app")
    return [audit.AuditRecord(principal=gp, interaction="read", resource_type="Patient",
                              resource_id=f"p-{i}", patient_ids=(f"p-{i}",), status=200,
                              client_id="ehr-app", source_ip="127.0.0.1",
                              request_id=f"req-{i:08d}") for i in range(n)]


def python_parts(batches: list[list[audit.AuditRecord]]) -> dict[str, float]:
    """Seconds of Python CPU spent in each part of making the batches' AuditEvents."""
    parts = dict.fromkeys(("event(): the AuditEvent dict", "index_rows(): its index rows",
                           "_stamp(): meta and JSON text", "finish(): index rows as stored"),
                          0.0)
    names = list(parts)
    for batch in batches:
        t0 = time.process_time()
        bodies = [audit.event(r, r.patient_ids[0]) for r in batch]
        t1 = time.process_time()
        for body in bodies:
            body["id"] = interactions.new_id()
        t2 = time.process_time()
        indexed = [audit.index_rows(b) for b in bodies]
        t3 = time.process_time()
        for body in bodies:
            store._stamp(body, 1, 0.0)
        t4 = time.process_time()
        for rows, _ in indexed:
            for name, found in rows.items():
                finish(name, found)
        t5 = time.process_time()
        for name, spent in zip(names, (t1 - t0, t3 - t2, t4 - t3, t5 - t4), strict=True):
            parts[name] += spent
    return parts


async def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("-n", type=int, default=20_000, help="records per measurement")
    ap.add_argument("--batch", type=int, default=200, help="records per transaction")
    args = ap.parse_args(argv)
    await recreate(args.db)
    db = Database(args.db, pool_size=1)
    await upgrade(db.engine)
    batches = [records(args.batch) for _ in range(args.n // args.batch)]
    n = len(batches) * args.batch

    # Python, part by part (no database), a batch at a time as the audit log builds them;
    # the first pass warms caches and is not counted.
    python_parts(batches)
    gc.freeze()  # as the server does after start-up (api/app.py): collections scan new objects
    parts = python_parts(batches)
    print("| Python part | µs per record |\n|---|---:|")
    for name, spent in parts.items():
        print(f"| {name} | {spent * 1e6 / n:.1f} |")

    async with db.engine.connect() as conn:
        pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        await conn.commit()

        async def measure(label: str, write: Any) -> None:
            c0, p0, w0 = time.process_time(), backend_ms(pid), time.perf_counter()
            for batch in batches:
                async with conn.begin():
                    await write(conn, batch)
            c1, p1, w1 = time.process_time(), backend_ms(pid), time.perf_counter()
            print(f"| {label} | {(c1 - c0) * 1e6 / n:.1f} | {(p1 - p0) * 1e3 / n:.1f} "
                  f"| {(w1 - w0) * 1e6 / n:.1f} |", flush=True)

        async def rows_only(conn: Any, batch: list[audit.AuditRecord]) -> None:
            values = []
            for r in batch:
                body = audit.event(r, r.patient_ids[0])
                body["id"] = interactions.new_id()
                values.append({"type": "AuditEvent", "id": body["id"], "last_updated": 0.0,
                               "patient_id": r.patient_ids[0], "security": None,
                               "content": store._stamp(body, 1, 0.0)})
            await conn.execute(store._INSERT_MANY_POSTGRES, {
                key: [v[key] for v in values]
                for key in ("type", "id", "last_updated", "patient_id", "security", "content")})

        async def with_history(conn: Any, batch: list[audit.AuditRecord]) -> None:
            await rows_only(conn, batch)
            await conn.execute(sa.text(
                "INSERT INTO resource_history (rid, type, id, version, last_updated, method, "
                "deleted, content) SELECT rid, type, id, 1, last_updated, 'POST', false, "
                "content FROM resource WHERE rid > (SELECT max(rid) - :n FROM resource)"),
                {"n": len(batch)})

        # The direction, as a probe (a temporary table, nothing of the schema): one
        # append-only row per record with the columns searches need, and the BALP event as
        # JSON beside them (served as AuditEvent from it), written in one statement.
        await conn.execute(sa.text(
            "CREATE TEMPORARY TABLE audit_probe (seq bigserial PRIMARY KEY, recorded float8 "
            "NOT NULL, patient text, agent text, action text NOT NULL, outcome text NOT NULL, "
            "entity text, request_id text, event jsonb NOT NULL)"))
        await conn.execute(sa.text(
            "CREATE INDEX ON audit_probe (patient, recorded) WHERE patient IS NOT NULL"))
        await conn.execute(sa.text("CREATE INDEX ON audit_probe (agent, recorded)"))
        await conn.commit()
        probe = sa.text(
            "INSERT INTO audit_probe (recorded, patient, agent, action, outcome, entity, "
            "request_id, event) SELECT * FROM unnest(CAST(:t AS float8[]), CAST(:p AS text[]), "
            "CAST(:a AS text[]), CAST(:c AS text[]), CAST(:o AS text[]), CAST(:e AS text[]), "
            "CAST(:r AS text[]), CAST(:j AS jsonb[]))")

        async def compact(conn: Any, batch: list[audit.AuditRecord]) -> None:
            cols: dict[str, list[Any]] = {k: [] for k in "tpacoerj"}
            for r in batch:
                body = audit.event(r, r.patient_ids[0])
                for key, value in zip("tpacoerj", (
                        r.time, r.patient_ids[0], r.principal.user if r.principal else None,
                        audit.ACTIONS[r.interaction], r.outcome,
                        f"{r.resource_type}/{r.resource_id}", r.request_id,
                        orjson.dumps(body).decode()), strict=True):
                    cols[key].append(value)
            await conn.execute(probe, cols)

        print("\n| write of a batch | Python µs/record | PostgreSQL µs/record | wall µs/record |"
              "\n|---|---:|---:|---:|")
        await measure("resource rows only", rows_only)
        await measure("resource + history rows", with_history)
        await measure("all: consent.audit.write (resource, history, index rows)", audit.write)
        await measure("probe: one compact append-only row per record (+ event JSON)", compact)
        # resource rows: three writes of n records; history: two; index rows and probe: one.
        for table, times in (("resource", 3), ("resource_history", 2), ("sp_token", 1),
                             ("sp_reference", 1), ("sp_string", 1), ("sp_date", 1),
                             ("audit_probe", 1)):
            size = (await conn.execute(sa.text(
                f"SELECT pg_total_relation_size('{table}')"))).scalar_one()
            print(f"- {table}: {size / (times * n):.0f} bytes per record (tables + indexes)")
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
