"""Read the evidence of many patients at once from the search index (set-based).

Per batch of patients, four queries (and a fifth only for the few integer-valued scores):
patients (birth date, gender, death), coded entries whose code is on one of the lists the
engine uses, emergency Encounters by class, and medicines issued in the last 12 months.
Statuses, dates and values come from the index tables (fhir/schema.py: sp_token, sp_date,
sp_quantity) as scalar subqueries per candidate row, so no resource is parsed but the
Observations whose value is an integer (Barthel, MUST: not a Quantity, so not indexed).
The same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from functools import cache

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from careplans.codes import deficits_by_code
from careplans.risk import admission, frailty
from careplans.risk.evidence import Entry, Facts
from fhir.schema import resource, sp_date, sp_quantity, sp_reference, sp_token

CODED_TYPES = ("Condition", "Observation", "Procedure")
# The types whose change can change a result (incremental runs look at these only).
EVIDENCE_TYPES = ("Patient", *CODED_TYPES, "Encounter", "MedicationRequest")
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"


@cache
def codes_of_interest() -> tuple[str, ...]:
    """Every code the engine looks for in a coded entry or an Encounter type."""
    found = set(deficits_by_code()) | set(frailty.PREDICATES) | admission.LIVES_ALONE
    found |= admission.AE_CODES | admission.ADMISSION_CODES
    return tuple(sorted(found))


def _day(epoch: float | None) -> date | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(max(epoch, -62135596800.0 + 86400), UTC).date()


def _token(param: str) -> sa.ScalarSelect:
    t = sp_token.alias()
    return (sa.select(sa.func.max(t.c.code)).where(t.c.rid == resource.c.rid, t.c.param == param)
            .scalar_subquery())


def _date(*params: str) -> sa.ScalarSelect:
    d = sp_date.alias()
    return (sa.select(sa.func.min(d.c.lo)).where(d.c.rid == resource.c.rid,
                                                 d.c.param.in_(params)).scalar_subquery())


def _value() -> sa.ScalarSelect:
    q = sp_quantity.alias()
    return (sa.select(sa.func.max(q.c.value))
            .where(q.c.rid == resource.c.rid, q.c.param == "value-quantity").scalar_subquery())


def _status_columns() -> list[sa.ColumnElement]:
    status = sa.case((resource.c.type == "Condition", _token("clinical-status")),
                     else_=_token("status"))
    return [status.label("status"), _token("verification-status").label("verification"),
            _date("onset-date", "date", "authoredon").label("day"),
            _date("recorded-date").label("recorded")]


# A batch of more patients than this is read by the range of their ids (one pass over the
# index tables), fewer by the list of their ids (index lookups).
RANGE_READ = 5000


def _among(column: sa.ColumnElement, ids: list[str]) -> sa.ColumnElement:
    """`column` is one of `ids`: a list for a few, the ids' range for many (`ids` in the
    database's order, so the range holds them all; what else it holds is dropped later)."""
    if len(ids) > RANGE_READ:
        return column.between(ids[0], ids[-1])
    return column.in_(ids)


