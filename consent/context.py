"""Building the per-request `AccessContext`: the database facts the pure policy reads.

Called once per request, after the principal is known and before any decision:
- for a read or write: the facts about the patients it touches (`patient_ids`);
- for a search: `search=True` also lists the patients the principal reaches (when there are
  few) and loads the compiled Consents of every consented patient within its reach outside
  its own practice (few: Consents are rare, and a member of staff reaches outside their
  practice only through care teams, referrals and claims), so the SQL filter can let those
  through where the Consent allows.
A carer's proxied patients are always resolved (a handful).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from consent import consents, relationships
from consent.principals import AccessContext, Kind, PatientFacts, Principal, Relationship

# Relationships outside the registered practice, where the patient's Consents apply.
OUTSIDE = (Relationship.CARE_TEAM, Relationship.REFERRAL, Relationship.SELF_CLAIMED)
# At most this many patient ids are listed in a search's SQL per relationship group (each is
# a bound value; PostgreSQL takes 32767 in a statement, SQLite 32766). Beyond it, the
# relationship SELECT is used instead.
LIST_LIMIT = 2000


async def resolve(conn: AsyncConnection, principal: Principal, *, now: float | None = None,
                  patient_ids: Iterable[str] = (), search: bool = False) -> AccessContext:
    """The access context of `principal` for one request."""
    ctx = AccessContext(principal, time.time() if now is None else now)
    wanted = set(patient_ids)
    if principal.break_glass is not None:
        wanted.add(principal.break_glass.patient_id)
    if principal.kind is Kind.CARER:
        wanted.update((await conn.execute(relationships.proxy(principal))).scalars())
    await add_patients(conn, ctx, wanted)
    if (search and principal.kind in (Kind.STAFF, Kind.SYSTEM)
            and not relationships.network_wide(principal)):  # it is bound by no Consent
        for key, kinds in (("registered", (Relationship.REGISTERED,)), ("outside", OUTSIDE)):
            ids = await relationships.listed(conn, principal, kinds, LIST_LIMIT)
            if ids is not None:
                ctx.reach[key] = ids
        reach: Any = ctx.reach.get("outside")
        if reach is None:
            reach = relationships.patients_of(principal, OUTSIDE)
        loaded = await consents.load(conn, reach) if reach is not None else {}
        ctx.consented = {pid: consents.for_staff(found, principal.references, ctx.now)
                         for pid, found in loaded.items()}
    return ctx


async def add_patients(conn: AsyncConnection, ctx: AccessContext,
                       patient_ids: Iterable[str]) -> None:
    """Resolve the facts about patients not yet in `ctx` (e.g. one a transaction reaches)."""
    new = sorted({p for p in patient_ids if p and p not in ctx.facts})
    if not new:
        return
    principal = ctx.principal
    found = await relationships.resolve(conn, principal, new)
    applies = (principal.kind in (Kind.STAFF, Kind.SYSTEM, Kind.CARER)
               and not relationships.network_wide(principal))
    loaded = await consents.load(conn, new) if applies else {}
    for pid in new:
        rules = loaded.get(pid, [])
        if principal.kind is Kind.CARER:
            sharing = consents.for_carer(rules, principal.persons, ctx.now)
        elif applies:
            sharing = consents.for_staff(rules, principal.references, ctx.now)
        else:
            sharing = consents.EVERYTHING
        ctx.facts[pid] = PatientFacts(found.get(pid, frozenset()), sharing)
