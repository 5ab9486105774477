"""Stratification runs: the whole list (or one practice, or given patients), batch by batch.

A run reads the evidence of a batch of patients set-based (queries.py), scores them (pure:
frailty.py, admission.py, assessment.py), compares each result with the patient's last one
(`RiskState`), and writes only what changed, in one transaction per batch, through the
store's write path as the network's backend service: a new assessment with
`fhir.store.insert_many` (version 1), a changed one with `fhir.store.replace` (a new
version; the old stays readable), each audited (an AuditEvent per patient written, stored in
the same transaction). A run that changes nothing writes nothing but its `RiskRun` row.

Incremental (the default): only patients whose evidence changed after the watermark of the
last completed run of the same scope and code lists (less OVERLAP_SECONDS, for writes that
were in flight as it started), and those whose result time alone may change (`recheck_on`).
`full`: everyone in scope.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from careplans.codes import CODES_DIR
from careplans.risk import queries
from careplans.risk.assessment import Outcome, assessment_id, changes, outcomes, resource
from careplans.risk.models import RiskRun, RiskState
from consent import audit
from consent.principals import Kind, Principal
from fhir import pending, store
from fhir.db import Database
from fhir.guard import guarding
from fhir.index import compartment_patient, extract
from fhir.registry import registry
from fhir.schema import resource as resource_table

BATCH = 1000  # patients written per transaction
# Transactions writing at once: while one waits for the database, the next builds its
# resources (two cores: Python on one, PostgreSQL on the other). SQLite writes one at a time.
WRITERS = 2
READ = 25_000  # patients read per pass over the index (queries.RANGE_READ: by id range)
OVERLAP_SECONDS = 30.0
ENGINE_VERSION = "1"  # bump when a rule changes: the next incremental run is then full
STRATIFIER = Principal(Kind.SYSTEM, user="Device/carenet-stratifier",
                       scopes=frozenset({"system/*.rs", "system/RiskAssessment.cu"}),
                       client_id="carenet-stratifier")
runs = RiskRun.__table__
states = RiskState.__table__


def code_version() -> str:
    """A digest of the code lists and the engine version: results made with other lists are
    not comparable, so a run after a change is full."""
    digest = hashlib.sha256(ENGINE_VERSION.encode())
    for path in sorted(CODES_DIR.rglob("*.csv")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(slots=True)
class Written:
    """What a batch (or a run) did."""

    considered: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    results: list[Outcome] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # assessment ids written

    def add(self, other: Written) -> None:
        self.considered += other.considered
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.changed += other.changed


async def _states(conn: AsyncConnection, ids: list[str]) -> dict[tuple[str, str], sa.Row]:
    rows = await conn.execute(sa.select(states).where(states.c.patient_id.in_(ids)))
    return {(r.patient_id, r.method): r for r in rows}


def _state_values(outcome: Outcome, as_of: date, version: int) -> dict[str, object]:
    return {"patient_id": outcome.patient_id, "method": outcome.method,
            "fingerprint": outcome.fingerprint,
            "summary": orjson.dumps(outcome.summary()).decode(), "as_of": as_of.isoformat(),
            "recheck_on": outcome.recheck.isoformat() if outcome.recheck else None,
            "version": version}


async def write_outcomes(conn: AsyncConnection, found: list[Outcome], as_of: date, *,
                         bulk: bool = True) -> Written:
    """Store the outcomes that differ from each patient's last result, in `conn`'s
    transaction. `bulk`: as the server's own job (unguarded `insert_many`, audited here as
    the stratifier); otherwise through the guarded `store.insert` of the caller's request."""
    done = Written(considered=len({o.patient_id for o in found}), results=found)
    held = await _states(conn, sorted({o.patient_id for o in found}))
    todo = [o for o in found if (o.patient_id, o.method) not in held
            or held[(o.patient_id, o.method)].fingerprint != o.fingerprint]
    done.unchanged = len(found) - len(todo)
    if not todo:
        return done
    keys = [("RiskAssessment", assessment_id(o.method, o.patient_id)) for o in todo]
    reg = registry()
    fresh: list[tuple[dict, dict, str | None]] = []
    new_states, old_states = [], []
    created: set[str] = set()
    updated: set[str] = set()
    # The current versions of those that exist (normally those with a state), locked for
    # the update: one indexed lookup for the batch instead of a read each.
    r = resource_table.c
    stored = {row.id: store.Stored(*row) for row in await conn.execute(
        sa.select(r.rid, r.type, r.id, r.version, r.last_updated, r.deleted, r.content,
                  r.patient_id, r.security)
        .where(r.type == "RiskAssessment", r.id.in_([k[1] for k in keys])).with_for_update())}
    async with pending.batched(conn):
        for outcome, (_, id_) in zip(todo, keys, strict=True):
            state = held.get((outcome.patient_id, outcome.method))
            previous = orjson.loads(state.summary) if state is not None else None
            change = changes(previous, state.as_of if state is not None else None, outcome)
            body = resource(outcome, as_of, change)
            current = stored.get(id_)
            version = 1
            if current is None and bulk:
                rows = extract(body, reg)
                fresh.append((body, rows, compartment_patient(body, reg, rows["reference"])))
            elif current is None:
                await store.insert(conn, body, method="POST")
            else:
                version = (await store.replace(conn, current, body, method="PUT")).version
            (created if version == 1 else updated).add(outcome.patient_id)
            done.changed.append(id_)
            (old_states if state is not None else new_states).append(
                _state_values(outcome, as_of, version))
        if fresh:
            await store.insert_many(conn, fresh, method="POST")
    done.updated = sum(1 for s in (*new_states, *old_states) if s["version"] != 1)
    done.created = len(todo) - done.updated
    if new_states:
        await conn.execute(states.insert(), new_states)
    if old_states:
        await conn.execute(states.update().where(
            states.c.patient_id == sa.bindparam("b_patient"),
            states.c.method == sa.bindparam("b_method")),
            [{**{k: v for k, v in s.items() if k not in ("patient_id", "method")},
              "b_patient": s["patient_id"], "b_method": s["method"]} for s in old_states])
    if bulk:
        await audit.write(conn, [
            audit.AuditRecord(principal=STRATIFIER, interaction=kind,
                              resource_type="RiskAssessment", patient_ids=tuple(sorted(ids)),
                              client_id=STRATIFIER.client_id)
            for kind, ids in (("create", created), ("update", updated)) if ids])
    return done


