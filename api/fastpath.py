"""The hot path: GET [base]/[type]/[id] answered straight from the store.

A read is the most frequent request by far, and it returns the stored JSON text as it is.
This ASGI middleware answers the plain case (no query string, a JSON-compatible Accept,
the resource present) without routing, dependencies or a SQLAlchemy round trip; every other
case, including every error, falls through to the normal routes, so behaviour is the same.
It answers only for a token verified lately and a patient the policy has decided on lately
for this principal (api/callers.py keeps both briefly), with the request guard's own rules
(`RequestGuard.settled_read`: the token's scopes and `consent.policy.decide`); anything they
do not settle at once, a refusal included, takes the full path. The audit
middleware around it records the read.
"""

from __future__ import annotations

from typing import Any

from api import access, callers
from api.guard import RequestGuard
from api.http import FHIR_PREFIX, accept_ok
from fhir import store
from fhir.interactions import ID_PATTERN
from fhir.registry import registry

_PREFIX = FHIR_PREFIX + "/"
_CONTENT_TYPE = (b"content-type", b"application/fhir+json; charset=utf-8")


class FastRead:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.types = registry().resource_types

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            path: str = scope["path"]
            if path.startswith(_PREFIX):
                parts = path[len(_PREFIX):].split("/")
                if (len(parts) == 2 and parts[0] in self.types and ID_PATTERN.match(parts[1])
                        and await self._answer(scope, send, parts[0], parts[1])):
                    return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Any, send: Any, type_: str, id_: str) -> bool:
        token = None
        for name, value in scope["headers"]:
            if name == b"accept" and not accept_ok(value.decode("latin-1")):
                return False
            if name == b"authorization":
                token = value.decode("latin-1").strip().partition(" ")[2].strip()
            elif name.startswith(b"x-break-glass"):
                return False  # emergency access: the full path audits and alerts
        db = scope["app"].state.db
        known = callers.cached(token) if token else None
        if db.raw_pool is None or known is None:
            return False  # no token, or one not yet verified: the full path decides
        grant = access.Access(*known, token=token)
        if type_ == "AuditEvent" and grant.hides_audit():
            return False  # a patient's view of their log is redacted (api/audit.py)
        guard = RequestGuard(grant)
        if not guard.may_ask(type_):
            return False
        stored = await store.read_current_raw(db.raw_pool, type_, id_)
        if stored is None or stored.deleted or stored.content is None:
            return False
        if not guard.settled_read(stored):
            return False  # the full path decides (and audits a refusal with its reason)
        scope.setdefault("state", {})["access"] = grant
        body = stored.content.encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            _CONTENT_TYPE,
            (b"content-length", str(len(body)).encode()),
            (b"etag", stored.etag.encode()),
            (b"last-modified", stored.last_modified.encode()),
        ]})
        await send({"type": "http.response.body", "body": body})
        return True
