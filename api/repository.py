"""The one door to the record: a per-request repository that enforces access and audits.

After Medplum's per-request Repository (DESIGN.md "One door"). A `Repository` is made for
each FHIR request from its `Access` (the principal, its token's scopes, its break-glass
request; api/access.py) and the database. Routes parse, call it, and respond; every read,
search, history, operation, Bundle and write goes through it:
- it checks the token's scopes for the interaction on the type before any lookup (a 403
  reveals nothing of the data);
- it opens the connection under its own guard (`fhir.guard`), which the store and search ask:
  `check_read` for each resource read by id (404 for what the caller may not see), the SQL
  filter `visible` for every row a search can reveal, `check_write` before any change;
- the decision and the filter come from one compiled policy (consent/door.py: the access
  policy and the token's scopes, both faces of each side by side);
- a write's audit is stored in its transaction (api/audit.py); every other request is audited
  by the audit middleware from what the repository recorded on its `Access`.

It lives in api/ because it joins the three packages below it (consent/ decides, fhir/ stores,
api/audit.py records) for one request; it imports nothing of HTTP. The fast read path
(api/fastpath.py) applies the same compiled rules without it, and defers to it for every case
they do not settle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from api import log_view
from api.access import Access
from api.guard import RequestGuard
from consent import access_log
from consent import context as access_context
from fhir import bundles, interactions, search, transaction
from fhir import guard as fhir_guard
from fhir.db import Database
from fhir.errors import Forbidden
from fhir.interactions import Result
from fhir.operations import everything, find_slots
from fhir.search import compartment
from fhir.store import Stored


class Repository(RequestGuard):
    """The one door of one request: the interactions routes call, and the guard they run
    under."""

    def __init__(self, access: Access, db: Database | None) -> None:
        super().__init__(access)
        self.db = db

    # ---- opening the record ------------------------------------------------------------

    @asynccontextmanager
    async def reading(self, *, search: bool = False,
                      snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A read connection under this request's guard; `search`: resolve the search
        context first (what the SQL filter needs)."""
        assert self.db is not None, "a Repository made without a database only guards"
        async with self.db.read(snapshot=snapshot) as conn, self.guarding(conn, search=search):
            yield conn

    @asynccontextmanager
    async def writing(self, *, search: bool = False) -> AsyncIterator[AsyncConnection]:
        """A write transaction under this request's guard, audited within it."""
        assert self.db is not None, "a Repository made without a database only guards"
        async with self.db.write() as conn, self.guarding(conn, write=True, search=search):
            yield conn

    @asynccontextmanager
    async def guarding(self, conn: AsyncConnection, *, write: bool = False,
                       search: bool = False) -> AsyncIterator[Repository]:
        """Serve the request's work in `conn` under this guard; `search`: resolve the search
        context first (searches, and writes whose conditions search). A write's audit (and
        the alert of emergency access, the Provenance of patient-entered data) is stored in
        the same transaction, after the work succeeds."""
        if search:
            await self.access.open_search(conn)
        with fhir_guard.guarding(self):
            yield self
            if write:
                from api import audit  # api.audit builds on api.access

                await audit.write_in_transaction(conn, self.access, self.access.scope)
                # What it wrote may change whom it reaches (a patient it registered, a care
                # team it joined): its next request lists them afresh.
                access_context.wrote(self.access.principal,
                                     {type_ for _, type_, _ in self.access.written})

    # ---- reads and searches -------------------------------------------------------------

    async def read(self, type_: str, id_: str) -> Stored:
        # Before the lookup: a 403 must not mean "it exists".
        self.access.scope_context(type_, "read")
        self.access.shows_audit = True  # redacted below: a patient's view of their access log
        async with self.reading() as conn:
            stored = await interactions.read(conn, type_, id_)
            return await log_view.redact_stored(conn, self.access, stored)

    async def vread(self, type_: str, id_: str, version: str) -> Stored:
        self.access.scope_context(type_, "read")
        self.access.shows_audit = True
        async with self.reading() as conn:
            stored = await interactions.vread(conn, type_, id_, version)
            return await log_view.redact_stored(conn, self.access, stored)

    async def search(self, type_: str, params: list[tuple[str, str]], *, lenient: bool = False,
                     patient: str | None = None) -> tuple[search.Page, search.SearchQuery]:
        """A page of a search of `type_`, within Patient/`patient`'s compartment if given."""
        access, extra = self.access, []
        if patient is None:
            access.scope_context(type_, "search", params)
        else:
            extra.append(compartment.condition(type_, patient))  # 400 when not in it
            access.scope_context(type_, "search", [*params, ("patient", f"Patient/{patient}")])
            self._break_glass_patient(patient)
        if log_view.redacts(access):
            access_log.check_log_search(type_, params)  # 400: what their log is searched by
        access.shows_audit = True  # log_view.searched redacts what a patient finds of it
        async with self.reading(search=True) as conn:
            if patient is not None:
                await interactions.read(conn, "Patient", patient)  # 404 unknown or unseen
            query = search.parse(type_, params, lenient=lenient, visible=self.visible)
            if patient is not None:
                query.path = f"Patient/{patient}/{type_}"
            page = await search.run(conn, query, extra)
            await log_view.searched(conn, access, type_, params, page)
            return page, query

    def _break_glass_patient(self, patient: str) -> None:
        """Emergency access to Patient/[id]/...: the patient of the path, unless
        X-Break-Glass-Patient names another (403 before any lookup, so it tells nothing)."""
        access = self.access
        if access.break_glass_reason is None:
            return
        if access.break_glass_patient is None:
            access.break_glass_patient = patient
        elif access.break_glass_patient != patient:
            raise Forbidden(f"X-Break-Glass-Patient names Patient/{access.break_glass_patient}, "
                            f"but the request is for Patient/{patient}: name the same patient, "
                            "or leave the header out.")

    async def history(self, type_: str | None, id_: str | None, *, since: float | None,
                      count: int, before: int | None) -> tuple[list[Any], int | None]:
        """Versions, newest first, of one resource, a type or everything the caller may see."""
        if type_ is not None:
            self.access.scope_context(type_, "read" if id_ is not None else "search")
        async with self.reading(search=id_ is None) as conn:
            if id_ is not None and type_ is not None:
                await interactions.read_any(conn, type_, id_)  # 404 unless the caller may see it
            rows, after = await interactions.history(conn, type_=type_, id_=id_, since=since,
                                                     count=count, before=before,
                                                     visible=self.visible)
            # Its audit reaches the log of every patient whose record it returns.
            self.access.patients |= await access_log.patients_of(
                conn, {(r[1], r[2]) for r in rows})
            return rows, after

    async def everything(self, patient: str, params: list[tuple[str, str]],
                         base: str) -> AsyncIterator[bytes]:
        """Patient/[id]/$everything as a stream of Bundle bytes; its errors (400, 404 for a
        patient unknown or unseen, 410) are raised before the first byte."""
        query = everything.parse(patient, params, visible=self.visible)
        self.access.scope_context("Patient", "read")
        self._break_glass_patient(patient)
        async with self.reading() as conn:
            await interactions.read(conn, "Patient", patient)
            await self.access.open_search(conn)  # any refusal before the first byte

        async def body() -> AsyncIterator[bytes]:
            # One snapshot, open until the last byte is written.
            async with self.reading(search=True, snapshot=True) as conn:
                stop = await everything.next_page(conn, query)
                links = {"self": query.link()}
                if stop is not None:
                    links["next"] = query.link(stop)
                async for chunk in bundles.searchset_stream(
                        base=base, links=links, rows=everything.rows(conn, query, stop)):
                    yield chunk

        return body()

    async def find_slots(self, params: list[tuple[str, str]]
                         ) -> tuple[search.Page, search.SearchQuery]:
        """Slot/$find (fhir/operations/find_slots.py): free slots, their diaries and places."""
        query = find_slots.parse(params, visible=self.visible)
        for type_ in ("Slot", "Schedule"):
            self.access.scope_context(type_, "search")
        async with self.reading(search=True) as conn:
            return await find_slots.run(conn, query), query.search_query()

    # ---- writes and Bundles --------------------------------------------------------------

    async def write(self, work: Callable[[AsyncConnection], Any], *,
                    search: bool = False) -> Result:
        """Run one write interaction of `fhir.interactions` (`work(conn)`) in a guarded,
        audited transaction; `search`: it matches search criteria (a conditional one)."""
        async with self.writing(search=search) as conn:
            return await work(conn)  # type: ignore[no-any-return]

    async def bundle(self, body: Any, base: str, minimal: bool) -> Any:
        """A batch (each entry alone, guarded, its failure undoing only itself) or a
        transaction (all in one) Bundle.

        A batch's entries on PostgreSQL run in savepoints of one transaction, committed once
        before the answer (a group commit: one WAL flush for the Bundle, not one per entry);
        on SQLite, whose commits are cheap and whose savepoints pysqlite handles badly, each
        in its own transaction. Each entry's audit names what that entry touched, not every
        entry before it (which made a batch's audit, and its time, grow with the square of
        its size).
        """
        # The patients each entry's search names: its audit reaches their access logs.
        named = access_log.named_in_entries(body)
        if body.get("type") == "transaction":
            self.access.patients.update(*named)
            async with self.writing(search=True) as conn:
                return await transaction.transaction(conn, body, base, minimal)
        assert self.db is not None, "a Repository made without a database only guards"
        access = self.access
        each = iter(named)  # `batch` opens one connection per entry, in their order

        def begin_entry() -> None:
            access.patients.clear()
            access.written.clear()
            access.patients |= next(each, set())

        if self.db.is_sqlite:
            @asynccontextmanager
            async def alone() -> AsyncIterator[AsyncConnection]:
                begin_entry()
                async with self.writing(search=True) as conn:
                    yield conn

            return await transaction.batch(alone, body, base, minimal)
        async with self.db.write() as outer:
            @asynccontextmanager
            async def nested() -> AsyncIterator[AsyncConnection]:
                begin_entry()
                async with outer.begin_nested(), self.guarding(outer, write=True, search=True):
                    yield outer

            return await transaction.batch(nested, body, base, minimal)

