"""Access on the FHIR API: who is asking (the bearer token), and what they may do.

Every FHIR route but `metadata` takes an `Access` (through `AccessDep`, or the request's
`Repository`, api/repository.py, which is built on it):

1. the bearer token is verified (consent/tokens.py: ours, or a trusted provider's) and turned
   into a `consent.principals.Principal` (api/callers.py, which remembers both briefly);
2. its SMART scopes must grant the interaction on the type (403 otherwise: that is about the
   app, and reveals nothing of the data); `patient/` scopes confine it to the patient in
   context, and scopes narrowed by search parameters to what such a search finds
   (consent/scope_rules.py);
3. the access policy (consent/policy.py) decides on each resource read or written, and
   filters searches in SQL, through the request's guard (api/guard.py, consent/door.py);
4. a resource the caller may not see answers exactly as one that does not exist (404), so an
   id reveals nothing.

Break-glass: a member of staff without a relationship sends `X-Break-Glass-Reason` (in
words: at least 2 words and 10 letters) and, for a search, `X-Break-Glass-Patient`; access
to that patient's record is then granted (never to entries labelled SDV or V), the access is
audited with purpose of use ETREAT, and a privacy-officer alert is raised (api/audit.py).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from api import callers
from api.callers import (  # noqa: F401 - re-exported for api/oauth and api/fastpath
    CACHE_SECONDS,
    InsufficientScope,
    Unauthenticated,
    cached,
    forget,
    known_facts,
    principal_of,
    remember_facts,
)
from api.oauth import context as oauth_context
from consent import context as access_context
from consent import policy, scopes
from consent.oauth_errors import OAuth2Error
from consent.principals import AccessContext, BreakGlass, Kind, Principal
from consent.scope_rules import ScopeRules
from consent.tokens import Caller
from fhir.errors import Forbidden

BREAK_GLASS_REASON = "x-break-glass-reason"
BREAK_GLASS_PATIENT = "x-break-glass-patient"
MIN_REASON = 10  # letters
MIN_REASON_WORDS = 2
_WORD = re.compile(r"[^\W\d_]{2,}")  # a run of two or more letters, in any script
# The SMART v2 letter each interaction needs (https://hl7.org/fhir/smart-app-launch/
# scopes-and-launch-context.html#scopes-for-requesting-fhir-resources).
LETTER = {"read": "r", "vread": "r", "history": "r", "search": "s", "create": "c",
          "update": "u", "patch": "u", "delete": "d"}


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
    _rules: ScopeRules | None = None

    # ---- scopes ------------------------------------------------------------------------

    @property
    def rules(self) -> ScopeRules:
        """The token's scopes, compiled (consent/scope_rules.py)."""
        if self._rules is None:
            self._rules = ScopeRules.of(self.caller.scopes,
                                        self.caller.patient or self.principal.patient_id)
        return self._rules

    def scope_context(self, resource_type: str, interaction: str,
                      params: list[tuple[str, str]] | None = None) -> str:
        """The scope context ("system", "user" or "patient") that grants `interaction` on
        `resource_type`, preferring the widest; 403 when none does."""
        letter = LETTER[interaction]
        for context in ("system", "user", "patient"):
            if scopes.allows(self.caller.scopes, context, resource_type, letter, params):
                return context
        if letter == "r" and params is None and self.rules.speaks_for(resource_type, "r"):
            # Only scopes with search conditions read the type: a read of one resource is
            # within them when the resource matches them (api/guard.py, `check_read`).
            return next(c for c in ("system", "user", "patient")
                        if any(s.context == c and s.resource_type in ("*", resource_type)
                               and "r" in s.interactions for s in self.caller.scopes.resources))
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

    def guarding(self, conn: AsyncConnection, *, write: bool = False,
                 search: bool = False) -> Any:
        """`conn` under this request's guard (what `Repository.guarding` does), for code that
        holds an Access rather than the request's Repository; new code takes the Repository
        (api/repository.py)."""
        from api.repository import Repository  # the repository builds on this module

        return Repository(self, None).guarding(conn, write=write, search=search)

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
    hit = callers.cached(token)
    if hit is not None:
        caller, principal = hit
    else:
        try:
            caller = await oauth_context.caller_from_request(request)
        except OAuth2Error as exc:
            raise Unauthenticated(exc.description or "The access token is not valid.") from None
        async with oauth_context.db_of(request).read() as conn:
            principal = await principal_of(conn, caller)
        callers.remember(token, caller, principal, min(now + CACHE_SECONDS, caller.expires_at))
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

