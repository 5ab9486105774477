"""The Alembic migrations build exactly the schema the code queries (fhir/schema.py)."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import consent.oauth_schema  # noqa: F401  (the authorisation server's tables, same metadata)
from fhir.db import Database
from fhir.migrate import upgrade
from fhir.schema import metadata


async def _differences(url: str) -> list[object]:
    db = Database(url)
    try:
        await upgrade(db.engine)
        await upgrade(db.engine)  # a second run is a no-op
        async with db.engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await db.dispose()


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
