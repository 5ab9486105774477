"""Shared fixtures: the ASGI app on SQLite and on PostgreSQL, and an HTTP client for each.

PostgreSQL comes from CARENET_TEST_POSTGRES_URL, or the local server at 127.0.0.1:5432.
Unreachable PostgreSQL skips those tests on a developer's machine and fails them in CI
(CI=true): CI must prove both backends.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's fhir/ must come before fhir.resources' (DESIGN.md)

from api.app import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from tests.clients import SENT, audited_client, audited_ids  # noqa: E402
from tests.tokens import bearer, mint  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/carenet_test"


def postgres_url() -> str:
    return os.environ.get("CARENET_TEST_POSTGRES_URL", DEFAULT_PG)


async def _reset_postgres(url: str) -> None:
    """Make sure the test database exists and is empty."""
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(False)
    target = parsed.set(drivername="postgresql").render_as_string(False)
    conn = await asyncpg.connect(admin, timeout=5)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", parsed.database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(target, timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = postgres_url()
    try:
        asyncio.run(_reset_postgres(url))
    except (OSError, Exception) as exc:  # noqa: BLE001 - any failure to reach it
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {url} is unreachable in CI: {exc}")
        pytest.skip(f"PostgreSQL at {url} is unreachable: {exc}")
    return url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'carenet.db'}"


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    name = "pg_url" if request.param == "postgres" else "sqlite_url"
    return request.getfixturevalue(name)


@pytest.fixture(scope="session")
async def app(database_url: str) -> AsyncIterator[object]:
    application = create_app(Settings(database_url=database_url))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(autouse=True)
def cold_access_caches() -> None:
    """Each test starts with no principal's reach listed (consent/context.py keeps them for a
    few seconds): what a test wrote before is what its next request sees."""
    from consent import context

    context.forget_reaches()


@pytest.fixture(autouse=True)
async def every_request_is_audited() -> AsyncIterator[None]:
    start, since = len(SENT), time.time() - 1
    yield
    sent = SENT[start:]
    del SENT[start:]
    for app in {id(a): a for a, _ in sent}.values():
        if getattr(app.state, "audit", None) is None:  # its lifespan has ended
            continue
        missing = {rid for a, rid in sent if a is app} - await audited_ids(app, since)
        assert not missing, f"{len(missing)} request(s) left no AuditEvent"


@pytest.fixture(scope="session")
async def system_token(app: object) -> str:
    """A token of the suite's default caller: the network's backend service (tests/tokens.py)."""
    return await mint(app)


@pytest.fixture(scope="session")
async def client(app: object, system_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app, signed in as the network's backend service."""
    async with audited_client(app, base_url="http://test/fhir",
                              headers=bearer(system_token)) as c:
        yield c


@pytest.fixture(scope="session")
async def anonymous(app: object) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app without a token."""
    async with audited_client(app, base_url="http://test/fhir") as c:
        yield c


@pytest.fixture
def tag() -> str:
    """A value unique to one test, to find exactly what the test wrote."""
    return uuid.uuid4().hex[:12]
