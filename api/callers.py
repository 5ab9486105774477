"""Who is asking: a bearer token verified and turned into a principal, remembered briefly.

A verified token is remembered for `CACHE_SECONDS` (at most until it expires), so the hot
read path does not verify a signature and look up a user on every request: a revoked token
stops working within that time. What the policy knew of a patient for a principal is kept
for `FACTS_SECONDS` for the same path (api/fastpath.py).

A Practitioner's role and organisation come from the PractitionerRole they act in; a backend
client's organisation from its registration (consent/clients.py).
"""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncConnection

from consent import consents, relationships, users
from consent import context as access_context
from consent.principals import (
    AccessContext,
    Kind,
    PatientFacts,
    Principal,
    Relationship,
    staff_principal,
)
from consent.tokens import Caller
from fhir.errors import Forbidden, NotAuthorized

CACHE_SECONDS = 10.0
CACHE_SIZE = 10_000


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


def remember(token: str, caller: Caller, principal: Principal, until: float) -> None:
    """Keep a verified token's caller and principal until `until` (epoch seconds)."""
    if len(_cache) >= CACHE_SIZE:
        _cache.clear()
    _cache[token] = (until, caller, principal)


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


