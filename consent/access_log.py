"""The access log as its patient sees it, and which patients' logs a search reaches.

Pure rules beside consent/audit.py (which builds and stores the AuditEvents); api/audit.py
applies them to what a patient or carer reads, and the request's repository (api/repository.py)
to what a search audits and what a patient may search their log by.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir.errors import BadRequest
from fhir.schema import resource

# ---- what a patient sees of their access log ------------------------------------------------
# A patient (and a carer) learns from their log who looked at their record, when, how (the
# interaction, the type searched) and why (the purpose, a break-glass reason), never what it
# hides from them: the entity of an entry they may not see is left out, whether the entry is
# sealed from them or never existed, so the two read alike; failures say only their status
# (never "refused: a sealed entry"); the searches of others show the type and parameter names
# searched, not the values (which may be the id of a hidden entry).


def data_references(body: dict[str, Any]) -> set[str]:
    """The `Type/id` of each entry an AuditEvent names as its data (BALP entity[data])."""
    found = set()
    for entity in body.get("entity", ()):
        ref = (entity.get("what") or {}).get("reference")
        if (entity.get("role") or {}).get("code") == "4" and isinstance(ref, str):
            found.add("/".join(ref.split("/")[:2]))
    return found


def redacted(body: dict[str, Any], *, viewer: str, visible: set[str]) -> dict[str, Any]:
    """`body`, an AuditEvent, as the patient or carer `viewer` (a reference) sees it, given
    the entries (`Type/id`) among its data they may see."""
    out = dict(body)
    own = any(agent.get("requestor") and (agent.get("who") or {}).get("reference") == viewer
              for agent in body.get("agent", ()))
    entities = []
    for entity in body.get("entity", ()):
        role = (entity.get("role") or {}).get("code")
        if role == "4":
            ref = (entity.get("what") or {}).get("reference", "")
            if "/".join(ref.split("/")[:2]) not in visible:
                continue
        elif role == "24" and not own:
            type_, _, query = str(entity.get("description") or "").partition("?")
            names = sorted({part.partition("=")[0] for part in query.split("&") if part})
            entity = {k: v for k, v in entity.items() if k != "query"}
            entity["description"] = f"{type_}?{'&'.join(names)}"
        entities.append(entity)
    if entities:
        out["entity"] = entities
    else:
        out.pop("entity", None)
    if "outcomeDesc" in out:
        out["outcomeDesc"] = str(out["outcomeDesc"]).partition(" ")[0]
    return out


# ---- the patients of a search ---------------------------------------------------------------
# BALP PatientQuery: a search is audited once for every patient it names or whose record it
# returns, so each of them finds it in their own access log (`AuditEvent?patient=`).

_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^,/]*)?$")


def named_patients(resource_type: str, params: Iterable[tuple[str, str]]) -> set[str]:
    """The patient ids a search's parameters name: any `Patient/<id>` reference (relative or
    absolute), a bare id of a `patient` parameter, and `_id` of a Patient search."""
    found: set[str] = set()
    for key, value in params:
        name = key.partition(":")[0].partition(".")[0]
        if name.startswith("_") and name != "_id":
            continue
        for one in value.split(","):
            one = one.strip()
            match = _PATIENT_REF.search(one)
            if match:
                found.add(match.group(1))
            elif one and ((name == "patient" and key == name)
                          or (name == "_id" and resource_type == "Patient")):
                if re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", one):
                    found.add(one)
    return found


async def returned_patients(conn: AsyncConnection, rids: Iterable[int]) -> set[str]:
    """The patients whose records these resource rows belong to (a Patient row: itself)."""
    wanted = sorted(set(rids))
    found: set[str] = set()
    for start in range(0, len(wanted), 1000):
        rows = await conn.execute(
            sa.select(resource.c.type, resource.c.id, resource.c.patient_id)
            .where(resource.c.rid.in_(wanted[start:start + 1000])))
        for type_, id_, patient_id in rows:
            if patient_id:
                found.add(patient_id)
            elif type_ == "Patient":
                found.add(id_)
    return found


async def patients_of(conn: AsyncConnection, refs: Iterable[tuple[str, str]]) -> set[str]:
    """The patients whose records these (type, id) resources belong to (a Patient: itself),
    e.g. the versions a history returns."""
    wanted = sorted(set(refs))
    found = {id_ for type_, id_ in wanted if type_ == "Patient"}
    others = [(t, i) for t, i in wanted if t != "Patient"]
    for start in range(0, len(others), 500):
        chunk = others[start:start + 500]
        rows = await conn.execute(
            sa.select(resource.c.patient_id)
            .where(sa.tuple_(resource.c.type, resource.c.id).in_(chunk),
                   resource.c.patient_id.is_not(None)).distinct())
        found |= {row[0] for row in rows}
    return found


# ---- what a patient may search their log by -------------------------------------------------
# Who, when, how, with what outcome; never by the entries it names (`entity`...), whose
# matching would tell which exist.
LOG_PARAMS = frozenset({"patient", "date", "agent", "agent-role", "action", "subtype", "type",
                        "outcome", "_id", "_lastUpdated"})
_RESULT_PARAMS = frozenset({"_count", "_sort", "_total", "_summary", "_elements", "_format",
                            "_pretty", "_cursor", "_include", "_revinclude"})


def check_log_search(resource_type: str, params: Iterable[tuple[str, str]]) -> None:
    """400 unless a patient's or carer's search of `resource_type` keeps to what they may
    search their access log by: only LOG_PARAMS on AuditEvent, and no `_has:AuditEvent` on
    anything."""
    for key, value in params:
        name = key.partition(":")[0].partition(".")[0]
        sorts = {v.strip().lstrip("-") for v in value.split(",")} if name == "_sort" else set()
        if key.startswith("_has:AuditEvent:") or (resource_type == "AuditEvent" and (
                name not in LOG_PARAMS | _RESULT_PARAMS or not sorts <= LOG_PARAMS)):
            raise BadRequest(f"Your access log is searched by {', '.join(sorted(LOG_PARAMS))} "
                             f"(not '{key}').")


def named_in_entries(bundle: Any) -> list[set[str]]:
    """For each entry of a batch or transaction Bundle, the patients its search names
    (`Patient/[id]/...` or a search's parameters; nothing for other entries), so each entry's
    audit reaches their access logs."""
    out: list[set[str]] = []
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        found: set[str] = set()
        out.append(found)
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or request.get("method") not in ("GET", "HEAD"):
            continue
        url = request.get("url")
        if not isinstance(url, str):
            continue
        path, _, query = url.partition("?")
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "Patient":  # Patient/[id]/[type] or /$everything
            found.add(parts[1])
        if query:
            found |= named_patients(parts[-1] if len(parts) != 2 else parts[0],
                                    parse_qsl(query, keep_blank_values=True))
    return out
