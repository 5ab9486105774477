"""Audit: every interaction, success or failure, as an AuditEvent in the shape of IHE Basic
Audit Log Patterns (https://profiles.ihe.net/ITI/BALP/), stored as an ordinary resource.

- `AuditRecord`: what happened, as the request coordinator knows it (who, what, outcome, why).
- `events(record)`: its AuditEvents (https://hl7.org/fhir/R4/auditevent.html). ONE EVENT PER
  PATIENT touched (none: one event with no patient), as BALP PatientQuery asks ("one AuditEvent
  is created for every Patient identified in the resulting search set"). It is also what makes
  "who looked at my record" work: the store files an AuditEvent under one patient
  (`resource.patient_id`, its Patient compartment through the `patient` parameter), and a
  patient reads only AuditEvents filed under their own id (consent/policy.py). The `patient`
  parameter takes agent.who before entity.what, so an event whose user is a patient is filed
  under that patient: a patient's refused attempt at another record is in their own log (and
  the privacy officer's), not in the other patient's.
- `write(conn, records)`: stores them inside the caller's transaction: a write and its audit
  commit together, and a failed audit write fails the write. In bulk (`store.insert_many`),
  with index rows read off the event's known shape (`index_rows`), not through FHIRPath:
  every request is audited, so this is on the path of every read.
- `AuditLog`: reads audit through a buffer, written by a background task in batches, retried
  until stored, never dropped silently.
- Break-glass: an ETREAT record also raises a privacy-officer alert, a `Flag`, once per
  emergency-access session (`break_glass_alert`), in the same transaction as its AuditEvent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from consent.principals import Kind, Principal
from fhir import interactions, store
from fhir.db import Database
from fhir.errors import FhirError
from fhir.fhirpath import _reference_type
from fhir.index import (
    Row,
    _cut,
    _dates,
    _identifier_tokens,
    _references,
    compartment_patient,
    normalise,
)
from fhir.registry import index_key, registry
from fhir.store import Rows, Stored, iso_instant

log = logging.getLogger("carenet.audit")

# https://hl7.org/fhir/R4/codesystem-audit-event-type.html, restful-interaction, v3-ActReason
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
# https://profiles.ihe.net/ITI/BALP/CodeSystem-UserAgentTypes.html
BALP_ENTITY = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
BALP_USER = "https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes"
# Local systems: carenet's access roles (consent/data/role-access.csv columns), OAuth client
# ids, break-glass sessions and alerts.
ACCESS_ROLE = "https://carenet.invalid/fhir/CodeSystem/access-role"
CLIENT_ID = "https://carenet.invalid/fhir/Id/oauth-client"
ALERT_SYSTEM = "https://carenet.invalid/fhir/CodeSystem/privacy-alert"
BREAK_GLASS_ID = "https://carenet.invalid/fhir/Id/break-glass-session"
REASON_EXTENSION = "https://carenet.invalid/fhir/StructureDefinition/access-reason"
# https://hl7.org/fhir/R4/extension-flag-detail.html: the record that explains a Flag.
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
SERVER = "carenet"
_KEY = index_key("AuditEvent", "")  # the prefix of the AuditEvent's index keys

# https://hl7.org/fhir/R4/valueset-audit-event-action.html; BALP: queries are E(xecute).
ACTIONS = {"create": "C", "read": "R", "vread": "R", "update": "U", "patch": "U",
           "delete": "D", "search": "E", "history": "E", "transaction": "E", "batch": "E",
           "operation": "E"}
WRITES = frozenset({"create", "update", "patch", "delete", "transaction", "batch"})
PURPOSES = {"TREAT": "treatment", "ETREAT": "Emergency Treatment",
            "HOPERAT": "healthcare operations", "PATRQT": "patient requested"}
_SESSION_NS = uuid.UUID("5b0c7c62-6a43-4d6e-9d0e-2b1f3c0a9e11")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class AuditUnavailable(FhirError):
    """The audit cannot keep up or reach the database: the request is refused (503)."""

    status, code = 503, "transient"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One interaction as the coordinator saw it.

    `patient_ids`: the patients whose record it touched; for a search, the patients of the
    rows returned (or the one it was restricted to). `status`/`message`: the HTTP status
    and, for a failure, what the client was told. `purpose`: a v3-ActReason code, ETREAT with
    `reason` on break-glass. `query`: the raw query string of a search, history or operation.
    """

    principal: Principal | None
    interaction: str
    resource_type: str | None = None
    resource_id: str | None = None
    patient_ids: tuple[str, ...] = ()
    status: int = 200
    message: str | None = None
    purpose: str = "TREAT"
    reason: str | None = None
    query: str | None = None
    client_id: str | None = None
    source_ip: str | None = None
    version_id: str | None = None
    request_id: str | None = None  # the HTTP X-Request-Id
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.interaction not in ACTIONS:
            raise ValueError(f"'{self.interaction}' is not an interaction to audit")
        if self.purpose == "ETREAT" and not (self.reason or "").strip():
            raise ValueError("Emergency access (ETREAT) is audited with its reason.")

    @property
    def outcome(self) -> str:
        """https://hl7.org/fhir/R4/valueset-audit-event-outcome.html: 0 success, 4 minor
        failure (the client's: 4xx), 8 serious failure (the server's: 5xx)."""
        return "0" if self.status < 400 else "4" if self.status < 500 else "8"


