"""A patient's view of their access log, and the patients a search's audit reaches.

Patients and carers read AuditEvents redacted (consent/access_log.py: nothing hidden from
them is named): by id, version or search (the request's repository, api/repository.py, asks
here); anywhere else (Bundle entries, history, $everything) they see none (api/guard.py,
consent/door.py). A search's audit is filed under every patient it names or returns.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from api.access import Access
from api.guard import meta_of
from consent import access_log, policy
from consent.principals import Kind
from fhir import store
from fhir.store import Stored


def redacts(access: Access) -> bool:
    """The caller sees AuditEvents redacted (consent.audit.redacted): patients and carers."""
    return access.principal.kind in (Kind.PATIENT, Kind.CARER)


async def _visible_entries(conn: AsyncConnection, access: Access, refs: set[str]) -> set[str]:
    """Which of `refs` (`Type/id`) the caller may read now (what does not exist: none)."""
    seen = set()
    for ref in sorted(refs):
        type_, _, id_ = ref.partition("/")
        stored = await store.read_current(conn, type_, id_) if id_ else None
        if stored is None or stored.deleted:
            continue
        meta = meta_of(stored)
        ctx = await access.context(conn, (meta.patient_id,) if meta.patient_id else ())
        if policy.decide(ctx, "read", stored.type, meta):
            seen.add(ref)
    return seen


async def redact_contents(conn: AsyncConnection, access: Access,
                          contents: list[str | None]) -> list[str | None]:
    """The JSON texts of resources as the caller may see them: AuditEvents redacted for a
    patient or carer, anything else as it is."""
    if not redacts(access):
        return contents
    bodies = {i: orjson.loads(text) for i, text in enumerate(contents)
              if text and '"AuditEvent"' in text}
    bodies = {i: b for i, b in bodies.items() if b.get("resourceType") == "AuditEvent"}
    if not bodies:
        return contents
    refs = set().union(*(access_log.data_references(b) for b in bodies.values()))
    visible = await _visible_entries(conn, access, refs)
    out = list(contents)
    for i, body in bodies.items():
        out[i] = orjson.dumps(access_log.redacted(body, viewer=access.principal.user,
                                             visible=visible)).decode()
    return out



async def redact_stored(conn: AsyncConnection, access: Access, stored: Stored) -> Stored:
    """An AuditEvent as a patient or carer may see it; anything else as it is."""
    if stored.type != "AuditEvent" or not redacts(access):
        return stored
    content = (await redact_contents(conn, access, [stored.content]))[0]
    return dataclasses.replace(stored, content=content)


async def searched(conn: AsyncConnection, access: Access, type_: str,
                   params: list[tuple[str, str]], page: Any) -> None:
    """After a search: redact the AuditEvents a patient or carer finds in `page`, and file
    the search's audit under every patient it names or whose record it returns
    (consent/access_log.py: BALP PatientQuery), so each sees it in their access log."""
    if redacts(access):  # a patient's access log: what it hides from them, left out
        for name in ("matches", "included"):
            rows = getattr(page, name)
            texts = await redact_contents(conn, access, [r[3] for r in rows])
            setattr(page, name, [(*r[:3], t) for r, t in zip(rows, texts, strict=True)])
    access.patients |= access_log.named_patients(type_, params)
    rows = [*page.matches, *page.included]
    access.patients |= {row[2] for row in rows if row[1] == "Patient"}
    others = [row[0] for row in rows if row[1] != "Patient"]
    if others:
        access.patients |= await access_log.returned_patients(conn, others)
