"""The guard of one request, which the store and search ask (the `fhir.guard.Guard` protocol).

Made from the request's `Access` (api/access.py); the decisions and the SQL filter come from
one compiled policy (consent/door.py: the access policy and the token's scopes, both faces of
each side by side). The `Repository` (api/repository.py) is this guard plus the interactions
routes call.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from api import callers
from api.access import Access
from consent import consents, door, labels, policy, relationships
from consent.principals import AccessContext, Kind, PatientFacts, Principal, Relationship
from consent.scope_rules import Verdict
from fhir import store
from fhir.errors import FhirError, Forbidden, NotFound
from fhir.store import Stored
from fhir.visibility import Views


class RequestGuard:
    """What one request may read, search and write, asked by the store and search."""

    def __init__(self, access: Access) -> None:
        self.access = access

    @property
    def visible(self) -> Views:
        """The SQL filter of this request: what its searches find and what they return."""
        return Views(self._found, self._returned)

    def _found(self, row: Any, resource_type: str | None) -> Any:
        return door.row_filter(self.access.ctx, self.access.rules, row, resource_type, "s",
                               hide_audit=self.access.hides_audit())

    def _returned(self, row: Any, resource_type: str | None) -> Any:
        return door.row_filter(self.access.ctx, self.access.rules, row, resource_type, "r",
                               hide_audit=self.access.hides_audit())

    def may_ask(self, resource_type: str) -> bool:
        """Whether the token's scopes let it read `resource_type` at all (no lookup needed
        to refuse), with the patient they need in context."""
        try:
            self.access.launch_patient(self.access.scope_context(resource_type, "read"))
        except FhirError:
            return False
        return True

    def settled_read(self, stored: Stored) -> bool:
        """Whether a read of `stored` (a current row) is allowed on what this process already
        knows: the token's scopes without search conditions, and the policy's facts about its
        patient decided lately (api/callers.py). False: not settled here (the fast read
        path's question; the full path then decides, with `check_read`)."""
        access = self.access
        meta = meta_of(stored)
        if access.rules.decide(stored.type, "r", meta.patient_id) is not Verdict.YES:
            return False
        ctx = AccessContext(access.principal, time.time())
        if meta.patient_id is not None:
            facts = callers.known_facts(access.principal, meta.patient_id)
            if facts is None:
                return False
            ctx.facts[meta.patient_id] = facts
            access.patients.add(meta.patient_id)
        return policy.decide(ctx, "read", stored.type, meta).allowed

    async def check_read(self, conn: Any, interaction: str, stored: Stored) -> None:
        access = self.access
        # Word for word what fhir.interactions says of an id (or version) it does not have.
        hidden = NotFound(f"{stored.type}/{stored.id} has no version {stored.version}."
                          if interaction == "vread" else f"{stored.type}/{stored.id} is not known.")
        context = access.scope_context(stored.type, "read")
        if stored.type == "AuditEvent" and access.hides_audit():
            access.denied = "an access log entry outside the routes that redact it"
            raise hidden
        meta = meta_of(stored, with_source=interaction != "read")
        if interaction != "read":  # a version: the current row says whose it is
            current = await store.read_current(conn, stored.type, stored.id)
            if current is None:
                raise hidden
            now = meta_of(current, with_source=True)
            meta = policy.ResourceMeta(now.patient_id, now.labels | meta.labels,
                                       meta.source or now.source)
        if meta.patient_id:
            access.patients.add(meta.patient_id)
        access.launch_patient(context)  # 403 when patient/ scopes have no patient
        verdict = access.rules.decide(stored.type, "r", meta.patient_id)
        if verdict is Verdict.NO:
            access.denied = "outside the patient in the app's launch context"
            raise hidden
        decision = await access.decide(conn, "read", stored.type, meta)
        if not decision:
            access.denied = decision.reason
            raise hidden
        if verdict is Verdict.MATCH and not await door.within_scopes(
                conn, access.rules, stored.type, stored.id, "r"):
            access.denied = "outside the search conditions of the token's scopes"
            raise hidden

    async def check_target(self, conn: Any, interaction: str, resource_type: str, id_: str,
                           current: Stored | None) -> None:
        """Hidden means unknown for writes too: an update, patch or delete of what the caller
        may not see answers as one of an id that does not exist, before its version or
        content is looked at. Create-on-update (a PUT to an id with nothing there) is for the
        principals who reach every record (the network's systems): for anyone else an id
        taken by a record they may not see would answer differently from a fresh one
        (https://hl7.org/fhir/R4/http.html#upsert lets a server refuse client-chosen ids);
        they create with POST."""
        access = self.access
        unknown = NotFound(f"{resource_type}/{id_} is not known." if interaction != "update"
                           else f"{resource_type}/{id_} is not known. To create a "
                           f"{resource_type}, POST it to [base]/{resource_type}: the server "
                           "assigns its id.")
        if current is None:
            if interaction == "update" and not relationships.network_wide(access.principal):
                access.denied = "create-on-update is for the network's own systems"
                raise unknown
            return
        meta = meta_of(current, with_source=True)
        if meta.patient_id:
            access.patients.add(meta.patient_id)
        if not await access.decide(conn, "read", current.type, meta):  # break-glass too
            access.denied = "a resource the caller may not see"
            raise unknown

    def prepare(self, body: dict[str, Any]) -> None:
        source = entered_by(self.access.principal)
        if source is not None:
            meta = dict(body.get("meta") or {})
            meta["source"] = source
            body["meta"] = meta

    async def check_write(self, conn: Any, interaction: str, resource_type: str,
                          body: dict[str, Any] | None, patient_id: str | None,
                          current: Stored | None) -> None:
        access = self.access
        asked = "create" if current is None else interaction
        context = access.scope_context(resource_type, asked)
        confined = access.launch_patient(context)
        metas = []
        if current is not None:
            metas.append(meta_of(current, with_source=True))
        if body is not None:
            metas.append(policy.ResourceMeta.of(body, patient_id))
        access.written.append((asked if asked != "update" else interaction, resource_type,
                               (body or {}).get("id") or (current.id if current else "")))
        for meta in metas:
            if meta.patient_id:
                access.patients.add(meta.patient_id)
            if confined is not None and meta.patient_id != confined:
                access.denied = "outside the patient in the app's launch context"
                raise Forbidden(f"The app may only write to the record of Patient/{confined}.")
            if (asked == "create" and resource_type == "Patient" and meta.patient_id
                    and registers_here(access.principal, body)):
                # A new patient registered at the caller's own practice: the relationship
                # the stored Patient will give them (consent/relationships.py, REGISTERED).
                ctx = await access.context(conn, (meta.patient_id,))
                ctx.facts[meta.patient_id] = PatientFacts(
                    frozenset({Relationship.REGISTERED}), consents.EVERYTHING)
            decision = await access.decide(conn, asked, resource_type, meta)
            if not decision:
                access.denied = decision.reason
                if current is not None and meta is metas[0] and not await self._may_read(
                        conn, current):
                    raise NotFound(f"{resource_type}/{current.id} is not known.")
                raise Forbidden(f"You may not {asked} this {resource_type}: {decision.reason}.")

    async def _may_read(self, conn: Any, stored: Stored) -> bool:
        meta = meta_of(stored)
        ctx = await self.access.context(conn, (meta.patient_id,) if meta.patient_id else ())
        return (await door.may_read(conn, ctx, self.access.rules, stored.type, stored.id,
                                    meta)).allowed


def registers_here(principal: Principal, body: dict[str, Any] | None) -> bool:
    """A Patient `body` whose generalPractitioner is the member of staff's organisation (or
    them, or the role they act in): a registration at their practice."""
    if principal.kind is not Kind.STAFF or not isinstance(body, dict):
        return False
    named = {g.get("reference") for g in body.get("generalPractitioner") or ()
             if isinstance(g, dict)}
    return bool(named & principal.references)


def meta_of(stored: Stored, *, with_source: bool = False) -> policy.ResourceMeta:
    """What a decision needs of a stored resource. Its meta.source (parsing the content) only
    when it counts, so a plain read does not parse what it returns: for a read it matters only
    for a sealed entry (its author sees it regardless); `with_source`: always (a write, whose
    patient or carer must have entered what it changes; a version and its current row)."""
    found = labels.of_column(stored.security)
    source = None
    if ((with_source or found) and stored.content is not None
            and '"source"' in stored.content):
        source = (orjson.loads(stored.content).get("meta") or {}).get("source")
    return policy.ResourceMeta(stored.patient_id, found, source)


def entered_by(principal: Principal) -> str | None:
    """The meta.source the server stamps on what `principal` writes (None: keep the client's).

    Patients and carers: themselves (patient-entered data, which they alone may then change);
    staff and a practice's system: their organisation (the author of a sealed entry keeps
    sight of it, consent/labels.py); a network-wide system (the network's own loaders and
    jobs, which carry the source systems' provenance) keeps what it sends.
    """
    if principal.kind in (Kind.PATIENT, Kind.CARER):
        return principal.user
    if principal.kind in (Kind.STAFF, Kind.PRIVACY_OFFICER, Kind.SYSTEM):
        return principal.organizations[0] if principal.organizations else (
            principal.user if principal.kind is not Kind.SYSTEM else None)
    return None