def _text(value: str, limit: int = 1024) -> str:
    """A string the store and FHIR accept: no control characters, no lone surrogates."""
    clean = value.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub(" ", clean)[:limit]


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _purpose(record: AuditRecord) -> list[dict[str, Any]]:
    concept: dict[str, Any] = {"coding": [_coding(ACT_REASON, record.purpose,
                                                  PURPOSES.get(record.purpose))]}
    if record.reason:
        concept["text"] = _text(record.reason)
    return [concept]


def principal_agents(principal: Principal, interaction: str) -> list[dict[str, Any]]:
    """The user agent (BALP agent[user]: who, role, requestor) and, for staff, their
    organisation (agent[userorg], v3-RoleClass PROV) of an authenticated principal.

    Principal keeps the carenet role its SDS job role maps to (consent/data/sds-job-roles.csv),
    not the SDS code itself, so the role coding is the access role (`ACCESS_ROLE`)."""
    if principal.kind is Kind.PATIENT:
        kind = _coding(ROLE_CLASS, "PAT", "patient")
    elif interaction in WRITES:
        kind = _coding(ROLE_CLASS, "AGNT", "agent")
    else:
        kind = _coding(PARTICIPATION, "IRCP", "information recipient")
    user: dict[str, Any] = {
        "type": {"coding": [_coding(BALP_USER, "UserOauthAgent", "User OAuth Agent participant"),
                            kind]},
        "who": {"reference": principal.user},
        "requestor": True,
    }
    if principal.access_role:
        user["role"] = [{"coding": [_coding(ACCESS_ROLE, principal.access_role)]}]
    if principal.identities:
        user["altId"] = principal.identities[0]  # the PractitionerRole they act in
    agents = [user]
    for org in principal.organizations:
        agents.append({"type": {"coding": [_coding(ROLE_CLASS, "PROV", "healthcare provider")]},
                       "who": {"reference": org}, "requestor": False})
    return agents


def _client_agent(client_id: str | None, source_ip: str | None) -> dict[str, Any]:
    """BALP: the client is the Source Role ID (DICOM 110153), with its network address."""
    agent: dict[str, Any] = {
        "type": {"coding": [_coding(DICOM, "110153", "Source Role ID")]},
        "who": ({"identifier": {"system": CLIENT_ID, "value": _text(client_id, 255)}}
                if client_id else {"display": "unidentified client"}),
        "requestor": False,
    }
    if source_ip:
        agent["network"] = {"address": _text(source_ip, 255), "type": "2"}  # 2: IP address
    return agent