def _tokens(conn: AsyncConnection, ids: list[str], types: tuple[str, ...],
            token: tuple[sa.ColumnElement, ...], *columns: sa.ColumnElement,
            entry: sa.ColumnElement | None = None) -> sa.Select:
    """The entries of `types` of the patients `ids` with an index token (sp_token) meeting
    `token`, and meeting `entry` (on the entry and its token): (rid, type, id, patient,
    code, system, *columns).

    Few patients on PostgreSQL: from the patients' references (index only) to each entry's
    tokens (by rid) to the few entries that match (by rid); otherwise the planner hashes
    whole tables (measured on 100,000 patients: 0.2-0.3 s instead of 1.5-2.3 s for a day's
    2,000). Many patients, or SQLite: a plain join over the range of ids.
    """
    head = (resource.c.rid, resource.c.type, resource.c.id, resource.c.patient_id)
    live = sa.and_(resource.c.deleted.is_(False), resource.c.type.in_(types))
    if conn.dialect.name != "postgresql" or len(ids) > RANGE_READ:
        return (sa.select(*head, sp_token.c.code, sp_token.c.system, *columns)
                .join_from(resource, sp_token, sp_token.c.rid == resource.c.rid)
                .where(_among(resource.c.patient_id, ids), live, *token,
                       *(() if entry is None else (entry,))))
    ref = sp_reference
    rids = (sa.select(ref.c.rid).where(ref.c.param == "patient", ref.c.target_type == "Patient",
                                       ref.c.target_id.in_(ids))
            .cte("patient_rids").prefix_with("MATERIALIZED"))
    each = (sa.select(sp_token.c.rid, sp_token.c.code, sp_token.c.system, sp_token.c.param)
            .where(sp_token.c.rid == rids.c.rid, *token)
            .offset(0)  # keeps the subquery per entry (not flattened into a hash join)
            .lateral("each_token"))
    found = (sa.select(each.c.rid, each.c.code, each.c.system, each.c.param)
             .select_from(rids).join(each, sa.true())
             .cte("tokens").prefix_with("MATERIALIZED"))
    query = (sa.select(*head, found.c.code, found.c.system, *columns)
             .select_from(found).join(resource, resource.c.rid == found.c.rid).where(live))
    return query if entry is None else query.where(_retarget(entry, found))


def _retarget(clause: sa.ColumnElement, rows: sa.CTE) -> sa.ColumnElement:
    """`clause` with sp_token's columns read from `rows` instead."""
    from sqlalchemy.sql import visitors

    def swap(element: object) -> object | None:
        if isinstance(element, sa.Column) and element.table is sp_token:
            return rows.c[element.name]
        return None

    return visitors.replacement_traverse(clause, {}, swap)


async def load(conn: AsyncConnection, patient_ids: list[str], as_of: date) -> dict[str, Facts]:
    """The Facts of each patient of `patient_ids` who exists, is not deleted and is alive.
    Many ids (more than RANGE_READ) must come in the database's order (ORDER BY id)."""
    if conn.dialect.name != "postgresql":
        return await _load(conn, patient_ids, as_of)
    # These queries cost enough to be JIT-compiled, and compiling took longer than running
    # them (measured: 0.7 s against 0.26 s for a day's emergency encounters at 100,000).
    await conn.exec_driver_sql("SET jit = off")
    found = await _load(conn, patient_ids, as_of)  # (if it fails, the session keeps jit off)
    await conn.exec_driver_sql("RESET jit")
    return found


async def _load(conn: AsyncConnection, patient_ids: list[str], as_of: date) -> dict[str, Facts]:
    facts: dict[str, Facts] = {}
    wanted = set(patient_ids)
    died = _date("death-date")
    rows = await conn.execute(
        sa.select(resource.c.id, _date("birthdate").label("born"), _token("gender"),
                  died.label("died"))
        .where(resource.c.type == "Patient", _among(resource.c.id, patient_ids),
               resource.c.deleted.is_(False)))
    for pid, born, gender, dead in rows:
        if dead is None and pid in wanted:
            facts[pid] = Facts(pid, _day(born), gender)
    if not facts:
        return facts

    def _live(ids: list[str]) -> sa.ColumnElement:
        return sa.and_(_among(resource.c.patient_id, ids), resource.c.deleted.is_(False))

    ids = patient_ids
    entries = await conn.execute(_tokens(
        conn, ids, (*CODED_TYPES, "Encounter"),
        (sp_token.c.param.in_(("code", "type")), sp_token.c.code.in_(codes_of_interest())),
        *_status_columns(), _value().label("value"), _token("class").label("klass"),
        entry=sa.or_(sa.and_(resource.c.type.in_(CODED_TYPES), sp_token.c.param == "code"),
                     sa.and_(resource.c.type == "Encounter", sp_token.c.param == "type"))))
    emergency = await conn.execute(_tokens(
        conn, ids, ("Encounter",), (sp_token.c.param == "class", sp_token.c.code == "EMER"),
        *_status_columns(), sa.null(), sa.literal("EMER")))
    since = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC).timestamp() - 366 * 86400
    issued = sp_date.alias()
    medicines = await conn.execute(
        sa.select(resource.c.rid, resource.c.type, resource.c.id, resource.c.patient_id,
                  sp_token.c.code, sp_token.c.system, *_status_columns(), sa.null(), sa.null())
        .join_from(resource, sp_token, sp_token.c.rid == resource.c.rid)
        .join(issued, sa.and_(issued.c.rid == resource.c.rid, issued.c.param == "authoredon"))
        .where(_live(ids), resource.c.type == "MedicationRequest", sp_token.c.param == "code",
               issued.c.hi > since))
    integer_valued: dict[int, tuple[str, Entry]] = {}
    seen_emergency: set[int] = set()
    for rows_ in (entries, emergency, medicines):
        for (rid, type_, id_, pid, code, system, status, verification, day, recorded,
             value, klass) in rows_:
            if rows_ is emergency:
                code, system = "", None
            if pid not in facts:
                continue
            if rows_ is emergency:
                if rid in seen_emergency:
                    continue
                seen_emergency.add(rid)
            entry = Entry(f"{type_}/{id_}", code, system, _day(day if day is not None
                                                             else recorded),
                          status, verification, value, klass)
            if type_ == "Observation" and value is None and code in frailty.PREDICATES:
                integer_valued[rid] = (pid, entry)
                continue
            facts[pid].entries.append(entry)
    if integer_valued:
        await _integer_values(conn, integer_valued, facts)
    return facts


