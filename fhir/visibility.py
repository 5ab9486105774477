"""Which rows a caller may see, as SQL: the hook access control plugs into search.

A `Visibility` is a function of (a row: the resource table or an alias of it, the row's
resource type or None when the row may be of any type) to an SQL condition on that row. The
caller builds one from its compiled policy (consent/door.py); `fhir/` only applies it, to
every row a search can reveal: the matches and what they are counted from, the targets of
chains, the referring rows of `_has`, included rows, `$everything` and the current row of
each version in `_history`. None means every row is visible.

Two views: what a search *finds* (its matches, counts, and the rows its chains and `_has`
pass through) and what is *returned* beside them or read on its own (`_include`,
`_revinclude`, `$everything`, history). They differ only for a token whose SMART scopes
grant search (`s`) and read (`r`) differently; a `Views` carries both, a plain function
serves as both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Filter = Callable[[Any, str | None], Any]


@dataclass(frozen=True, slots=True)
class Views:
    """A caller's filter for what a search finds (`found`) and what it returns beside its
    matches or reads (`read`). Called directly, it is the `found` view."""

    found: Filter
    read: Filter

    def __call__(self, row: Any, type_: str | None) -> Any:
        return self.found(row, type_)


Visibility = Filter | Views


def conditions(visible: Visibility | None, row: Any, type_: str | None, *,
               read: bool = False) -> list[Any]:
    """The condition `row` must meet to be seen, as a list: empty when all rows are visible.
    `read`: the row is returned beside a search's matches or read (includes, $everything,
    history), not matched."""
    if visible is None:
        return []
    if read and isinstance(visible, Views):
        return [visible.read(row, type_)]
    return [visible(row, type_)]