def _server_agent() -> dict[str, Any]:
    """BALP: the server is the Destination Role ID (DICOM 110152)."""
    return {"type": {"coding": [_coding(DICOM, "110152", "Destination Role ID")]},
            "who": {"display": SERVER}, "requestor": False}


def _source() -> dict[str, Any]:
    return {"site": SERVER, "observer": {"display": SERVER},
            "type": [_coding(SOURCE_TYPE, "4", "Application Server")]}


def _query_bytes(query: str) -> bytes:
    try:
        return query.encode("utf-8", "surrogateescape")  # the request's bytes, as they came
    except UnicodeEncodeError:
        return query.encode("utf-8", "replace")


def _entities(record: AuditRecord, patient_id: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if patient_id is not None:  # BALP entity[patient]
        out.append({"what": {"reference": f"Patient/{patient_id}"},
                    "type": _coding(ENTITY_TYPE, "1", "Person"),
                    "role": _coding(OBJECT_ROLE, "1", "Patient")})
    if record.resource_type and record.resource_id:  # BALP entity[data]
        ref = f"{record.resource_type}/{record.resource_id}"
        if record.version_id:
            ref += f"/_history/{record.version_id}"
        out.append({"what": {"reference": _text(ref, 255)},
                    "type": _coding(ENTITY_TYPE, "2", "System Object"),
                    "role": _coding(OBJECT_ROLE, "4", "Domain Resource")})
    if record.query is not None:  # BALP entity[query]: the raw request, base64
        out.append({"type": _coding(ENTITY_TYPE, "2", "System Object"),
                    "role": _coding(OBJECT_ROLE, "24", "Query"),
                    "description": _text(f"{record.resource_type or ''}?{record.query}"),
                    "query": base64.b64encode(_query_bytes(record.query)).decode("ascii")})
    if record.request_id:  # BALP entity[transaction]: the X-Request-Id
        # https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType
        out.append({"what": {"identifier": {"value": _text(record.request_id, 200)}},
                    "type": _coding(BALP_ENTITY, "XrequestId",
                                    "transport specific unique identifier")})
    return out


def event(record: AuditRecord, patient_id: str | None = None) -> dict[str, Any]:
    """The AuditEvent (no id yet) of `record` for one patient it touched (or for none)."""
    agents = principal_agents(record.principal, record.interaction) if record.principal else []
    client = record.client_id or (record.principal.client_id if record.principal else None)
    agents += [_client_agent(client, record.source_ip), _server_agent()]
    body: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _coding(EVENT_TYPE, "rest", "Restful Operation"),
        "subtype": [_coding(INTERACTION, record.interaction, record.interaction)],
        "action": ACTIONS[record.interaction],
        "recorded": iso_instant(record.time),
        "outcome": record.outcome,
        "purposeOfEvent": _purpose(record),
        "agent": agents,
        "source": _source(),
        "entity": _entities(record, patient_id),
    }
    if record.principal is not None:
        agents[0]["purposeOfUse"] = _purpose(record)
    if record.status >= 400:
        body["outcomeDesc"] = _text(f"{record.status} {record.message or ''}".strip())
    if not body["entity"]:
        del body["entity"]
    return body


def events(record: AuditRecord) -> list[dict[str, Any]]:
    """One AuditEvent per patient `record` touched, or one for no patient."""
    return [event(record, patient_id) for patient_id in _patients(record)]


def _patients(record: AuditRecord) -> list[str | None]:
    return list(dict.fromkeys(record.patient_ids)) or [None]


# ---- index rows ---------------------------------------------------------------------------
# What `fhir.index.extract` finds in an AuditEvent that `event` made, read straight off its
# known shape instead of through FHIRPath (https://hl7.org/fhir/R4/auditevent.html#search:
# action, address, agent, agent-role, altid, date, entity, entity-role, entity-type, outcome,
# patient, site, subtype, type; the others find nothing in it). Values taken from the
# request go through the same extractors as there. tests/consent/test_audit.py compares the
# two over varied events: a change to `event` or to the registry shows there.


