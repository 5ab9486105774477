"""Every FHIR request leaves an AuditEvent (consent/audit.py builds and stores them).

- A write that succeeds stores its audit in its own transaction (`write_in_transaction`,
  run by `Access.guarding` after the work): if the audit cannot be written, neither is the
  change, and the request fails.
- Everything else (reads, searches, and every failure, whose transaction has rolled back)
  is audited by `AuditTrail` once the response has started, through the buffered
  `consent.audit.AuditLog`, which stores batches behind the requests and refuses new
  requests (503) rather than drop records when the database cannot keep up.
- Emergency access is audited with purpose of use ETREAT and its reason, and raises the
  privacy-officer alert (a Flag) in the same transaction as its AuditEvent.
- A patient-entered write also stores a `Provenance` naming the patient (or carer) as its
  author, beside `meta.source`, which the server stamps (api/access.py).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from api.access import Access
from api.http import FHIR_PREFIX
from consent import audit
from consent.principals import Kind
from fhir import guard as fhir_guard
from fhir import interactions, store
from fhir.registry import registry

log = logging.getLogger("carenet.audit")
PUBLIC = {FHIR_PREFIX + "/metadata", FHIR_PREFIX + "/.well-known/smart-configuration"}
PROVENANCE_ACTIVITY = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PROVENANCE_AGENT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def interaction_of(method: str, path: str) -> tuple[str, str | None, str | None]:
    """(interaction, type, id) of a FHIR request, from its method and path."""
    parts = [p for p in path[len(FHIR_PREFIX):].split("/") if p]
    types = registry().resource_types
    type_ = parts[0] if parts and parts[0] in types else None
    id_ = parts[1] if len(parts) > 1 and type_ and not parts[1].startswith(("$", "_")) else None
    if not parts:
        return ("transaction" if method == "POST" else "operation"), None, None
    if any(p.startswith("$") for p in parts):
        return "operation", type_, id_
    if "_history" in parts:
        return ("vread" if parts[-1] != "_history" else "history"), type_, id_
    if method in ("GET", "HEAD"):
        if len(parts) == 1 or (len(parts) == 3 and type_ == "Patient"):
            return "search", parts[-1] if len(parts) == 3 else type_, None
        return "read", type_, id_
    if method == "POST":
        return ("search" if parts[-1] == "_search" else "create"), type_, None
    if method == "PUT":
        return "update", type_, id_
    if method == "PATCH":
        return "patch", type_, id_
    if method == "DELETE":
        return "delete", type_, id_
    return "operation", type_, id_


def request_id(scope: Any) -> str:
    """The request's X-Request-Id: the client's (printable, at most 200 characters), else a
    new one; the response carries it back, and the AuditEvent names it (BALP)."""
    state = scope.setdefault("state", {})
    found = state.get("request_id")
    if found is None:
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                text = value.decode("latin-1")
                if 0 < len(text) <= 200 and text.isprintable():
                    found = text
        found = state["request_id"] = found or uuid.uuid4().hex
    return found


def record(access: Access | None, scope: Any, status: int,
           message: str | None = None) -> audit.AuditRecord:
    """The audit record of a request as it ended."""
    interaction, type_, id_ = interaction_of(scope["method"], scope["path"])
    query = scope.get("query_string", b"").decode("latin-1") or None
    client = scope.get("client")
    principal = access.principal if access is not None else None
    patients: tuple[str, ...] = ()
    purpose, reason = "TREAT", None
    if access is not None:
        patients = tuple(sorted(access.patients))
        if access.break_glass_used:
            purpose, reason = "ETREAT", access.break_glass_reason
    if principal is not None and principal.kind in (Kind.PATIENT, Kind.CARER):
        # Filed under the patient, who reads it: what the server found behind a refusal
        # (another patient, the reason) would tell them what exists and whose it is. A
        # failure names no patient at all, so a refused read of a sealed entry of their own
        # is logged word for word as a read of an id that never existed.
        patients = tuple(p for p in patients if p == principal.patient_id
                         or principal.kind is Kind.CARER) if status < 400 else ()
    elif message is None and access is not None and access.denied:
        message = f"refused: {access.denied}"
    return audit.AuditRecord(
        principal=principal, interaction=interaction, resource_type=type_, resource_id=id_,
        patient_ids=patients, status=status, message=message, purpose=purpose, reason=reason,
        query=query, client_id=access.caller.client_id if access is not None else None,
        source_ip=client[0] if client else None, request_id=request_id(scope))


async def write_in_transaction(conn: AsyncConnection, access: Access, scope: Any) -> None:
    """The audit (and Provenance) of a write that succeeded, in its transaction."""
    with fhir_guard.guarding(None):  # the server writes these, not the caller
        if access.principal.kind in (Kind.PATIENT, Kind.CARER):
            for interaction, type_, id_ in access.written:
                if interaction != "delete":
                    await _provenance(conn, access, interaction, type_, id_)
        await audit.write(conn, [record(access, scope, 200)])
    access.audited = True


async def _provenance(conn: AsyncConnection, access: Access, interaction: str, type_: str,
                      id_: str) -> None:
    """Provenance of patient-entered data (https://hl7.org/fhir/R4/provenance.html): the
    patient (or carer) is its author; it sits in the patient's compartment beside it."""
    stored = await store.read_current(conn, type_, id_)
    if stored is None:
        return
    targets = [{"reference": f"{type_}/{id_}/_history/{stored.version}"}]
    if stored.patient_id and type_ != "Patient":
        targets.append({"reference": f"Patient/{stored.patient_id}"})
    body = {
        "resourceType": "Provenance",
        "target": targets,
        "recorded": store.iso_instant(time.time()),
        "activity": {"coding": [{"system": PROVENANCE_ACTIVITY,
                                 "code": "CREATE" if interaction == "create" else "UPDATE"}]},
        "agent": [{"type": {"coding": [{"system": PROVENANCE_AGENT, "code": "author"}]},
                   "who": {"reference": access.principal.user}}],
        "reason": [{"text": "patient-entered"}],
    }
    await interactions.create(conn, "Provenance", body)


class AuditTrail:
    """ASGI middleware: audit every FHIR request that did not store its own audit."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(FHIR_PREFIX) or path in PUBLIC or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        status = 500

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self._submit(scope, status)
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id(scope).encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            self._submit(scope, 500)
            raise

    @staticmethod
    def _submit(scope: Any, status: int) -> None:
        state = scope.get("state") or {}
        access = state.get("access")
        if access is not None and access.audited:
            return
        if access is not None:
            access.audited = True
        log_ = scope["app"].state.audit
        if log_ is None:  # the server is shutting down: refuse rather than go unaudited
            raise audit.AuditUnavailable("The server is shutting down; try again shortly.")
        log_.submit([record(access, scope, status)])
