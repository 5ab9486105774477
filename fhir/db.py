"""Database engines for the two backends: SQLite (embedded default) and PostgreSQL.

JSON columns carry JSON *text* both ways: the store serialises once with orjson and a read
returns the stored text as it is, with no parse and no model round trip on the hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from fhir import jsontext


def _to_json_text(value: Any) -> str:
    return value if isinstance(value, str) else jsontext.dumps(value).decode()


def _keep_text(value: Any) -> Any:
    return value


def async_url(url: str) -> str:
    """`url` with the async driver this project uses (asyncpg or aiosqlite)."""
    parsed = make_url(url)
    driver = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
              "sqlite": "sqlite+aiosqlite"}.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


class Database:
    """One engine, and the two ways in: `read()` and `write()` (one transaction each)."""

    def __init__(self, url: str, *, pool_size: int = 10, statement_timeout_ms: int = 30_000,
                 echo: bool = False) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {
            "json_serializer": _to_json_text,
            "json_deserializer": _keep_text,
            "echo": echo,
        }
        if self.is_sqlite:
            kwargs["async_creator"] = partial(_connect_sqlite, make_url(self.url).database)
        else:
            # Overflow connections are closed on return and churn under load; a request waits
            # for a pooled connection instead. Workers x 2 x pool_size must stay under the
            # server's max_connections (100 by default).
            kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=30,
                          pool_pre_ping=False)
            # A runaway query is stopped by the server, not left to hold a connection.
            kwargs["connect_args"] = {
                "server_settings": {"statement_timeout": str(statement_timeout_ms)}
            }
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._read_engine = (self.engine if self.is_sqlite else
                             self.engine.execution_options(isolation_level="AUTOCOMMIT"))
        # SQLite has one writer: writers queue here instead of failing with "database is locked".
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._pool_size = pool_size
        self._timeout_ms = statement_timeout_ms
        # PostgreSQL only: a bare asyncpg pool for the hot read path (no SQLAlchemy per call).
        self.raw_pool: Any = None

    async def start(self) -> None:
        """Open what needs an event loop: the raw read pool on PostgreSQL."""
        if self.is_sqlite or self.raw_pool is not None:
            return
        import asyncpg

        url = make_url(self.url).set(drivername="postgresql").render_as_string(False)
        self.raw_pool = await asyncpg.create_pool(
            url, min_size=1, max_size=self._pool_size,
            server_settings={"statement_timeout": str(self._timeout_ms)},
            # The read path changes no session state, so the reset asyncpg runs on every
            # release (a round trip of RESET ALL, UNLISTEN, ...) is pure cost here.
            reset=_no_reset,
        )

    @asynccontextmanager
    async def read(self, *, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection for reading, outside any transaction on PostgreSQL (autocommit):
        a read then costs no BEGIN and ROLLBACK round trips. `snapshot`: in one transaction
        (what a server-side cursor, `conn.stream`, needs)."""
        async with (self.engine if snapshot else self._read_engine).connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits when the block ends and rolls back if it raises."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def dispose(self) -> None:
        if self.raw_pool is not None:
            await self.raw_pool.close()
            self.raw_pool = None
        await self.engine.dispose()


async def _no_reset(_conn: Any) -> None:
    return None


class _InlineSqlite(aiosqlite.Connection):
    """An aiosqlite connection whose calls run on the event loop's own thread.

    aiosqlite hands every call (cursor, execute, fetch, close: about four per statement) to a
    helper thread; for SQLite's microsecond statements the hand-overs cost more than the work
    (measured: the demo load ran at a third of the speed). SQLite is the single-process
    embedded store with one writer at a time (`Database.write`), so running inline is safe.
    """

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


async def _connect_sqlite(path: str | None) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path or ":memory:", check_same_thread=False, timeout=5)
    conn.__class__ = _InlineSqlite
    return conn


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # SQLite's lower() folds ASCII only, PostgreSQL's all of Unicode: token :text relies on it.
    dbapi_conn.create_function("lower", 1, _lower, deterministic=True)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value