def _coding_row(code: str, coding: dict[str, Any]) -> tuple[Any, ...]:
    return code, coding["system"], coding["code"], coding.get("display")  # cut when stored


def _reference(code: str, value: dict[str, Any], refs: list[Row], tokens: list[Row]) -> None:
    """The rows of agent.who or entity.what: a reference (under `patient` too when it is a
    Patient's) or an identifier. A plain Type/id is read here, anything else by fhir.index."""
    ref = value.get("reference")
    if isinstance(ref, str) and ref.count("/") == 1 and "type" not in value:
        type_, _, id_ = ref.partition("/")
        if type_.isalpha() and id_:
            refs.append((code, type_[:64], id_[:64], None))
            if type_ == "Patient":
                refs.append(("patient", type_, id_[:64], None))
            return
    found = [(code, _cut(t, 64), _cut(i, 64), _cut(u, 1024)) for t, i, u in _references(value)]
    refs += found
    if found and _reference_type(value) == "Patient":
        refs += [("patient", *r[1:]) for r in found]
    tokens += [(f"{code}:identifier", s, v, None)
               for s, v in _identifier_tokens(value)]


def index_rows(body: dict[str, Any]) -> tuple[Rows, str | None]:
    """The index rows and compartment patient of an AuditEvent that `event` made, as
    `fhir.store._index_rows` finds them (the same rows), at a fraction of the cost."""
    tokens = [_coding_row("type", body["type"]), _coding_row("subtype", body["subtype"][0]),
              ("action", None, body["action"], None), ("outcome", None, body["outcome"], None),
              ("site", None, body["source"]["site"], None)]
    refs: list[Row] = []
    strings: list[Row] = []
    for agent in body["agent"]:
        _reference("agent", agent["who"], refs, tokens)
        for role in agent.get("role", ()):
            tokens += [_coding_row("agent-role", c) for c in role["coding"]]
        if "altId" in agent:
            tokens.append(("altid", None, agent["altId"], None))
        if "network" in agent:
            address = agent["network"]["address"]
            strings.append(("address", normalise(address), address))  # cut when stored
    for entity in body.get("entity", ()):
        if "what" in entity:
            _reference("entity", entity["what"], refs, tokens)
        if "role" in entity:
            tokens.append(_coding_row("entity-role", entity["role"]))
        tokens.append(_coding_row("entity-type", entity["type"]))
    refs = list(dict.fromkeys(refs))  # each row once, the first (as extract keeps them)
    rows: Rows = {"token": list(dict.fromkeys(tokens)), "string": list(dict.fromkeys(strings)),
                  "date": [("date", *span) for span in _dates(body["recorded"])],
                  "reference": refs, "quantity": [], "uri": [], "number": [], "composite": [],
                  "position": []}
    # Under the AuditEvent's own keys (fhir.registry.index_key, "AuditEvent.patient"), so no
    # search of another type meets the log's rows; a suffix (":identifier") follows the key.
    rows = {kind: [(_KEY + row[0], *row[1:]) for row in found] for kind, found in rows.items()}
    return rows, compartment_patient(body, registry(), rows["reference"])


async def write(conn: AsyncConnection, records: Iterable[AuditRecord]) -> list[str]:
    """Store the AuditEvents of `records` in the caller's transaction; their ids, in order.

    A successful ETREAT record also raises its break-glass alert (`break_glass_alert`), once
    per session.
    """
    planned = [(record, patient_id) for record in records for patient_id in _patients(record)]
    # Made one at a time as the store takes them: an event's body is garbage once stamped,
    # so a batch does not keep hundreds of them alive (and the collector busy).
    stored = await store.insert_many(conn, (_item(r, p) for r, p in planned))
    for (record, patient_id), one in zip(planned, stored, strict=True):
        if record.purpose == "ETREAT" and record.status < 400 and patient_id:
            await break_glass_alert(conn, record, patient_id, audit_id=one.id)
    return [one.id for one in stored]


