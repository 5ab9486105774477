"""The server with access control taken out, as the baseline of bench/access.py. NEVER DEPLOY.

Same code, same routes, same fast read path; what is switched off is everything access
control adds to a request:
- the bearer token is not verified (any Authorization header stands for one all-seeing
  backend service);
- no guard is installed: no per-resource decision, no SQL visibility filter;
- no AuditEvent is written.
It is a module of bench/, imported only by `uvicorn bench.open_app:app` from bench/access.py;
nothing in api/ can reach it.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import Request  # noqa: E402

from api import access, callers  # noqa: E402
from api import audit as api_audit  # noqa: E402
from api.app import create_app  # noqa: E402
from api.deps import get_repository  # noqa: E402
from api.repository import Repository  # noqa: E402
from consent import consents  # noqa: E402
from consent.principals import Kind, PatientFacts, Principal  # noqa: E402
from consent.scopes import parse  # noqa: E402
from consent.tokens import Caller  # noqa: E402

PRINCIPAL = Principal(Kind.SYSTEM, "Device/open-bench")
CALLER = Caller(kind="system", subject="open-bench", scopes=parse("system/*.cruds"),
                client_id="open-bench", expires_at=float("inf"))
OPEN_FACTS = PatientFacts(frozenset(), consents.EVERYTHING)


class OpenRepository(Repository):
    """The one door with no guard: every row visible, nothing checked."""

    visible = None  # type: ignore[assignment]

    @asynccontextmanager
    async def guarding(self, conn: Any, *, write: bool = False,
                       search: bool = False) -> AsyncIterator[Any]:
        yield self


async def open_authenticate(request: Request) -> access.Access:
    grant = access.Access(CALLER, PRINCIPAL, audited=True, scope=request.scope)
    request.state.access = grant
    return grant


callers.cached = lambda token: (CALLER, PRINCIPAL)  # the fast path: any token will do
callers.known_facts = lambda principal, patient_id: OPEN_FACTS
api_audit.AuditTrail._submit = staticmethod(lambda scope, status: None)  # type: ignore[method-assign]

app = create_app()
app.dependency_overrides[access.authenticate] = open_authenticate


async def open_repository(request: Request) -> Repository:
    return OpenRepository(await open_authenticate(request), request.app.state.db)


app.dependency_overrides[get_repository] = open_repository
