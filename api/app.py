"""The application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

import web
from api import errors, oauth
from api.audit import AuditTrail
from api.export import Exports
from api.fastpath import FastRead
from api.http import FHIR_PREFIX, check_accept
from api.routes import booking, careplans, cds, export, record, risk, search, system, worklist
from api.settings import Settings
from careplans.worklist.events import Worker
from consent import context as access_context
from consent.audit import AuditLog
from fhir.db import Database
from fhir.migrate import upgrade
from fhir.registry import registry


def create_app(settings: Settings | None = None) -> FastAPI:
    """A carenet FHIR server for `settings` (from the environment when not given)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url, pool_size=settings.db_pool_size,
                      statement_timeout_ms=settings.statement_timeout_ms)
        if settings.migrate_on_start:
            await upgrade(db.engine)
        await db.start()
        registry()  # build the search parameter registry before the first request
        app.state.db = db
        app.state.audit = AuditLog(db)
        await app.state.audit.start()
        app.state.worklist = Worker(db)  # worklist events behind the requests
        app.state.worklist.start()
        app.state.exports = Exports(db, settings.export_dir)  # $export jobs (api/export.py)
        access_context.refresh_from(db)
        # What startup built (the registry, compiled FHIRPath, models) lives as long as the
        # process: out of the collector's way, so each collection scans only request garbage.
        gc.freeze()
        try:
            yield
        finally:
            await app.state.exports.stop()
            await app.state.worklist.stop()
            await app.state.audit.stop()
            app.state.audit = None  # stopped: nothing may queue to it any more
            access_context.refresh_from(None)
            await db.dispose()

    app = FastAPI(title="carenet", version=system.VERSION, lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    errors.install(app)
    oauth.install(app)
    app.add_middleware(FastRead)
    app.add_middleware(errors.CatchAll)  # a 500 answered here keeps the connection open
    app.add_middleware(AuditTrail)  # outermost: it sees every answer, the fast path's too
    # The authorisation server first: /fhir/.well-known/... must not reach [type]/[id].
    app.include_router(oauth.router)
    app.include_router(export.router, prefix=FHIR_PREFIX)  # before [type]/[id]
    careplans.install(app)  # its operations before Patient/[id]/[type]; the CarePlan rules
    worklist.install(app)  # Task operations and views; the Task and Encounter rules
    booking.install(app)  # the Appointment rule (booking takes a slot); Slot/$find
    app.include_router(cds.router)  # CDS Hooks: /cds-services (outside the FHIR base)
    # Order matters: fixed paths (metadata, _history, _search) before [type]/[id].
    for routes in (system.router, search.router, risk.router, record.router):
        app.include_router(routes, prefix=FHIR_PREFIX, dependencies=[Depends(check_accept)])
    web.install(app)  # the people's pages (/portal/...): clients of the FHIR API above
    return app