def _item(record: AuditRecord, patient_id: str | None) -> tuple[dict[str, Any], Rows,
                                                                 str | None]:
    """The AuditEvent of `record` for `patient_id` with its new id, its index rows and its
    patient, as `store.insert_many` takes them."""
    body = event(record, patient_id)
    body["id"] = interactions.new_id()
    return body, *index_rows(body)


def _session_key(record: AuditRecord, patient_id: str) -> str:
    """One break-glass session: the principal's open BreakGlass for the patient, else this
    one access."""
    p = record.principal
    bg = p.break_glass if p is not None else None
    started = bg.started if bg is not None and bg.patient_id == patient_id else record.time
    who = p.user if p is not None else ""
    return str(uuid.uuid5(_SESSION_NS, f"{who}|{patient_id}|{started!r}"))


def alert(record: AuditRecord, patient_id: str, audit_id: str | None = None) -> dict[str, Any]:
    """The privacy-officer alert of emergency access: a `Flag` (https://hl7.org/fhir/R4/flag.html).

    A Flag, not a Communication: it needs no recipient (the network's privacy officers, not
    one of them, work `Flag?code=<ALERT_SYSTEM>|break-glass&status=active`), its status says
    whether it has been reviewed (active until the officer sets it inactive), and it sits in
    the patient's compartment, beside the AuditEvent, without entering their messages.
    """
    body: dict[str, Any] = {
        "resourceType": "Flag",
        "identifier": [{"system": BREAK_GLASS_ID, "value": _session_key(record, patient_id)}],
        "status": "active",
        "category": [{"coding": [_coding("http://terminology.hl7.org/CodeSystem/flag-category",
                                         "admin", "Administrative")]}],
        "code": {"coding": [_coding(ALERT_SYSTEM, "break-glass", "Emergency access to record")],
                 "text": "Emergency access to record"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": iso_instant(record.time)},
        "extension": [{"url": REASON_EXTENSION, "valueString": _text(record.reason or "")}],
    }
    if record.principal is not None:
        body["author"] = {"reference": record.principal.user}
    if audit_id is not None:
        body["extension"].insert(0, {"url": FLAG_DETAIL,
                                     "valueReference": {"reference": f"AuditEvent/{audit_id}"}})
    return body


async def break_glass_alert(conn: AsyncConnection, record: AuditRecord, patient_id: str, *,
                            audit_id: str | None = None) -> Stored:
    """Raise the privacy-officer alert for emergency access to `patient_id`, in the caller's
    transaction; a conditional create on the session identifier, so a session raises one."""
    body = alert(record, patient_id, audit_id)
    key = body["identifier"][0]
    result = await interactions.create(conn, "Flag", body, [
        ("identifier", f"{key['system']}|{key['value']}")])
    assert result.stored is not None
    return result.stored


# A record that fails this many times alone is stored stripped to who, what and when.
POISON_FAILURES = 3
# SQLite: statistics are refreshed once this many records are stored, then each time the
# count has doubled (log2 of the log's growth runs in all), sampling this many rows per index.
ANALYZE_FROM = 1000
ANALYSIS_LIMIT = 400


def _stripped(record: AuditRecord) -> AuditRecord:
    """`record` without the parts a client chose (query, ids, message): what is left is still
    the access (who, which interaction on which type, outcome, time), and storable."""
    stripped = dataclasses.replace(
        record, resource_id=None, query=None, request_id=None, version_id=None,
        message="the full audit record could not be stored", reason=(
            "emergency access (the reason could not be stored)"
            if record.purpose == "ETREAT" else None))
    log.critical("audit: a record was refused by the store; storing it stripped (%s %s)",
                 record.interaction, record.resource_type)
    return stripped


class AuditLog:
    """The audit of reads, written behind the request: `submit` queues, a background task
    stores a batch every `interval` seconds (at once when `batch` wait) in one transaction.

    A failed batch stays at the head of the queue and is retried with backoff, logged at
    ERROR each time; nothing is dropped. Past `max_pending` queued records (the database has
    been away a long while) `submit` refuses with 503 rather than let memory grow unbounded.
    """

    def __init__(self, db: Database, *, interval: float = 0.05, batch: int = 500,
                 max_pending: int = 200_000, max_backoff: float = 5.0) -> None:
        self._db = db
        self._interval = interval
        self._batch = batch
        self._max_pending = max_pending
        self._max_backoff = max_backoff
        self._queue: deque[AuditRecord] = deque()
        self._submitted = 0
        self._stored = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._analyzed_at = 0  # records stored when SQLite's statistics were last refreshed

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, records: Sequence[AuditRecord]) -> None:
        """Queue `records` to be stored soon; never waits."""
        if len(self._queue) + len(records) > self._max_pending:
            log.critical("audit: %d records wait to be stored; refusing more", len(self._queue))
            raise AuditUnavailable("The audit log cannot be written; try again shortly.")
        self._queue.extend(records)
        self._submitted += len(records)
        if len(self._queue) >= self._batch:
            self._urgent.set()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything submitted so far is stored."""
        target = self._submitted
        if self._stored >= target:
            return
        if self._task is None or self._task.done():
            while self._stored < target:  # not started: store here, failures raise
                await self._write_next()
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        self._urgent.set()
        self._wake.set()
        await waiter

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="carenet-audit-log")

    async def stop(self, timeout: float = 10.0) -> None:
        """Store what is queued (for at most `timeout` seconds), then end the task."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            log.critical("audit: shutting down with %d records NOT stored", len(self._queue))
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(AuditUnavailable("The audit log was stopped."))
        self._waiters.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._urgent.is_set():  # gather a batch's worth, or wait `interval`
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), self._interval)
            self._urgent.clear()
            delay, failures = 0.1, 0
            while self._queue:
                try:
                    # After a failure, one record at a time: a record the store refuses
                    # must not hold back the rest behind it.
                    await self._write_next(1 if failures else self._batch)
                    delay, failures = 0.1, 0
                except Exception:  # noqa: BLE001 - any failure: keep the records, retry
                    failures += 1
                    log.exception("audit: storing AuditEvent records failed (%d queued); "
                                  "retrying in %.1f s", len(self._queue), delay)
                    if failures >= POISON_FAILURES:
                        self._queue[0] = _stripped(self._queue[0])
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff)

    async def _analyze(self) -> None:
        """Refresh SQLite's planner statistics (sampled: `analysis_limit`) as the log grows.

        Without them SQLite takes the index matching the most columns for a correlated
        EXISTS: for `AuditEvent?patient=X` the (param, target) lookup, walked in full for
        every candidate event, so a patient's log took a minute at 20,000 events; with them
        it takes the row id index (milliseconds). PostgreSQL gathers its own statistics.
        https://www.sqlite.org/lang_analyze.html#approx"""
        self._analyzed_at = self._stored  # once per doubling, whether or not it works
        try:
            async with self._db.write() as conn:
                await conn.exec_driver_sql(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
                await conn.exec_driver_sql("ANALYZE")
        except Exception:  # noqa: BLE001 - statistics are an optimisation: never fail the log
            log.warning("audit: refreshing SQLite's statistics failed", exc_info=True)

    async def _write_next(self, size: int | None = None) -> None:
        """Store the next batch (of `size`, default the batch size) in one transaction, then
        take it off the queue."""
        async with self._lock:
            batch = list(itertools.islice(self._queue, size or self._batch))
            if not batch:
                return
            async with self._db.write() as conn:
                await write(conn, batch)
            for _ in batch:
                self._queue.popleft()
            self._stored += len(batch)
            if (getattr(self._db, "is_sqlite", False)
                    and self._stored >= max(ANALYZE_FROM, 2 * self._analyzed_at)):
                await self._analyze()
        done = [w for t, w in self._waiters if t <= self._stored]
        self._waiters = [(t, w) for t, w in self._waiters if t > self._stored]
        for waiter in done:
            if not waiter.done():
                waiter.set_result(None)
