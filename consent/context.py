"""Building the per-request `AccessContext`: the database facts the pure policy reads.

Called once per request, after the principal is known and before any decision:
- for a read or write: the facts about the patients it touches (`patient_ids`);
- for a search: `search=True` also lists the patients the principal reaches and loads the
  compiled Consents of every consented patient within its reach outside its own practice
  (few: Consents are rare, and a member of staff reaches outside their practice only through
  care teams, referrals and claims), so the SQL filter can let those through where the
  Consent allows.
A carer's proxied patients are always resolved (a handful).

The reach of a member of staff (or a practice's system) — the patients of each relationship,
and the Consents of those outside the practice — is listed once and kept for
`REACH_SECONDS` in this process (`Reach`), so a GP's reads and searches cost no relationship
query each: a relationship begun or ended, or a Consent changed, reaches the decisions within
that time; one begun is seen at once (a patient the list does not reach is asked about
again), and a principal's own writes drop its list. Beyond `LIST_LIMIT` patients the
relationship SELECTs are asked per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from consent import consents, relationships
from consent.consents import Sharing
from consent.principals import AccessContext, Kind, PatientFacts, Principal, Relationship

# Relationships outside the registered practice, where the patient's Consents apply.
OUTSIDE = (Relationship.CARE_TEAM, Relationship.REFERRAL, Relationship.SELF_CLAIMED)
STAFF_RELATIONSHIPS = (Relationship.REGISTERED, *OUTSIDE)
# At most this many patient ids are listed per relationship (they reach SQL as one array
# value: relationships.member_of); beyond it, the relationship SELECT is used instead.
LIST_LIMIT = 20_000
# A search's SQL names the patients only up to this many (one array value); beyond it, the
# correlated relationship check (relationships.condition) is cheaper than sending the list.
SQL_LIST_LIMIT = 500
REACH_SECONDS = 5.0
REACH_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class Reach:
    """The patients a principal reaches, per relationship (None: more than LIST_LIMIT), and
    the compiled Consents of the consented ones among those outside its practice."""

    expires: float  # time.monotonic()
    by_kind: dict[Relationship, frozenset[str]] | None
    consented: dict[str, Sharing]

    def facts(self, patient_id: str) -> PatientFacts:
        assert self.by_kind is not None
        found = frozenset(k for k, ids in self.by_kind.items() if patient_id in ids)
        return PatientFacts(found, self.consented.get(patient_id, consents.EVERYTHING))

    @property
    def outside(self) -> frozenset[str] | None:
        if self.by_kind is None:
            return None
        return frozenset().union(*(self.by_kind.get(k, frozenset()) for k in OUTSIDE))


_reaches: dict[tuple[Any, ...], Reach] = {}


def _key(principal: Principal) -> tuple[Any, ...]:
    return (principal.kind, principal.user, principal.organizations, principal.identities)


def _listed_reach(principal: Principal) -> bool:
    return (principal.kind in (Kind.STAFF, Kind.SYSTEM)
            and not relationships.network_wide(principal))


def cached_reach(principal: Principal) -> Reach | None:
    """The principal's reach, if it was listed within REACH_SECONDS."""
    hit = _reaches.get(_key(principal))
    return hit if hit is not None and hit.expires > time.monotonic() else None


def forget_reaches() -> None:
    _reaches.clear()


# The types whose writes can change whom a principal reaches (consent/relationships.py: a
# Patient's generalPractitioner, a CareTeam's members, an open Task or ServiceRequest, a
# self-claim's Basic, a carer's RelatedPerson) or what a patient's Consent lets through.
REACH_TYPES = frozenset({"Patient", "CareTeam", "Task", "ServiceRequest", "Basic",
                         "RelatedPerson", "Consent"})


def forget_reach(principal: Principal) -> None:
    """Drop the principal's reach: it is writing, and what it writes may change it (a patient
    it registers, a care team it joins), which its next request must see at once."""
    _reaches.pop(_key(principal), None)


def wrote(principal: Principal, types: Iterable[str]) -> None:
    """The principal wrote resources of `types`: drop its reach when one of them can change
    it (`REACH_TYPES`); an Observation or a MedicationRequest cannot, and keeping the list
    spares its next request (a GP's app writes and reads in turn) a listing."""
    if not REACH_TYPES.isdisjoint(types):
        forget_reach(principal)


_listing: dict[tuple[Any, ...], asyncio.Future[Reach]] = {}
# The database the reaches of busy principals are listed again from, in the background, half
# way through their life, so no request waits for a listing (api/app.py sets it).
_refresh_db: Any = None
_refreshes: set[asyncio.Task[None]] = set()


def refresh_from(db: Any) -> None:
    """List busy principals' reaches again from `db` in the background (None: stop)."""
    global _refresh_db
    _refresh_db = db
    if db is None:
        for task in list(_refreshes):
            task.cancel()


