"""Which rows a caller may see, as SQL: the hook access control plugs into search.

A `Visibility` is a function of (a row: the resource table or an alias of it, the row's
resource type or None when the row may be of any type) to an SQL condition on that row. The
caller builds one from its access context (`consent.policy.search_filter`); `fhir/` only
applies it, to every row a search can reveal: the matches and what they are counted from,
the targets of chains, the referring rows of `_has`, included rows, `$everything` and the
current row of each version in `_history`. None means every row is visible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Visibility = Callable[[Any, str | None], Any]


def conditions(visible: Visibility | None, row: Any, type_: str | None) -> list[Any]:
    """The condition `row` must meet to be seen, as a list: empty when all rows are visible."""
    return [] if visible is None else [visible(row, type_)]
