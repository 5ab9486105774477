"""The compiled policy of one request: the per-resource decision and the SQL filter, side by
side, from the same rules.

Two sources of rules, each with both faces written next to each other:
- the access policy (consent/policy.py): role, relationship, Consent, security labels,
  break-glass — `policy.decide` for one resource, `policy.search_filter` as SQL;
- the token's SMART scopes (consent/scope_rules.py): type, letter, launch patient and search
  conditions — `ScopeRules.decide` for one resource (and, where a scope's search conditions
  decide, `ScopeRules.sql` asked of that one row) and `ScopeRules.sql` as the filter.

A row is visible when both let it through. `filter` is what every search applies to every row
it can reveal (fhir/visibility.py); `decide` is what a read by id, a version, a write's
current row and a Bundle's entries ask. Nothing here knows HTTP.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consent import policy
from consent.principals import AccessContext
from consent.scope_rules import ScopeRules, Verdict
from fhir.schema import resource


def row_filter(ctx: AccessContext | None, rules: ScopeRules, row: Any,
               resource_type: str | None, letter: str, *, hide_audit: bool = False) -> Any:
    """SQL: the principal may see `row` (of `resource_type`, None: any) by the policy and by
    the token's scopes for `letter` (`s`: a search finds it; `r`: it is returned or read);
    `hide_audit`: and it is no AuditEvent (a patient or carer outside the routes that redact
    their access log: `check_read`'s rule as SQL)."""
    if ctx is None:  # no search context was resolved for the request: show nothing
        return sa.false()
    scoped = rules.sql(row, resource_type, letter)
    parts = [policy.search_filter(ctx, row, resource_type)]
    if scoped is not None:
        parts.append(scoped)
    if hide_audit and resource_type in (None, "AuditEvent"):
        parts.append(row.c.type != "AuditEvent")
    return parts[0] if len(parts) == 1 else sa.and_(*parts)


async def within_scopes(conn: AsyncConnection, rules: ScopeRules, resource_type: str,
                        id_: str, letter: str) -> bool:
    """Whether the current row of Type/id meets the token's scopes for `letter`: the filter's
    own SQL, asked of that one row (where a scope's search conditions decide)."""
    row = resource.alias("scoped")
    condition = rules.sql(row, resource_type, letter)
    if condition is None:
        return True
    found = await conn.execute(sa.select(row.c.rid).where(
        row.c.type == resource_type, row.c.id == id_, condition))
    return found.first() is not None


async def may_read(conn: AsyncConnection, ctx: AccessContext, rules: ScopeRules,
                   resource_type: str, id_: str, meta: policy.ResourceMeta) -> policy.Decision:
    """The read decision for one stored resource: the scopes (with their conditions asked of
    its row) and the policy. `ctx` must know the resource's patient."""
    verdict = rules.decide(resource_type, "r", meta.patient_id)
    if verdict is Verdict.NO:
        return policy.Decision(False, "outside the patient in the app's launch context")
    decision = policy.decide(ctx, "read", resource_type, meta)
    if decision and verdict is Verdict.MATCH and not await within_scopes(
            conn, rules, resource_type, id_, "r"):
        return policy.Decision(False, "outside the search conditions of the token's scopes")
    return decision
