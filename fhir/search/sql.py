"""Running search statements: compiled once per shape, and on PostgreSQL on the driver itself.

A search builds a fresh SQLAlchemy statement per request (its values are part of it). Compiling
that statement and passing it through SQLAlchemy's execution layer (a greenlet hand-over per
call, result wrapping) cost more server CPU than PostgreSQL spends answering it. So:

- Compiled SQL is kept per statement *shape*: SQLAlchemy's cache key, which holds the whole
  structure of the statement and none of its bound values. The values of the statement at hand
  are taken from it (`extracted` below) and bound to the kept SQL, so SQL stays parameterised.
  Two callers whose visibility conditions differ only in their values (patient ids, say) share
  one compiled form; conditions that differ in structure (another IN list length is not one:
  lists are expanded at run time) have different keys and never share one.
- On PostgreSQL, when the connection is outside any transaction (the autocommit read path) or
  its transaction has begun, the SQL runs straight on the asyncpg connection. Otherwise, and on
  SQLite, SQLAlchemy executes the statement (with its own compiled cache).
- asyncpg prepares each statement once per connection, and after five runs PostgreSQL may
  switch a prepared statement to a *generic* plan, made without the values. A search's best
  plan depends on them (a practice of 10,000 patients, a birth date range of 2,000): the generic
  plan guesses one row per condition and nests loops over thousands (150 ms where the custom
  plan takes 20). So the connections searches run on plan every statement for its values
  (`plan_cache_mode`, set once per connection, outside transactions so that it sticks; it
  stays for whatever else later runs on the pooled connection, where a custom plan of a
  simple statement costs microseconds). Its better home is the connection's server settings
  in fhir/db.py.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

MAX_SHAPES = 2000  # compiled statements kept per process (least recently used go first)


class _Lru(OrderedDict):  # type: ignore[type-arg]
    """SQLAlchemy's `compiled_cache` protocol (get / set item) over a bounded LRU dict."""

    def get(self, key: Any, default: Any = None) -> Any:  # type: ignore[override]
        value = super().get(key, default)
        if value is not None:
            self.move_to_end(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if len(self) > MAX_SHAPES:
            self.popitem(last=False)


_cache = _Lru()
_custom_plans: weakref.WeakSet[Any] = weakref.WeakSet()  # asyncpg connections set up for it


def render(stmt: Any, dialect: Any) -> tuple[str, list[Any]]:
    """`stmt` as SQL text for `dialect` (numbered $n placeholders) and its positional values."""
    compiled, extracted, _params, _hit = stmt._compile_w_cache(
        dialect, compiled_cache=_cache, column_keys=[])
    params = compiled.construct_params(extracted_parameters=extracted, escape_names=False)
    sql = compiled.string
    names = compiled.positiontup
    if compiled.post_compile_params or compiled.literal_execute_params:  # IN lists
        state = compiled._process_parameters_for_postcompile(params)
        sql, params, names = state.statement, state.parameters, state.positiontup
    processors = compiled._bind_processors
    values = []
    for name in names or ():
        value = params[name]
        processor = processors.get(name)
        values.append(processor(value) if processor is not None and value is not None
                      else value)
    return sql, values


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn` when a statement may run on it directly."""
    if conn.dialect.name != "postgresql":
        return None
    fairy = conn.sync_connection.connection if conn.sync_connection is not None else None
    adapted = getattr(fairy, "dbapi_connection", None)
    if adapted is None:
        return None
    outside = adapted.isolation_level == "autocommit"
    if not outside and getattr(adapted, "_transaction", None) is None:
        return None  # SQLAlchemy begins the transaction on its first statement: let it
    driver = adapted._connection
    if outside and driver not in _custom_plans:
        await driver.execute("SET plan_cache_mode = force_custom_plan")
        _custom_plans.add(driver)
    return driver


async def fetch_all(conn: AsyncConnection, stmt: Any) -> list[tuple[Any, ...]]:
    """All rows of `stmt`, as tuples."""
    driver = await _driver(conn)
    if driver is None:
        return [tuple(r) for r in (await conn.execute(stmt)).all()]
    sql, values = render(stmt, conn.dialect)
    try:
        records = await driver.fetch(sql, *values)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        # As SQLAlchemy would raise it: the error handler maps a DBAPIError by its SQLSTATE,
        # and a lost connection must not go back to the pool.
        lost = isinstance(exc, (OSError, asyncpg.ConnectionDoesNotExistError))
        if lost:
            await conn.invalidate()
        raise sa.exc.DBAPIError(sql, values, exc, connection_invalidated=lost) from exc
    return [tuple(r) for r in records]


async def scalar(conn: AsyncConnection, stmt: Any) -> Any:
    rows = await fetch_all(conn, stmt)
    return rows[0][0]
