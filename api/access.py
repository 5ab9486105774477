"""Access on the FHIR API: who is asking (the bearer token), and what they may see and do.

The one enforcement point of DESIGN.md, from the API's side. Every FHIR route but
`metadata` takes an `Access` (`AccessDep`):

1. the bearer token is verified (consent/tokens.py: ours, or a trusted provider's) and turned
   into a `consent.principals.Principal` (a Practitioner's role and organisation come from the
   PractitionerRole they act in; a backend client's organisation from its registration);
2. its SMART scopes must grant the interaction on the type (403 otherwise: that is about the
   app, and reveals nothing of the data); `patient/` scopes confine it to the patient in
   context;
3. the access policy (consent/policy.py) decides on each resource read or written (`guard`,
   installed for the store with `fhir.guard.guarding`), and filters searches in SQL
   (`visible`);
4. a resource the caller may not see answers exactly as one that does not exist (404), so an
   id reveals nothing.

Break-glass: a member of staff without a relationship sends `X-Break-Glass-Reason` (in
words: at least 2 words and 10 letters) and, for a search, `X-Break-Glass-Patient`; access
to that patient's record is then granted (never to entries labelled SDV or V), the access is
audited with purpose of use ETREAT, and a privacy-officer alert is raised (api/audit.py).

A verified token is remembered for `CACHE_SECONDS` (at most until it expires), so the hot
read path does not verify a signature and look up a user on every request: a revoked token
stops working within that time.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from api.oauth import context as oauth_context
from consent import consents, labels, policy, relationships, scopes, users
from consent import context as access_context
from consent.oauth_errors import OAuth2Error
from consent.principals import (
    AccessContext,
    BreakGlass,
    Kind,
    PatientFacts,
    Principal,
    Relationship,
    staff_principal,
)
from consent.tokens import Caller
from fhir import guard as fhir_guard
from fhir import store
from fhir.errors import Forbidden, NotAuthorized, NotFound
from fhir.store import Stored

CACHE_SECONDS = 10.0
CACHE_SIZE = 10_000
BREAK_GLASS_REASON = "x-break-glass-reason"
BREAK_GLASS_PATIENT = "x-break-glass-patient"
MIN_REASON = 10  # letters
MIN_REASON_WORDS = 2
_WORD = re.compile(r"[^\W\d_]{2,}")  # a run of two or more letters, in any script
# The SMART v2 letter each interaction needs (https://hl7.org/fhir/smart-app-launch/
# scopes-and-launch-context.html#scopes-for-requesting-fhir-resources).
LETTER = {"read": "r", "vread": "r", "history": "r", "search": "s", "create": "c",
          "update": "u", "patch": "u", "delete": "d"}


class Unauthenticated(NotAuthorized):
    """401 with the RFC 6750 challenge (https://www.rfc-editor.org/rfc/rfc6750#section-3)."""

    def __init__(self, message: str, error: str = "invalid_token") -> None:
        super().__init__(message)
        detail = message.replace("\\", "").replace('"', "'")
        self.headers = {"WWW-Authenticate": f'Bearer realm="carenet", error="{error}", '
                                            f'error_description="{detail}"'}


class InsufficientScope(Forbidden):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": 'Bearer realm="carenet", error="insufficient_scope"'}


@dataclass(slots=True)
class Access:
    """The caller of one request and what the policy knows for it."""

    caller: Caller
    principal: Principal
    token: str = ""
    ctx: AccessContext | None = None
    break_glass_reason: str | None = None
    break_glass_patient: str | None = None
    # What the audit of this request reports (api/audit.py fills in the rest).
    patients: set[str] = field(default_factory=set)
    break_glass_used: set[str] = field(default_factory=set)
    denied: str | None = None
    written: list[tuple[str, str, str]] = field(default_factory=list)  # (interaction, type, id)
    audited: bool = False
    scope: Any = None  # the ASGI scope of the request
    # The route redacts AuditEvents for a patient or carer (api/audit.py); elsewhere (Bundle
    # entries, history, $everything) they see none.
    shows_audit: bool = False

    # ---- scopes ------------------------------------------------------------------------

    def scope_context(self, resource_type: str, interaction: str,
                      params: list[tuple[str, str]] | None = None) -> str:
        """The scope context ("system", "user" or "patient") that grants `interaction` on
        `resource_type`, preferring the widest; 403 when none does."""
        letter = LETTER[interaction]
        for context in ("system", "user", "patient"):
            if scopes.allows(self.caller.scopes, context, resource_type, letter, params):
                return context
        narrowed = [s.text for s in self.caller.scopes.resources
                    if s.conditions and s.resource_type in ("*", resource_type)
                    and letter in s.interactions]
        if narrowed:
            raise InsufficientScope(
                f"The token's scope {' '.join(narrowed)} grants {resource_type} only for "
                "searches that carry the same parameters.")
        raise InsufficientScope(f"The token's scopes do not grant '{interaction}' on "
                                f"{resource_type} (needs e.g. user/{resource_type}.{letter}).")

    def launch_patient(self, context: str) -> str | None:
        """The patient `patient/` scopes confine the request to (None: no such limit)."""
        if context != "patient":
            return None
        patient = self.caller.patient or self.principal.patient_id
        if not patient:
            raise InsufficientScope("patient/ scopes need a patient in context (launch/patient).")
        return patient

    def readable_types(self) -> frozenset[str] | None:
        """The types some scope lets the caller read or search (None: every type)."""
        found: set[str] = set()
        for s in self.caller.scopes.resources:
            if s.interactions & {"r", "s"}:
                if s.resource_type == "*":
                    return None
                found.add(s.resource_type)
        return frozenset(found)

    def hides_audit(self) -> bool:
        """A patient or carer outside the routes that redact AuditEvents sees none."""
        return self.principal.kind in (Kind.PATIENT, Kind.CARER) and not self.shows_audit

    # ---- the policy ----------------------------------------------------------------------

    async def context(self, conn: AsyncConnection, patient_ids: tuple[str, ...] = (),
                      search: bool = False) -> AccessContext:
        if self.ctx is None or search:
            self.ctx = await access_context.resolve(conn, self.principal,
                                                    patient_ids=patient_ids, search=search)
        else:
            await access_context.add_patients(conn, self.ctx, patient_ids)
        return self.ctx

    def with_break_glass(self, patient_id: str, now: float) -> bool:
        """Open emergency access to `patient_id` when the request asks for it (a reason, and
        the patient if it names one); whether it did."""
        reason = self.break_glass_reason
        if (reason is None or self.principal.kind is not Kind.STAFF
                or (self.break_glass_patient not in (None, patient_id))):
            return False
        check_reason(reason)
        self.principal = replace(self.principal,
                                 break_glass=BreakGlass.start(patient_id, reason.strip(), now))
        self.ctx = None
        return True

    async def decide(self, conn: AsyncConnection, interaction: str, resource_type: str,
                     meta: policy.ResourceMeta) -> policy.Decision:
        """The policy's decision, opening break-glass when the request asks for it."""
        ctx = await self.context(conn, (meta.patient_id,) if meta.patient_id else ())
        if self.principal.break_glass is None:
            remember_facts(ctx)
        decision = policy.decide(ctx, interaction, resource_type, meta)
        if not decision and meta.patient_id and self.with_break_glass(meta.patient_id,
                                                                       ctx.now):
            ctx = await self.context(conn, (meta.patient_id,))
            decision = policy.decide(ctx, interaction, resource_type, meta)
        if decision and decision.break_glass and meta.patient_id:
            self.break_glass_used.add(meta.patient_id)
        return decision

    def read_context(self, resource_type: str | None) -> str | None:
        """The widest scope context that lets the caller read or search `resource_type` (any
        type: None), or None when no scope does."""
        for context in ("system", "user", "patient"):
            for s in self.caller.scopes.resources:
                if (s.context == context and s.interactions & {"r", "s"}
                        and (resource_type is None or s.resource_type in ("*", resource_type))):
                    return context
        return None

    def guard(self) -> AccessGuard:
        return AccessGuard(self)

    @asynccontextmanager
    async def guarding(self, conn: AsyncConnection, *, write: bool = False,
                       search: bool = False) -> AsyncIterator[AccessGuard]:
        """Serve a request's work in `conn` under this caller's guard; `search`: resolve the
        search context first (searches, and writes whose conditions search). A write's
        audit (and the alert of emergency access, the Provenance of patient-entered data)
        is stored in the same transaction, after the work succeeds."""
        if search:
            await self.open_search(conn)
        guard = self.guard()
        with fhir_guard.guarding(guard):
            yield guard
            if write:
                from api import audit  # api.audit builds on this module

                await audit.write_in_transaction(conn, self, self.scope)
                # What it wrote may change whom it reaches (a patient it registered, a care
                # team it joined): its next request lists them afresh.
                access_context.forget_reach(self.principal)

    async def open_search(self, conn: AsyncConnection) -> AccessContext:
        """Resolve the search context (with emergency access to the patient the request
        names, when it asks for it)."""
        if self.break_glass_reason is not None:
            if self.break_glass_patient is None:
                raise Forbidden(f"Emergency access to a search needs the patient in "
                                f"{BREAK_GLASS_PATIENT} as well as {BREAK_GLASS_REASON}.")
            if self.with_break_glass(self.break_glass_patient, time.time()):
                self.break_glass_used.add(self.break_glass_patient)
                self.patients.add(self.break_glass_patient)
        return await self.context(conn, search=True)


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


class AccessGuard:
    """The `fhir.guard.Guard` of one request: what it reads, searches and writes, decided by
    the scopes and the policy."""

    def __init__(self, access: Access) -> None:
        self.access = access

    def visible(self, row: Any, resource_type: str | None) -> Any:
        access = self.access
        ctx = access.ctx
        if ctx is None:  # the route did not resolve a search context: show nothing
            return sa.false()
        context = access.read_context(resource_type)
        if context is None:
            return sa.false()
        parts = [policy.search_filter(ctx, row, resource_type)]
        if access.hides_audit():
            parts.append(row.c.type != "AuditEvent")
        readable = access.readable_types()
        if resource_type is None and readable is not None:
            parts.append(row.c.type.in_(sorted(readable)))
        if context == "patient":
            confined = access.launch_patient(context)
            parts.append(sa.or_(row.c.patient_id == confined, row.c.patient_id.is_(None)))
        return sa.and_(*parts)

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
        confined = access.launch_patient(context)
        if confined is not None and meta.patient_id != confined:
            access.denied = "outside the patient in the app's launch context"
            raise hidden
        decision = await access.decide(conn, "read", stored.type, meta)
        if not decision:
            access.denied = decision.reason
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
        if not await access.decide(conn, "read", current.type, meta):
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
                if current is not None and meta is metas[0] and not await _may_read(
                        access, conn, current):
                    raise NotFound(f"{resource_type}/{current.id} is not known.")
                raise Forbidden(f"You may not {asked} this {resource_type}: {decision.reason}.")


def registers_here(principal: Principal, body: dict[str, Any] | None) -> bool:
    """A Patient `body` whose generalPractitioner is the member of staff's organisation (or
    them, or the role they act in): a registration at their practice."""
    if principal.kind is not Kind.STAFF or not isinstance(body, dict):
        return False
    named = {g.get("reference") for g in body.get("generalPractitioner") or ()
             if isinstance(g, dict)}
    return bool(named & principal.references)


async def _may_read(access: Access, conn: Any, stored: Stored) -> bool:
    meta = meta_of(stored)
    ctx = await access.context(conn, (meta.patient_id,) if meta.patient_id else ())
    return policy.decide(ctx, "read", stored.type, meta).allowed


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


# ---- authentication --------------------------------------------------------------------

_cache: dict[str, tuple[float, Caller, Principal]] = {}
# What the policy knew of a patient for a principal, kept briefly for the hot read path
# (api/fastpath.py): a relationship ended or a Consent changed reaches it within this time.
FACTS_SECONDS = 5.0
_facts: dict[tuple[Principal, str], tuple[float, PatientFacts]] = {}


def remember_facts(ctx: AccessContext) -> None:
    expires = time.monotonic() + FACTS_SECONDS
    if len(_facts) >= CACHE_SIZE:
        _facts.clear()
    for pid, facts in ctx.facts.items():
        _facts[(ctx.principal, pid)] = (expires, facts)


_ANYONE = PatientFacts(frozenset({Relationship.NETWORK}), consents.EVERYTHING)
_OWN = PatientFacts(frozenset({Relationship.SELF}), consents.EVERYTHING)


def known_facts(principal: Principal, patient_id: str) -> PatientFacts | None:
    """What the policy knows of `patient_id` for `principal` without asking the database:
    nothing to know (network-wide principals, a patient's own record), the principal's
    listed reach (consent/context.py), or a decision made lately; None: ask."""
    if relationships.network_wide(principal):
        return _ANYONE
    if principal.kind is Kind.PATIENT:
        return _OWN if patient_id == principal.patient_id else None
    listed = access_context.cached_reach(principal)
    if listed is not None and listed.by_kind is not None:
        facts = listed.facts(patient_id)
        if facts.relationships:
            return facts
    hit = _facts.get((principal, patient_id))
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def cached(token: str) -> tuple[Caller, Principal] | None:
    """The caller and principal of a token verified within the last CACHE_SECONDS."""
    hit = _cache.get(token)
    return (hit[1], hit[2]) if hit is not None and hit[0] > time.time() else None


def forget(token: str) -> None:
    """Drop a token from the cache (it has been revoked)."""
    _cache.pop(token, None)


async def principal_of(conn: AsyncConnection, caller: Caller) -> Principal:
    """The principal a verified caller is."""
    granted = frozenset(caller.scopes.texts())
    reference = caller.fhir_user or caller.subject
    if reference.startswith("RelatedPerson/"):  # a carer, signed in as the RelatedPerson
        found = await users.exists(conn, "RelatedPerson", reference.partition("/")[2])
        if found is None or found.get("active") is False:
            raise Unauthenticated(f"{reference} may not use this server (unknown or inactive).")
        return Principal(Kind.CARER, user=reference, scopes=granted, client_id=caller.client_id)
    if caller.kind == "system":
        if caller.subject != caller.client_id:  # a backend service's token is its own
            raise Unauthenticated("The token names neither a user nor the client it was "
                                  "issued to.")
        from consent import clients

        client = await clients.find(conn, caller.client_id or caller.subject)
        # A token for a client this server never registered can only have been signed with
        # its own keys by its operator (`python -m api token`, `seed`); a registered one
        # reaches records only if the operator registered it (open registration is for apps).
        if client is not None and not client.operator_registered:
            raise InsufficientScope("This backend service was registered through open "
                                    "registration; only one the operator registers "
                                    "(python -m api register-client) may reach records.")
        org = (client.metadata.get("organization") if client is not None else None)
        orgs = (org,) if isinstance(org, str) and org.startswith("Organization/") else ()
        return Principal(Kind.SYSTEM, user=f"Device/{caller.client_id or caller.subject}",
                         organizations=orgs, scopes=granted, client_id=caller.client_id)
    if caller.kind == "patient":
        user = await users.lookup(conn, reference)
        if user is None or user.kind != "patient":
            raise Unauthenticated(f"{reference} may not use this server (unknown or inactive).")
        return Principal(Kind.PATIENT, user=reference, scopes=granted,
                         client_id=caller.client_id)
    user = await users.lookup(conn, reference)
    if user is None or not user.roles:
        raise Unauthenticated(f"{reference} may not use this server (unknown, inactive, or "
                              "without a PractitionerRole).")
    wanted = caller.claims.get("practitioner_role") if caller.claims else None
    role = next((r for r in user.roles if r.id == wanted), user.roles[0])
    return staff_principal(user=reference, practitioner_role=role.id,
                           organization=role.organization, sds_code=role.code,
                           scopes=granted, client_id=caller.client_id)


async def authenticate(request: Request) -> Access:
    """The `Access` of a FHIR request: 401 (OperationOutcome and a Bearer challenge) without a
    valid token."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("This server needs an access token: send Authorization: Bearer "
                              "<token> (see /.well-known/smart-configuration).",
                              error="invalid_request")
    token = header.strip().partition(" ")[2].strip()
    now = time.time()
    hit = _cache.get(token)
    if hit is not None and hit[0] > now:
        caller, principal = hit[1], hit[2]
    else:
        try:
            caller = await oauth_context.caller_from_request(request)
        except OAuth2Error as exc:
            raise Unauthenticated(exc.description or "The access token is not valid.") from None
        async with oauth_context.db_of(request).read() as conn:
            principal = await principal_of(conn, caller)
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        _cache[token] = (min(now + CACHE_SECONDS, caller.expires_at), caller, principal)
    access = Access(caller, principal, token)
    access.break_glass_reason = request.headers.get(BREAK_GLASS_REASON)
    patient = request.headers.get(BREAK_GLASS_PATIENT)
    if patient is not None:
        access.break_glass_patient = patient.strip().removeprefix("Patient/")
    access.scope = request.scope
    request.state.access = access
    if access.break_glass_reason is not None and principal.kind is Kind.STAFF:
        # At once: refused only once a record is found, a short reason would say it exists.
        check_reason(access.break_glass_reason)
    return access


def check_reason(reason: str) -> None:
    """403 unless an emergency access reason says something in words: at least
    MIN_REASON_WORDS words of two or more letters, MIN_REASON letters in all (padding,
    digits and punctuation do not count)."""
    words = _WORD.findall(reason)
    if len(words) < MIN_REASON_WORDS or sum(len(w) for w in words) < MIN_REASON:
        raise Forbidden(f"Emergency access needs a reason in words in {BREAK_GLASS_REASON}: "
                        f"at least {MIN_REASON_WORDS} words and {MIN_REASON} letters, such "
                        "as 'unconscious in ED, needs medication history'.")


AccessDep = Annotated[Access, Depends(authenticate)]

