"""The Alembic migrations build exactly the schema the code queries (fhir/schema.py)."""

from __future__ import annotations

import asyncio
import re

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncConnection

import careplans.risk.models  # noqa: F401  (risk stratification tables, same metadata)
import careplans.worklist.models  # noqa: F401  (worklist tables, same metadata)
import consent.oauth_schema  # noqa: F401  (the authorisation server's tables, same metadata)
import fhir.operations.export_jobs  # noqa: F401  (bulk export jobs, same metadata)
from fhir.db import Database
from fhir.migrate import upgrade
from fhir.schema import metadata


async def _differences(url: str) -> list[object]:
    db = Database(url)
    try:
        await upgrade(db.engine)
        await upgrade(db.engine)  # a second run is a no-op
        async with db.engine.connect() as conn:
            found = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
            if db.is_sqlite:
                return found
            return found + await _postgres_only(conn)
    finally:
        await db.dispose()


async def _postgres_only(conn: AsyncConnection) -> list[object]:
    """What Alembic's comparison leaves out: INCLUDE columns of indexes, and the statistics
    objects of migration 0004, which SQLAlchemy's metadata cannot express (so they are only
    checked to exist here)."""
    defs = dict((await conn.execute(sa.text(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))).all())
    found: list[object] = []
    for table in metadata.tables.values():
        for index in table.indexes:
            made = re.search(r" INCLUDE \((.*)\)", defs.get(index.name, ""))
            included = made.group(1).split(", ") if made else []
            if included != list(index.dialect_options["postgresql"]["include"] or []):
                found.append(("include", index.name, included))
    stats = (await conn.execute(sa.text("SELECT stxname FROM pg_statistic_ext"))).scalars()
    if "st_sp_reference_target" not in set(stats):
        found.append(("statistics missing", "st_sp_reference_target"))
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_match_schema(backend: str, request: pytest.FixtureRequest,
                                 tmp_path: object) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/m.db"
    else:
        url = request.getfixturevalue("pg_url") + "_migrations"
        asyncio.run(_recreate(url))
    assert asyncio.run(_differences(url)) == []


async def _recreate(url: str) -> None:
    import asyncpg

    admin, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(f"{admin}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _reindexed(url: str) -> tuple[list[tuple[object, ...]], list[str]]:
    """Migration 0005 on a database at 0004 holding a Patient whose identifier (300
    characters) was cut to 255: its index rows gain the hash, and the cut key goes."""
    import orjson

    from fhir.index import digest

    value = "v" * 300
    body = {"resourceType": "Patient", "id": "long", "identifier": [{"system": "urn:t",
                                                                    "value": value}]}
    db = Database(url)
    try:
        await upgrade(db.engine, "0004")
        async with db.engine.begin() as conn:
            rid = (await conn.execute(sa.text(
                "INSERT INTO resource (type, id, version, last_updated, deleted, content) "
                "VALUES ('Patient', 'long', 1, 0, false, :content) RETURNING rid"),
                {"content": orjson.dumps(body).decode()})).scalar_one()
            await conn.execute(sa.text(
                "INSERT INTO sp_token (rid, param, system, code) "
                "VALUES (:rid, 'identifier', 'urn:t', :code)"), {"rid": rid, "code": value[:255]})
            await conn.execute(sa.text(
                "INSERT INTO conditional_key (type, query, rid) VALUES ('Patient', :q, :rid)"),
                {"q": ("identifier=urn:t|" + value * 4)[:1024], "rid": rid})
        await upgrade(db.engine)
        async with db.engine.connect() as conn:
            rows = [tuple(r) for r in await conn.execute(sa.text(
                "SELECT param, code, code_hash FROM sp_token WHERE rid = :rid "
                "AND param = 'identifier'"), {"rid": rid})]
            keys = list((await conn.execute(sa.text(
                "SELECT query FROM conditional_key"))).scalars())
        assert rows == [("identifier", value[:255], digest(value, 255))]
        return rows, keys
    finally:
        await db.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0005_hashes_values_cut_before(backend: str, request: pytest.FixtureRequest,
                                                 tmp_path: object) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/m.db"
    else:
        url = request.getfixturevalue("pg_url") + "_migrations"
        asyncio.run(_recreate(url))
    rows, keys = asyncio.run(_reindexed(url))
    assert len(rows) == 1 and keys == []


async def _renamed(url: str) -> dict[str, list[str]]:
    """Store, at revision 0004, an AuditEvent and an Observation with index rows under the
    shared keys (the AuditEvent with a token code cut to 255, which migration 0005 indexes
    again); upgrade; the keys each type's rows carry then."""
    import orjson

    from fhir.index import digest

    code = "c" * 300
    audit = {"resourceType": "AuditEvent", "id": "x1", "type": {"system": "urn:t", "code": code}}
    db = Database(url)
    try:
        await upgrade(db.engine, "0004")
        async with db.engine.begin() as conn:
            for rid, type_ in ((1, "AuditEvent"), (2, "Observation")):
                content = orjson.dumps(audit).decode() if rid == 1 else None
                await conn.execute(sa.text(
                    "INSERT INTO resource (rid, type, id, version, last_updated, deleted, "
                    "content) VALUES (:rid, :type, :id, 1, 0, false, :content)"),
                    {"rid": rid, "type": type_, "id": f"x{rid}", "content": content})
                await conn.execute(sa.text(
                    "INSERT INTO sp_reference (rid, param, target_type, target_id) "
                    "VALUES (:rid, 'patient', 'Patient', 'p')"), {"rid": rid})
                await conn.execute(sa.text(
                    "INSERT INTO sp_date (rid, param, lo, hi) VALUES (:rid, 'date', 0, 1)"),
                    {"rid": rid})
            await conn.execute(sa.text(
                "INSERT INTO sp_token (rid, param, system, code) "
                "VALUES (1, 'type', 'urn:t', :code)"), {"code": code[:255]})
        await upgrade(db.engine)
        await upgrade(db.engine)  # a second run renames nothing twice
        async with db.engine.connect() as conn:
            tokens = [tuple(r) for r in await conn.execute(sa.text(
                "SELECT param, code, code_hash FROM sp_token WHERE rid = 1"))]
            # 0005 indexed it again (hash beside the cut code); 0010 left its new key alone.
            assert tokens == [("AuditEvent.type", code[:255], digest(code, 255))]
            rows = (await conn.execute(sa.text(
                "SELECT r.type, s.param FROM resource r JOIN (SELECT rid, param FROM "
                "sp_reference UNION ALL SELECT rid, param FROM sp_date) s ON s.rid = r.rid "
                "ORDER BY r.type, s.param"))).all()
        out: dict[str, list[str]] = {}
        for type_, param in rows:
            out.setdefault(type_, []).append(param)
        return out
    finally:
        await db.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_audit_index_rows_get_keys_of_their_own(backend: str,
                                                    request: pytest.FixtureRequest,
                                                    tmp_path: object) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/keys.db"
    else:
        url = request.getfixturevalue("pg_url") + "_migrations"
        asyncio.run(_recreate(url))
    assert asyncio.run(_renamed(url)) == {
        "AuditEvent": ["AuditEvent.date", "AuditEvent.patient"],
        "Observation": ["date", "patient"]}
