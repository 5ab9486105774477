"""The access guard of the request being served, for the storage and search layers.

`fhir/` knows nothing of tokens, roles or Consents (DESIGN.md: consent/ decides). The API
layer's per-request repository is the `Guard` (api/repository.py, api/guard.py, deciding
with consent/door.py) and installs itself with `guarding()`. Then:
- every write (`fhir.store.insert`, `replace`, `mark_deleted`), whether a plain interaction,
  a conditional one or an entry of a Bundle, asks `check_write` before it changes anything,
  with the patient the resource belongs to before and after;
- every read of one resource (`fhir.interactions.read`, `vread`, instance history) asks
  `check_read`, which answers 404 for what the caller may not see;
- every write to an id (update, patch, delete) asks `check_target` before it looks at what is
  there (its version for If-Match, its content for a patch, whether it exists at all for
  create-on-update), so what the caller may not see answers as an id that does not exist;
- every search that runs without an explicit visibility (conditional matching, the entries
  of a Bundle) takes `visible` as its SQL filter, so a condition can never match, and so
  reveal, what the caller may not see.
Without a guard (the storage tests, the migrations, the server's own jobs) nothing is
filtered: the API never serves a request without one. `prepare` and `check_write` also apply
the resource type's own write rules (fhir/writerules.py), guard or not.

Left for later (issue 9): the guard is found here through a context variable; the store and
interactions should take it as an explicit argument from the repository instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from fhir import writerules

if TYPE_CHECKING:
    from fhir.store import Stored


class Guard(Protocol):
    def visible(self, row: Any, resource_type: str | None) -> Any:
        """SQL: the caller may read `row` (an alias of fhir.schema.resource)."""

    async def check_read(self, conn: Any, interaction: str, stored: Stored) -> None:
        """Raise NotFound unless the caller may read `stored` ("read": the current row,
        "vread" or "history": a version of it)."""

    async def check_target(self, conn: Any, interaction: str, resource_type: str, id_: str,
                           current: Stored | None) -> None:
        """Raise NotFound unless the caller may know what is at `resource_type/id_` before
        `interaction` ("update", "patch", "delete") acts on it: `current` (a deleted one
        included) must be visible to them; None (nothing there) must be theirs to create
        with a client-chosen id (an update)."""

    def prepare(self, body: dict[str, Any]) -> None:
        """Stamp what the server, not the client, says of a resource about to be stored
        (meta.source: who entered it)."""

    async def check_write(self, conn: Any, interaction: str, resource_type: str,
                          body: dict[str, Any] | None, patient_id: str | None,
                          current: Stored | None) -> None:
        """Raise a FhirError unless the caller may do `interaction` ("create", "update",
        "delete") with `body` (None for a delete) of the patient `patient_id`, replacing
        `current` (None for a create)."""


_current: ContextVar[Guard | None] = ContextVar("carenet_guard", default=None)


def current() -> Guard | None:
    return _current.get()


@contextmanager
def guarding(guard: Guard | None) -> Iterator[None]:
    token = _current.set(guard)
    try:
        yield
    finally:
        _current.reset(token)


def visible(row: Any, resource_type: str | None) -> Any | None:
    """The guard's SQL filter for `row`, or None when no guard is installed."""
    guard = _current.get()
    return None if guard is None else guard.visible(row, resource_type)


def visibility() -> Any | None:
    """The installed guard's `visible`, or None."""
    guard = _current.get()
    return None if guard is None else guard.visible


async def check_read(conn: Any, interaction: str, stored: Stored) -> None:
    guard = _current.get()
    if guard is not None:
        await guard.check_read(conn, interaction, stored)


async def check_target(conn: Any, interaction: str, resource_type: str, id_: str,
                       current_: Stored | None) -> None:
    guard = _current.get()
    if guard is not None:
        await guard.check_target(conn, interaction, resource_type, id_, current_)


def prepare(body: dict[str, Any]) -> None:
    guard = _current.get()
    if guard is not None:
        guard.prepare(body)
    writerules.prepare(body)  # the type's own rules (fhir/writerules.py), guard or not


async def check_write(conn: Any, interaction: str, resource_type: str,
                      body: dict[str, Any] | None, patient_id: str | None,
                      current_: Stored | None) -> None:
    guard = _current.get()
    if guard is not None:
        await guard.check_write(conn, interaction, resource_type, body, patient_id, current_)
    await writerules.check(conn, interaction, resource_type, body, patient_id, current_)