async def score(conn: AsyncConnection, ids: list[str], as_of: date) -> list[Outcome]:
    """The outcomes of the patients `ids` (read set-based, scored in memory)."""
    facts = await queries.load(conn, ids, as_of)
    return [o for f in facts.values() for o in outcomes(f, as_of)]


async def _patients(db: Database, as_of: date, practice: str | None, full: bool,
                    version: str, overlap: float) -> tuple[list[str], float, bool]:
    """Who this run looks at, the watermark it will leave, and whether it is full."""
    async with db.read() as conn:
        watermark = await queries.newest_change(conn)
        scope = await queries.practice_patients(conn, practice)
        last = (await conn.execute(
            sa.select(runs.c.watermark).where(
                runs.c.status == "completed", runs.c.code_version == version,
                runs.c.practice.is_(None) if practice is None else runs.c.practice == practice)
            .order_by(runs.c.id.desc()).limit(1))).scalar()
        if full or last is None:
            ids = (await conn.execute(scope.order_by(sa.text("1")))).scalars().all()
            return list(ids), watermark, True
        wanted = await queries.changed_since(conn, last - overlap)
        due = await conn.execute(sa.select(states.c.patient_id).distinct()
                                 .where(states.c.recheck_on <= as_of.isoformat()))
        wanted |= set(due.scalars())
        if not wanted:
            return [], watermark, False
        if len(wanted) <= queries.RANGE_READ:  # read by the list of their ids
            found = await conn.execute(scope.where(resource_table.c.id.in_(sorted(wanted))))
            return sorted(found.scalars()), watermark, False
        # Many: in the database's order (queries.load reads them by the range of their ids).
        ordered = (await conn.execute(scope.order_by(sa.text("1")))).scalars()
        return [i for i in ordered if i in wanted], watermark, False


async def stratify(db: Database, *, as_of: date, practice: str | None = None,
                   full: bool = False, batch: int = BATCH, read: int = READ,
                   writers: int = WRITERS, overlap: float = OVERLAP_SECONDS,
                   progress: Callable[[int, int], None] | None = None) -> RiskRun:
    """One stratification run; its `RiskRun` (counts, watermark) once completed."""
    version = code_version()
    ids, watermark, full = await _patients(db, as_of, practice, full, version, overlap)
    run = RiskRun(started=time.time(), as_of=as_of.isoformat(), practice=practice, full=full,
                  watermark=watermark, code_version=version)
    async with db.write() as conn:
        run.id = (await conn.execute(runs.insert().values(
            **run.model_dump(exclude={"id"})).returning(runs.c.id))).scalar_one()
    total = Written()
    gate = asyncio.Semaphore(writers)
    if progress:
        progress(0, len(ids))
    try:
        for part in queries.batches(ids, read):
            async with db.read() as conn:
                found = await score(conn, part, as_of)
            by_patient: dict[str, list[Outcome]] = {}
            for outcome in found:
                by_patient.setdefault(outcome.patient_id, []).append(outcome)
            async def write(chunk: list[str], by_patient: dict = by_patient) -> None:
                async with gate, db.write() as conn:
                    with guarding(None):
                        done = await write_outcomes(
                            conn, [o for p in chunk for o in by_patient.get(p, ())], as_of)
                done.considered = len(chunk)
                total.add(done)
                if progress:
                    progress(len(chunk), len(ids))

            await asyncio.gather(*(write(c) for c in queries.batches(part, batch)))
    except BaseException:
        async with db.write() as conn:
            await conn.execute(runs.update().where(runs.c.id == run.id).values(
                status="failed", finished=time.time(), considered=total.considered))
        raise
    run.status, run.finished = "completed", time.time()
    run.considered, run.created = total.considered, total.created
    run.updated, run.unchanged = total.updated, total.unchanged
    async with db.write() as conn:
        await conn.execute(runs.update().where(runs.c.id == run.id).values(
            **run.model_dump(exclude={"id"})))
    return run
