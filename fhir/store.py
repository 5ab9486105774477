"""Storage of resources: the current table, the version history and the index rows.

Every function takes an open connection and runs inside the caller's transaction, so a
Bundle transaction, a conditional create or a plain update is all-or-nothing.
Versions are guarded by the database: an update names the version it replaces in its
WHERE clause, so of many concurrent updates with the same If-Match exactly one succeeds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir import guard, jsontext, pending
from fhir.errors import PreconditionFailed
from fhir.index import compartment_patient, extract
from fhir.registry import registry
from fhir.schema import conditional_key, history, resource


@dataclass(slots=True)
class Stored:
    """One version of a resource as stored; `content` is its JSON text (None when deleted)."""

    rid: int
    type: str
    id: str
    version: int
    last_updated: float
    deleted: bool
    content: str | None
    patient_id: str | None = None  # the compartment key and the labels, as access control
    security: str | None = None  # reads them (only on current rows; None from the history)

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def last_modified(self) -> str:
        return formatdate(self.last_updated, usegmt=True)

    @property
    def instant(self) -> str:
        return iso_instant(self.last_updated)


def iso_instant(epoch: float) -> str:
    """An epoch time as a FHIR instant with milliseconds, in UTC."""
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _now() -> float:
    return round(time.time(), 3)


_CURRENT = sa.select(
    resource.c.rid, resource.c.type, resource.c.id, resource.c.version,
    resource.c.last_updated, resource.c.deleted, resource.c.content,
    resource.c.patient_id, resource.c.security,
)


async def prefetch_current(conn: AsyncConnection, keys: list[tuple[str, str]]) -> None:
    """Read (and lock) the current versions of many resources at once, for the transaction's
    batch: the next `read_current` of each is answered from it, sparing a round trip each."""
    batch = pending.current()
    if batch is None or len(keys) < 2:
        return
    found: dict[tuple[str, str], Stored | None] = dict.fromkeys(keys)
    query = _CURRENT.where(sa.tuple_(resource.c.type, resource.c.id).in_(sorted(set(keys))))
    for row in (await conn.execute(query.with_for_update())).all():
        found[(row.type, row.id)] = Stored(*row)
    batch.prefetched.update(found)


async def read_current(conn: AsyncConnection, type_: str, id_: str, *,
                       for_update: bool = False) -> Stored | None:
    """The current version of Type/id (deleted or not), or None if it never existed."""
    batch = pending.current()
    if batch is not None and (type_, id_) in batch.prefetched:
        return batch.prefetched.pop((type_, id_))  # once: later reads see later writes
    query = _CURRENT.where(resource.c.type == type_, resource.c.id == id_)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return Stored(*row) if row else None


_RAW_CURRENT = (
    "SELECT rid, type, id, version, last_updated, deleted, content::text, patient_id, security "
    "FROM resource WHERE type = $1 AND id = $2"
)


async def read_current_raw(pool: Any, type_: str, id_: str) -> Stored | None:
    """`read_current` on a bare asyncpg pool: the hot read path on PostgreSQL."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_RAW_CURRENT, type_, id_)
    return Stored(*row) if row else None


async def read_version(conn: AsyncConnection, type_: str, id_: str,
                       version: int) -> Stored | None:
    """Version `version` of Type/id from the history."""
    await pending.settle(conn)
    row = (await conn.execute(
        sa.select(history.c.rid, history.c.type, history.c.id, history.c.version,
                  history.c.last_updated, history.c.deleted, history.c.content)
        .where(history.c.type == type_, history.c.id == id_, history.c.version == version)
    )).first()
    return Stored(*row) if row else None


