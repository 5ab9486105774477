"""Risk stratification speed on a synthetic network, and its frailty bands beside Clegg 2016.

    uv run python bench/stratify.py --patients 25000            # build (once) and measure
    uv run python bench/stratify.py --patients 2000 --keep-db   # keep the database after

1. Makes the PostgreSQL database `carenet_riskbench_<N>` (or reuses it with `--reuse` when
   it holds the network already) and loads the synthetic network (`api.synthetic.generate`,
   the same records `python -m api seed` sends) straight into the store in bulk
   (`fhir.store.insert_many` with the standard index extraction: no HTTP, no validation;
   this is set-up, not measured), then ANALYZE.
2. Stratifies everyone from scratch (`careplans.risk.flows.stratify`, as
   `python -m careplans stratify --full` does), writes included: **from scratch**.
3. Touches `--touch` (2 %) of the patients as a day of practice might (a new coded entry
   each, one in three a fall) and runs incrementally: **incremental**; then once more with
   nothing changed: **no change** (must write nothing).
4. Counts the frailty bands of the patients aged 65+ next to the figures the issue quotes for
   Clegg et al. 2016, and next to the generator's own intended eFI of the same people.

Prints a markdown table and writes bench/results/<timestamp>-stratify.{json,md}. The machine
is shared: figures are wall-clock seconds on whatever else was running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.synthetic.generate import generate  # noqa: E402
from careplans.risk.assessment import FRAILTY  # noqa: E402
from careplans.risk.flows import stratify  # noqa: E402
from careplans.risk.frailty import band  # noqa: E402
from fhir import store  # noqa: E402
from fhir.db import Database  # noqa: E402
from fhir.index import compartment_patient, extract  # noqa: E402
from fhir.migrate import upgrade  # noqa: E402
from fhir.registry import registry  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432"
RESULTS = Path(__file__).resolve().parent / "results"
# The "roughly" figures for Clegg 2016 (development cohort, aged 65-95); the bands
# were set at population quartile-like cut-offs (Clegg A et al., Age Ageing 2016;45:353,
# Methods). Not checked against the paper's tables here (see bench/README.md).
CLEGG = {"fit": 50.0, "mild": 35.0, "moderate": 12.0, "severe": 3.0}
BANDS = ("fit", "mild", "moderate", "severe")


async def _database(name: str, reuse: bool) -> bool:
    """Make the database (dropped first unless reused); whether it already held a network."""
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and reuse:
            target = await asyncpg.connect(f"{PG}/{name}")
            try:
                found = await target.fetchval(
                    "SELECT count(*) FROM resource WHERE type = 'Patient'")
            except asyncpg.UndefinedTableError:
                found = 0
            finally:
                await target.close()
            if found:
                return True
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
        return False
    finally:
        await conn.close()


def _item(body: dict, reg) -> tuple[dict, dict, str | None]:
    rows = extract(body, reg)
    return body, rows, compartment_patient(body, reg, rows["reference"])


async def load(db: Database, patients: int, seed: int, as_of: date) -> dict[str, float]:
    """The synthetic network into the store, in bulk; the generator's eFI of each 65+."""
    reg = registry()
    network, records = generate(seed, patients, as_of)
    intended: dict[str, float] = {}
    started, count, chunk = time.perf_counter(), 0, []
    async with db.write() as conn:
        await store.insert_many(conn, (_item(b, reg) for b in network.resources))
    for rec in records:
        chunk.extend(rec.resources)
        if rec.age >= 65:
            intended[rec.patient_ref.partition("/")[2]] = rec.efi
        if len(chunk) >= 5000:
            async with db.write() as conn:
                await store.insert_many(conn, (_item(b, reg) for b in chunk))
            count += len(chunk)
            chunk = []
            print(f"\rloaded {count} resources, {time.perf_counter() - started:.0f} s",
                  end="", file=sys.stderr)
    if chunk:
        async with db.write() as conn:
            await store.insert_many(conn, (_item(b, reg) for b in chunk))
        count += len(chunk)
    print(f"\rloaded {count} resources in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)
    return intended


async def touch(db: Database, share: float, as_of: date, seed: int) -> int:
    """A day's changes: a new coded Condition for `share` of the patients."""
    reg = registry()
    async with db.read() as conn:
        rows = await conn.exec_driver_sql(
            "SELECT id FROM resource WHERE type = 'Patient' AND NOT deleted ORDER BY id")
        ids = [r[0] for r in rows]
    rng = random.Random(seed)
    chosen = rng.sample(ids, max(1, int(len(ids) * share)))
    codes = ["161898004", "15188001", "165232002", "38341003", "404640003", "193462001"]
    bodies = [{"resourceType": "Condition", "id": f"touch-{uuid.uuid4()}",
               "clinicalStatus": {"coding": [{
                   "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                   "code": "active"}]},
               "code": {"coding": [{"system": "http://snomed.info/sct",
                                    "code": codes[0] if i % 3 == 0 else rng.choice(codes)}]},
               "subject": {"reference": f"Patient/{pid}"},
               "onsetDateTime": (as_of - timedelta(days=1)).isoformat()}
              for i, pid in enumerate(chosen)]
    async with db.write() as conn:
        await store.insert_many(conn, (_item(b, reg) for b in bodies))
    return len(chosen)


async def bands(db: Database) -> Counter:
    async with db.read() as conn:
        rows = await conn.exec_driver_sql(
            f"SELECT summary FROM risk_state WHERE method = '{FRAILTY}'")
        return Counter(json.loads(r[0])["band"] for r in rows)


async def timed_run(db: Database, as_of: date, **kw) -> dict:
    started, cpu = time.perf_counter(), time.process_time()
    run = await stratify(db, as_of=as_of, **kw)
    return {"seconds": round(time.perf_counter() - started, 2),
            "python_cpu_seconds": round(time.process_time() - cpu, 2),
            "considered": run.considered,
            "created": run.created, "updated": run.updated, "unchanged": run.unchanged,
            "full": run.full}


def _share(counts: Counter) -> dict[str, float]:
    total = sum(counts.values()) or 1
    return {b: round(100 * counts.get(b, 0) / total, 1) for b in BANDS}


async def main(args: argparse.Namespace) -> None:
    name = args.db or f"carenet_riskbench_{args.patients}"
    as_of = date.fromisoformat(args.as_of)
    had = await _database(name, args.reuse)
    db = Database(f"{PG}/{name}", pool_size=4, statement_timeout_ms=600_000)
    try:
        await upgrade(db.engine)
        intended: dict[str, float] = {}
        if not had:
            intended = await load(db, args.patients, args.seed, as_of)
        async with db.write() as conn:  # a rerun starts from no assessments again
            await conn.exec_driver_sql("DELETE FROM risk_run")
            await conn.exec_driver_sql("DELETE FROM risk_state")
            for table in ("sp_token", "sp_string", "sp_date", "sp_reference", "sp_quantity",
                          "sp_uri", "sp_number", "sp_composite", "resource_history"):
                await conn.exec_driver_sql(
                    f"DELETE FROM {table} WHERE rid IN (SELECT rid FROM resource "
                    "WHERE type IN ('RiskAssessment', 'AuditEvent'))")
            await conn.exec_driver_sql(
                "DELETE FROM resource WHERE type IN ('RiskAssessment', 'AuditEvent')")
        async with db.read() as conn:  # autocommit: VACUUM runs outside a transaction
            await conn.exec_driver_sql("VACUUM ANALYZE")
        scratch = await timed_run(db, as_of, full=True, writers=args.writers)
        print(f"from scratch: {scratch}", file=sys.stderr)
        counts = await bands(db)
        touched = await touch(db, args.touch, as_of, args.seed)
        incremental = await timed_run(db, as_of, overlap=0.0)
        print(f"incremental after {touched} touched: {incremental}", file=sys.stderr)
        nothing = await timed_run(db, as_of, overlap=0.0)
        print(f"no change: {nothing}", file=sys.stderr)
    finally:
        await db.dispose()
    ours = _share(counts)
    generator = _share(Counter(band(v) for v in intended.values())) if intended else None
    lines = [f"# Risk stratification, {args.patients} patients (PostgreSQL, shared 2-core "
             "machine)", "",
             "| run | seconds | Python CPU s | patients considered | created | updated | "
             "unchanged |", "|---|---|---|---|---|---|---|"]
    for label, r in (("from scratch (full)", scratch),
                     (f"incremental after {touched} patients touched", incremental),
                     ("incremental, nothing changed", nothing)):
        lines.append(f"| {label} | {r['seconds']} | {r['python_cpu_seconds']} | "
                     f"{r['considered']} | {r['created']} | "
                     f"{r['updated']} | {r['unchanged']} |")
    lines += ["", f"Frailty bands of the {sum(counts.values())} patients aged 65+ (%):", "",
              "| band | carenet eFI-style index | generator's intended eFI | Clegg 2016 "
              "(issue's figures) |", "|---|---|---|---|"]
    for b in BANDS:
        lines.append(f"| {b} | {ours[b]} | {generator[b] if generator else 'n/a'} | "
                     f"{CLEGG[b]} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"{stamp}-stratify.md").write_text(table + "\n")
    (RESULTS / f"{stamp}-stratify.json").write_text(json.dumps({
        "patients": args.patients, "seed": args.seed, "as_of": args.as_of, "db": name,
        "from_scratch": scratch, "incremental": incremental, "no_change": nothing,
        "touched": touched, "bands_65_plus": dict(counts), "bands_share": ours,
        "generator_share": generator, "clegg": CLEGG}, indent=2))
    if not args.keep_db and not args.reuse:
        conn = await asyncpg.connect(f"{PG}/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=25_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--as-of", default="2025-06-01")
    parser.add_argument("--touch", type=float, default=0.02)
    parser.add_argument("--db", help="database name (default carenet_riskbench_<N>)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the database when it holds a network (and keep it)")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--writers", type=int, default=2,
                        help="write transactions at once (careplans.risk.flows.WRITERS)")
    asyncio.run(main(parser.parse_args()))
