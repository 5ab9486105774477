"""Which resource types each role may read and write: `data/role-access.csv`, read once.

The table is data so that it can be read, reviewed and changed without reading code; its
rationale is in `data/README.md`. A type missing from the table, an unknown role, or a staff
member with no role: nothing (default deny), unless the row `*` (every type not listed) says
otherwise for that column.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache

from consent.principals import DATA, Principal
from fhir.registry import registry

READ = "read"
WRITE = "write"
_CELLS = {"-": (False, False), "r": (True, False), "rw": (True, True)}


@dataclass(frozen=True, slots=True)
class RoleTable:
    """`access[column][resource type] = (may read, may write)`."""

    columns: tuple[str, ...]
    access: dict[str, dict[str, tuple[bool, bool]]]

    def may(self, column: str, resource_type: str, need: str) -> bool:
        cells = self.access.get(column, {})
        read, write = cells.get(resource_type) or cells.get("*", (False, False))
        return write if need == WRITE else read

    def types(self, column: str, need: str = READ) -> frozenset[str]:
        """The resource types `column` may read (or write)."""
        cells = self.access.get(column, {})
        listed = set(cells) - {"*"}
        if "*" in cells:
            listed |= set(registry().resource_types)
        return frozenset(t for t in listed if self.may(column, t, need))


@cache
def table() -> RoleTable:
    with (DATA / "role-access.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.reader(line for line in f if not line.startswith("#"))
        header = next(reader)
        columns = tuple(header[1:])
        access: dict[str, dict[str, tuple[bool, bool]]] = {c: {} for c in columns}
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"role-access.csv: row {row[0]} has {len(row)} cells, "
                                 f"not {len(header)}")
            for column, cell in zip(columns, row[1:], strict=True):
                if cell not in _CELLS:
                    raise ValueError(f"role-access.csv: {row[0]}/{column}: '{cell}' is not "
                                     "one of -, r, rw")
                access[column][row[0]] = _CELLS[cell]
    return RoleTable(columns, access)


def may(principal: Principal, resource_type: str, need: str) -> bool:
    """The principal's role (or kind) may `need` (READ or WRITE) resources of this type."""
    return table().may(principal.access_role, resource_type, need)


def readable(principal: Principal) -> frozenset[str]:
    """The resource types the principal's role (or kind) may read."""
    return table().types(principal.access_role, READ)