async def _integer_values(conn: AsyncConnection, pending: dict[int, tuple[str, Entry]],
                          facts: dict[str, Facts]) -> None:
    """Observations scored as integers (valueInteger is not a search parameter)."""
    rows = await conn.execute(sa.select(resource.c.rid, sa.cast(resource.c.content, sa.Text))
                              .where(resource.c.rid.in_(list(pending))))
    for rid, content in rows:
        pid, entry = pending[rid]
        value = orjson.loads(content).get("valueInteger") if content else None
        if isinstance(value, int) and not isinstance(value, bool):
            entry = Entry(entry.ref, entry.code, entry.system, entry.day, entry.status,
                          entry.verification, float(value), entry.klass)
        facts[pid].entries.append(entry)


async def practice_patients(conn: AsyncConnection, ods: str | None) -> sa.Select:
    """The ids of the live Patients registered at the practice of ODS code `ods` (all live
    Patients when None), as a SELECT to filter with; NotFound-like ValueError if unknown."""
    patients = sa.select(resource.c.id).where(resource.c.type == "Patient",
                                              resource.c.deleted.is_(False))
    if ods is None:
        return patients
    org = (await conn.execute(
        sa.select(resource.c.id).join_from(resource, sp_token, sp_token.c.rid == resource.c.rid)
        .where(resource.c.type == "Organization", resource.c.deleted.is_(False),
               sp_token.c.param == "identifier", sp_token.c.code == ods,
               sp_token.c.system == ODS_SYSTEM))).scalars().all()
    if not org:
        raise LookupError(f"No Organization has the ODS code '{ods}' "
                          f"({ODS_SYSTEM}).")
    ref = sp_reference
    return patients.join_from(resource, ref, ref.c.rid == resource.c.rid).where(
        ref.c.param == "general-practitioner", ref.c.target_type == "Organization",
        ref.c.target_id.in_(org))


async def changed_since(conn: AsyncConnection, watermark: float) -> set[str]:
    """Patients any of whose evidence was written (or deleted) after `watermark`."""
    rows = await conn.execute(
        sa.select(resource.c.patient_id).distinct()
        .where(resource.c.type.in_(EVIDENCE_TYPES), resource.c.last_updated > watermark,
               resource.c.patient_id.is_not(None)))
    return set(rows.scalars())


async def newest_change(conn: AsyncConnection) -> float:
    """The newest `last_updated` of any evidence (the watermark of a run starting now)."""
    # One max per type: each the last entry of the (type, last_updated) index.
    found = await conn.execute(sa.select(*(
        sa.select(sa.func.max(resource.c.last_updated)).where(resource.c.type == t)
        .scalar_subquery() for t in EVIDENCE_TYPES)))
    return max((v for v in found.one() if v is not None), default=0.0)


def batches(ids: Iterable[str], size: int) -> Iterable[list[str]]:
    batch: list[str] = []
    for pid in ids:
        batch.append(pid)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