def _stamp(body: dict[str, Any], version: int, now: float) -> str:
    meta = dict(body.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = iso_instant(now)
    body["meta"] = meta
    return jsontext.dumps(body).decode()


def _security(body: dict[str, Any]) -> str | None:
    labels = [f"{s.get('system', '')}|{s.get('code', '')}" for s in
              (body.get("meta") or {}).get("security") or () if isinstance(s, dict)]
    return " ".join(labels) or None


def _index_rows(body: dict[str, Any]) -> tuple[dict[str, list[tuple[Any, ...]]], str | None]:
    reg = registry()
    rows = extract(body, reg)
    return rows, compartment_patient(body, reg, rows["reference"])


# The Patient compartment holds a Provenance only when a target is the Patient itself
# (https://hl7.org/fhir/R4/compartmentdefinition-patient.html); one about an entry of a
# patient's record is part of that record too, or anyone who may read Provenance would
# learn whose record holds what.
OWNED_BY_TARGET = {"Provenance": "target"}


async def _owner(conn: AsyncConnection, body: dict[str, Any],
                 rows: dict[str, list[tuple[Any, ...]]], patient: str | None) -> str | None:
    """`patient`, or for a type in OWNED_BY_TARGET the patient of the first target that has one."""
    param = OWNED_BY_TARGET.get(body["resourceType"])
    if patient is not None or param is None:
        return patient
    targets = [(r[1], r[2]) for r in rows["reference"] if r[0] == param and r[1] and r[2]]
    if not targets:
        return None
    found = await conn.execute(sa.select(resource.c.patient_id).where(
        sa.or_(*(sa.and_(resource.c.type == t, resource.c.id == i) for t, i in targets)),
        resource.c.patient_id.is_not(None)).limit(1))
    return found.scalar()


async def _record(conn: AsyncConnection, stored: Stored, method: str,
                  rows: dict[str, list[tuple[Any, ...]]] | None, *, replace: bool) -> None:
    """Queue the index rows and the history version of `stored` (flushed now, or with the
    transaction's batch when one is open: see fhir/pending.py)."""
    batch = pending.current()
    own = batch is None
    if batch is None:
        batch = pending.Pending()
    batch.index(stored.rid, rows or {}, replace=replace)
    batch.version((stored.rid, stored.type, stored.id, stored.version, stored.last_updated,
                   method, stored.deleted, stored.content))
    if own:
        await batch.flush(conn)


# Built once: a statement made per call costs more in SQLAlchemy than the database work.
_INSERT = resource.insert().returning(resource.c.rid)
_UPDATE = (resource.update()
           .where(resource.c.rid == sa.bindparam("b_rid"),
                  resource.c.version == sa.bindparam("b_version")))


_INSERT_IF_ABSENT = {
    name: dialect.insert(resource).on_conflict_do_nothing(index_elements=["type", "id"])
    .returning(resource.c.rid)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


@overload
async def insert(conn: AsyncConnection, body: dict[str, Any], *, method: str) -> Stored: ...
@overload
async def insert(conn: AsyncConnection, body: dict[str, Any], *, method: str,
                 if_absent: bool) -> Stored | None: ...


async def insert(conn: AsyncConnection, body: dict[str, Any], *, method: str,
                 if_absent: bool = False) -> Stored | None:
    """Store `body` (with its id set) as version 1 of a new resource.

    `if_absent`: when Type/id exists already (say, created concurrently), store nothing and
    return None instead of failing on the unique key.
    """
    now = _now()
    guard.prepare(body)
    text = _stamp(body, 1, now)
    rows, patient = _index_rows(body)
    patient = await _owner(conn, body, rows, patient)
    await guard.check_write(conn, "create", body["resourceType"], body, patient, None)
    values = {
        "type": body["resourceType"], "id": body["id"], "version": 1, "last_updated": now,
        "deleted": False, "patient_id": patient, "security": _security(body), "content": text,
    }
    if not if_absent and pending.current() is None and conn.dialect.name == "postgresql":
        rid = await pending.insert_postgres(conn, values, rows, method)
        return Stored(rid, body["resourceType"], body["id"], 1, now, False, text, patient,
                      values["security"])
    statement = _INSERT_IF_ABSENT[conn.dialect.name] if if_absent else _INSERT
    rid = (await conn.execute(statement, values)).scalar_one_or_none()
    if rid is None:
        return None
    stored = Stored(rid, body["resourceType"], body["id"], 1, now, False, text, patient,
                    values["security"])
    await _record(conn, stored, method, rows, replace=False)
    return stored


Rows = dict[str, list[tuple[Any, ...]]]

# Many resource rows in one statement; rows come back matched by (type, id), not by order.
_INSERT_MANY_POSTGRES = sa.text(
    "INSERT INTO resource (type, id, version, last_updated, deleted, patient_id, security, "
    "content) SELECT u.type, u.id, 1, u.last_updated, false, u.patient_id, u.security, "
    "u.content FROM unnest(CAST(:type AS text[]), CAST(:id AS text[]), "
    "CAST(:last_updated AS float8[]), CAST(:patient_id AS text[]), CAST(:security AS text[]), "
    "CAST(:content AS jsonb[])) AS u(type, id, last_updated, patient_id, security, content) "
    "RETURNING rid, type, id"
)
# Elsewhere one executemany; SQLAlchemy returns its rows in the order of the parameters.
_INSERT_IN_ORDER = resource.insert().returning(resource.c.rid, sort_by_parameter_order=True)


async def insert_many(conn: AsyncConnection, items: Iterable[tuple[dict[str, Any], Rows,
                                                                   str | None]], *,
                      method: str = "POST") -> list[Stored]:
    """Store many new resources, each (body with its id set, its index rows, its patient),
    as version 1; their Stored, in order. For records the server writes in bulk (AuditEvents),
    whose callers have their index rows already (consent.audit.index_rows). `items` is read
    once, in order, and no body is kept: a generator need not hold them all at once.

    NO GUARD: unlike `insert` it neither asks `guard.check_write` nor lets the guard stamp
    the body (`guard.prepare`), so it is only for what the server writes on its own account,
    and refuses to run while a request's guard is installed (`guarding(None)` first).
    On PostgreSQL the resource rows go in one statement and the index rows and history
    versions with the transaction's batch (fhir/pending.py), flushed in one more; a lone
    resource with no batch open, all in one (`pending.insert_postgres`).
    """
    if guard.current() is not None:
        raise RuntimeError("insert_many writes unguarded: call it under guarding(None)")
    now = _now()
    values: list[dict[str, Any]] = []
    index: list[Rows] = []
    for body, rows, patient in items:
        values.append({"type": body["resourceType"], "id": body["id"], "version": 1,
                       "last_updated": now, "deleted": False, "patient_id": patient,
                       "security": _security(body), "content": _stamp(body, 1, now)})
        index.append(rows)
    if not values:
        return []
    postgres = conn.dialect.name == "postgresql"
    one_statement = postgres and len(values) == 1 and pending.current() is None
    if one_statement:
        rids = [await pending.insert_postgres(conn, values[0], index[0], method)]
    elif postgres:
        found = await conn.execute(_INSERT_MANY_POSTGRES, {
            key: [v[key] for v in values]
            for key in ("type", "id", "last_updated", "patient_id", "security", "content")})
        rid_of = {(type_, id_): rid for rid, type_, id_ in found}
        rids = [rid_of[(v["type"], v["id"])] for v in values]
    else:
        rids = list((await conn.execute(_INSERT_IN_ORDER, values)).scalars())
    stored = [Stored(rid, v["type"], v["id"], 1, now, False, v["content"], v["patient_id"],
                     v["security"]) for rid, v in zip(rids, values, strict=True)]
    if one_statement:
        return stored
    batch = pending.current()
    async with (pending.batched(conn) if batch is None else contextlib.nullcontext(batch)) as to:
        for one, rows in zip(stored, index, strict=True):  # flushed together
            to.index(one.rid, rows, replace=False)
            to.version((one.rid, one.type, one.id, 1, now, method, False, one.content))
    return stored


async def replace(conn: AsyncConnection, current: Stored, body: dict[str, Any], *,
                  method: str) -> Stored:
    """Store `body` as the version after `current`; 412 if another writer got there first."""
    now = max(_now(), current.last_updated)
    version = current.version + 1
    guard.prepare(body)
    text = _stamp(body, version, now)
    rows, patient = _index_rows(body)
    patient = await _owner(conn, body, rows, patient)
    await guard.check_write(conn, "update", current.type, body, patient, current)
    security = _security(body)
    result = await conn.execute(_UPDATE, {
        "b_rid": current.rid, "b_version": current.version, "version": version,
        "last_updated": now, "deleted": False, "patient_id": patient,
        "security": security, "content": text,
    })
    if result.rowcount != 1:
        raise PreconditionFailed(
            f"{current.type}/{current.id} was changed by another request while this one ran "
            f"(expected version {current.version}); read it again and retry."
        )
    stored = Stored(current.rid, current.type, current.id, version, now, False, text, patient,
                    security)
    await _record(conn, stored, method, rows, replace=True)
    return stored


async def mark_deleted(conn: AsyncConnection, current: Stored) -> Stored:
    """Delete `current`: a new version with no content; reads then answer 410 Gone."""
    now = max(_now(), current.last_updated)
    version = current.version + 1
    await guard.check_write(conn, "delete", current.type, None, current.patient_id, current)
    await conn.execute(conditional_key.delete().where(conditional_key.c.rid == current.rid))
    result = await conn.execute(_UPDATE, {
        "b_rid": current.rid, "b_version": current.version, "version": version,
        "last_updated": now, "deleted": True, "content": None,
    })
    if result.rowcount != 1:
        raise PreconditionFailed(
            f"{current.type}/{current.id} was changed by another request while it was deleted."
        )
    stored = Stored(current.rid, current.type, current.id, version, now, True, None,
                    current.patient_id, current.security)
    await _record(conn, stored, "DELETE", None, replace=True)
    return stored
