"""Table aliases for building search statements, made once and reused.

`Table.alias()` copies every column object, which costs more than the rest of building a
simple search. Within one statement each use needs its own alias; across statements the same
alias objects serve again. So each statement build numbers its aliases from zero
(`numbering()`), and the n-th alias of a table is created once per process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import sqlalchemy as sa

_made: dict[tuple[str, int], Any] = {}
_counts: ContextVar[dict[str, int] | None] = ContextVar("carenet_alias_counts", default=None)


@contextmanager
def numbering() -> Iterator[None]:
    """Number aliases from zero for the statement built inside the block."""
    token = _counts.set({})
    try:
        yield
    finally:
        _counts.reset(token)


def alias(table: sa.Table) -> Any:
    """A fresh alias of `table` for the statement being built (a new one outside `numbering`)."""
    counts = _counts.get()
    if counts is None:
        return table.alias()
    n = counts.get(table.name, 0)
    counts[table.name] = n + 1
    key = (table.name, n)
    made = _made.get(key)
    if made is None:
        made = _made[key] = table.alias(f"{table.name}_{n}")
    return made
