"""Index rows and history versions of a transaction, written together at the end.

A resource write touches up to ten tables (the version history and one index table per
parameter type). Statement by statement that is most of a write's cost, so writes queue
their rows here and `flush` sends them at once: on PostgreSQL as one statement (data-modifying
CTEs over `unnest` arrays), on SQLite as one executemany per table. A Bundle transaction
queues all its entries and flushes once; anything that reads the index or the history first
calls `settle`, so reads inside a transaction always see its own writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir.index import finish
from fhir.schema import INDEX_TABLES, history

_HISTORY_COLUMNS = ("rid", "type", "id", "version", "last_updated", "method", "deleted",
                    "content")
_COLUMNS = {name: [c.name for c in table.columns] for name, table in INDEX_TABLES.items()}
_PG_TYPES = {sa.BigInteger: "bigint", sa.Integer: "bigint", sa.Float: "float8",
             sa.Boolean: "boolean"}


def _pg_type(column: sa.Column) -> str:
    if column.name == "content":
        return "jsonb"
    for kind, name in _PG_TYPES.items():
        if isinstance(column.type, kind):
            return name
    return "text"


class Pending:
    """Queued index rows (per table), index rows to clear (by row id) and history versions."""

    def __init__(self) -> None:
        self.clear: set[int] = set()
        self.rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in INDEX_TABLES}
        self.history: list[tuple[Any, ...]] = []
        self.prefetched: dict[tuple[str, str], Any] = {}  # (type, id) → Stored | None

    def index(self, rid: int, rows: dict[str, list[tuple[Any, ...]]], *, replace: bool) -> None:
        """Queue `rows` as the whole index of `rid` (dropping what it had when `replace`)."""
        if replace:
            for name, queued in self.rows.items():
                if any(r[0] == rid for r in queued):
                    self.rows[name] = [r for r in queued if r[0] != rid]
            self.clear.add(rid)
        for name, new in rows.items():
            self.rows[name].extend((rid, *row) for row in finish(name, new))

    def version(self, row: tuple[Any, ...]) -> None:
        self.history.append(row)

    def mark(self) -> tuple[set[int], dict[str, int], int]:
        return set(self.clear), {n: len(r) for n, r in self.rows.items()}, len(self.history)

    def undo(self, mark: tuple[set[int], dict[str, int], int]) -> None:
        """Forget what was queued since `mark` (its savepoint was rolled back)."""
        clear, lengths, versions = mark
        self.clear = clear
        for name, length in lengths.items():
            del self.rows[name][length:]
        del self.history[versions:]

    def empty(self) -> bool:
        return not (self.clear or self.history or any(self.rows.values()))

    async def flush(self, conn: AsyncConnection) -> None:
        if self.empty():
            return
        if conn.dialect.name == "postgresql":
            await self._flush_postgres(conn)
        else:
            await self._flush_each(conn)
        self.__init__()  # type: ignore[misc]

    async def _flush_each(self, conn: AsyncConnection) -> None:
        if self.clear:
            rids = sorted(self.clear)
            for table in INDEX_TABLES.values():
                await conn.execute(table.delete().where(table.c.rid.in_(rids)))
        for name, rows in self.rows.items():
            if rows:
                cols = _COLUMNS[name]
                await conn.execute(INDEX_TABLES[name].insert(),
                                   [dict(zip(cols, r, strict=True)) for r in rows])
        if self.history:
            await conn.execute(history.insert(), [dict(zip(_HISTORY_COLUMNS, r, strict=True))
                                                  for r in self.history])

    async def _flush_postgres(self, conn: AsyncConnection) -> None:
        params: dict[str, Any] = {}
        if self.clear:
            params["clear"] = sorted(self.clear)
        tables = [name for name, rows in self.rows.items() if rows]
        for name in tables:
            for i in range(len(_COLUMNS[name])):
                params[f"{name}_{i}"] = [r[i] for r in self.rows[name]]
        if self.history:
            for i in range(len(_HISTORY_COLUMNS)):
                params[f"history_{i}"] = [r[i] for r in self.history]
        statement = _postgres_statement(bool(self.clear), tuple(tables), bool(self.history))
        await conn.execute(statement, params)


@cache
def _postgres_statement(clear: bool, tables: tuple[str, ...], versions: bool) -> Any:
    """The one flush statement for this shape of batch (built once per shape)."""
    parts: list[str] = []
    if clear:
        for name, table in INDEX_TABLES.items():
            parts.append(f"d_{name} AS (DELETE FROM {table.name} "
                         f"WHERE rid = ANY(CAST(:clear AS bigint[])))")
    targets = [(name, INDEX_TABLES[name], _COLUMNS[name]) for name in tables]
    if versions:
        targets.append(("history", history, list(_HISTORY_COLUMNS)))
    for name, table, cols in targets:
        arrays = [f"CAST(:{name}_{i} AS {_pg_type(table.c[col])}[])" for i, col in enumerate(cols)]
        parts.append(f"i_{name} AS (INSERT INTO {table.name} ({', '.join(cols)}) "
                     f"SELECT * FROM unnest({', '.join(arrays)}))")
    return sa.text(f"WITH {', '.join(parts)} SELECT 1")


async def insert_postgres(conn: AsyncConnection, values: dict[str, Any],
                          rows: dict[str, list[tuple[Any, ...]]], method: str) -> int:
    """A new resource, its index rows and its first history version in ONE statement.

    The single-write fast path on PostgreSQL (no batch open): the resource row's id comes
    from the INSERT's RETURNING and feeds the other inserts in the same statement.
    """
    rows = {name: finish(name, found) for name, found in rows.items() if found}
    tables = tuple(rows)
    params: dict[str, Any] = dict(values, method=method)
    for name in tables:
        for i in range(len(_COLUMNS[name]) - 1):
            params[f"{name}_{i}"] = [r[i] for r in rows[name]]
    result = await conn.execute(_postgres_insert_statement(tables), params)
    return result.scalar_one()


@cache
def _postgres_insert_statement(tables: tuple[str, ...]) -> Any:
    parts = [
        "r AS (INSERT INTO resource (type, id, version, last_updated, deleted, patient_id, "
        "security, content) VALUES (:type, :id, 1, :last_updated, false, :patient_id, "
        ":security, CAST(:content AS jsonb)) RETURNING rid, content)",
        "i_history AS (INSERT INTO resource_history (rid, type, id, version, last_updated, "
        "method, deleted, content) SELECT rid, :type, :id, 1, :last_updated, :method, false, "
        "content FROM r)",
    ]
    for name in tables:
        table = INDEX_TABLES[name]
        cols = _COLUMNS[name][1:]  # all but rid
        arrays = [f"CAST(:{name}_{i} AS {_pg_type(table.c[col])}[])" for i, col in enumerate(cols)]
        parts.append(f"i_{name} AS (INSERT INTO {table.name} (rid, {', '.join(cols)}) "
                     f"SELECT r.rid, u.* FROM r, unnest({', '.join(arrays)}) AS u)")
    return sa.text(f"WITH {', '.join(parts)} SELECT rid FROM r")


_current: ContextVar[Pending | None] = ContextVar("carenet_pending", default=None)


def current() -> Pending | None:
    return _current.get()


@asynccontextmanager
async def batched(conn: AsyncConnection) -> AsyncIterator[Pending]:
    """Queue the writes of the block and flush them when it ends without error."""
    batch = Pending()
    token = _current.set(batch)
    try:
        yield batch
        await batch.flush(conn)
    finally:
        _current.reset(token)


@asynccontextmanager
async def undo_on_error() -> AsyncIterator[None]:
    """Pair with a database savepoint: rows queued inside it go if it rolls back."""
    batch = _current.get()
    mark = batch.mark() if batch is not None else None
    try:
        yield
    except BaseException:
        if batch is not None and mark is not None:
            batch.undo(mark)
        raise


async def settle(conn: AsyncConnection) -> None:
    """Flush what the current transaction has queued, before reading the index or history."""
    batch = _current.get()
    if batch is not None:
        await batch.flush(conn)