def _start_refresh(key: tuple[Any, ...], principal: Principal) -> None:
    future: asyncio.Future[Reach] = asyncio.get_running_loop().create_future()
    _listing[key] = future

    async def refresh() -> None:
        try:
            async with _refresh_db.read() as conn:
                future.set_result(await _list_reach(conn, principal, time.time()))
        except asyncio.CancelledError:
            future.cancel()  # whoever waits lists it themselves
            raise
        except Exception as exc:  # noqa: BLE001 - whoever waits (or comes next) lists it
            future.set_exception(exc)
            future.exception()
        finally:
            _listing.pop(key, None)

    task = asyncio.create_task(refresh(), name="carenet-reach-refresh")
    _refreshes.add(task)
    task.add_done_callback(_refreshes.discard)


async def reach(conn: AsyncConnection, principal: Principal, now: float) -> Reach:
    """The principal's reach (a staff member's or a practice system's), listed if stale.

    One listing at a time per principal: the requests that find the list stale while it is
    being made wait for it rather than each making their own (a GP's app sends many at once).
    """
    key = _key(principal)
    hit = cached_reach(principal)
    if hit is not None:
        if (_refresh_db is not None and key not in _listing
                and hit.expires - time.monotonic() < REACH_SECONDS / 2):
            _start_refresh(key, principal)  # list again behind the requests, before it expires
        return hit
    pending = _listing.get(key)
    if pending is not None:
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            if not pending.cancelled():
                raise  # this request was cancelled
        except Exception:  # noqa: BLE001 - that listing failed: list it here
            pass
        return await reach(conn, principal, now)
    future: asyncio.Future[Reach] = asyncio.get_running_loop().create_future()
    _listing[key] = future
    try:
        made = await _list_reach(conn, principal, now)
    except asyncio.CancelledError:
        future.cancel()  # the waiters list it themselves (next call)
        raise
    except Exception as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: the waiters, if any, raise it
        raise
    else:
        future.set_result(made)
        return made
    finally:
        _listing.pop(key, None)


async def _list_reach(conn: AsyncConnection, principal: Principal, now: float) -> Reach:
    by_kind: dict[Relationship, frozenset[str]] | None = {}
    for kind in STAFF_RELATIONSHIPS:
        ids = await relationships.listed(conn, principal, (kind,), LIST_LIMIT)
        if ids is None:
            by_kind = None
            break
        by_kind[kind] = ids  # type: ignore[index]
    made = Reach(time.monotonic() + REACH_SECONDS, by_kind, {})
    outside: Any = made.outside
    if outside is None:
        outside = relationships.patients_of(principal, OUTSIDE)
    loaded = await consents.load(conn, outside) if outside is not None else {}
    made = Reach(made.expires, by_kind,
                 {pid: consents.for_staff(found, principal.references, now)
                  for pid, found in loaded.items()})
    if len(_reaches) >= REACH_CACHE_SIZE:
        _reaches.clear()
    _reaches[_key(principal)] = made
    return made


async def resolve(conn: AsyncConnection, principal: Principal, *, now: float | None = None,
                  patient_ids: Iterable[str] = (), search: bool = False) -> AccessContext:
    """The access context of `principal` for one request."""
    ctx = AccessContext(principal, time.time() if now is None else now)
    ctx.dialect = conn.dialect.name
    wanted = set(patient_ids)
    if principal.break_glass is not None:
        wanted.add(principal.break_glass.patient_id)
    if principal.kind is Kind.CARER:
        wanted.update((await conn.execute(relationships.proxy(principal))).scalars())
    await add_patients(conn, ctx, wanted)
    if search and _listed_reach(principal):  # network-wide principals: no list, no Consent
        found = await reach(conn, principal, ctx.now)
        if found.by_kind is not None:
            for key, ids in (("registered", found.by_kind[Relationship.REGISTERED]),
                             ("outside", found.outside or frozenset())):
                if len(ids) <= SQL_LIST_LIMIT:
                    ctx.reach[key] = ids
        ctx.consented = found.consented
    return ctx


async def add_patients(conn: AsyncConnection, ctx: AccessContext,
                       patient_ids: Iterable[str]) -> None:
    """Resolve the facts about patients not yet in `ctx` (e.g. one a transaction reaches)."""
    new = sorted({p for p in patient_ids if p and p not in ctx.facts})
    if not new:
        return
    principal = ctx.principal
    if _listed_reach(principal):
        found_reach = await reach(conn, principal, ctx.now)
        if found_reach.by_kind is not None:
            for pid in new:
                ctx.facts[pid] = found_reach.facts(pid)
            # A patient the list does not reach is asked about now: a relationship begun
            # since it was listed must not be refused (an ended one lasts REACH_SECONDS).
            new = [pid for pid in new if not ctx.facts[pid].relationships]
            if not new:
                return
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
