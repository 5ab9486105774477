"""The audit: AuditEvents in the IHE BALP shape, one per patient, stored in the caller's
transaction or through the buffered `AuditLog`, found by the patient's own search
(`AuditEvent?patient=...` under their access filter), and the break-glass alert. Storage
tests run on SQLite and PostgreSQL (the `app` fixture's database)."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consent import audit
from consent.audit import AuditLog, AuditRecord, AuditUnavailable
from consent.policy import search_filter
from consent.principals import AccessContext, BreakGlass, Kind, Principal, Role
from fhir import guard as fhir_guard
from fhir import interactions, pending, search, store
from fhir.schema import resource
from fhir.validation import check_resource

REASON = "Unconscious in A&E, no GP record"


def gp(break_glass_for: str | None = None) -> Principal:
    bg = BreakGlass.start(break_glass_for, REASON, time.time() - 5) if break_glass_for else None
    return Principal(Kind.STAFF, "Practitioner/gp-1", ("Organization/prac-a",), Role.GP,
                     ("PractitionerRole/gp-1",), client_id="ehr-a", break_glass=bg)


def patient(id_: str) -> Principal:
    return Principal(Kind.PATIENT, f"Patient/{id_}", client_id="portal")


def entity(body: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [e for e in body.get("entity", ()) if e["role"]["code"] == role]


# ---- the event, without a database -------------------------------------------------------

@pytest.mark.parametrize("record", [
    AuditRecord(gp(), "read", "Observation", "o1", patient_ids=("p1",), source_ip="10.1.2.3"),
    AuditRecord(gp(), "vread", "Observation", "o1", version_id="2", patient_ids=("p1",)),
    AuditRecord(gp(), "search", "Observation", query="subject=Patient/p1&code=\x00<script>",
                patient_ids=("p1", "p2")),
    AuditRecord(None, "read", "Patient", "p9", status=401, message="No token\x07"),
    AuditRecord(gp(), "create", "Condition", "c1", patient_ids=("p1",), status=201),
    AuditRecord(gp(), "transaction", status=500, message="database unavailable"),
    AuditRecord(gp("p1"), "read", "Condition", "c1", patient_ids=("p1",), purpose="ETREAT",
                reason=REASON),
    AuditRecord(patient("p1"), "history", "Patient", "p1", query="_count=5",
                patient_ids=("p1",)),
    AuditRecord(Principal(Kind.SYSTEM, "Device/risk-job", client_id="risk-job"), "operation",
                "Patient", query="$everything", patient_ids=("p3",)),
], ids=lambda r: f"{r.interaction}-{r.status}")
def test_every_event_is_valid_fhir(record: AuditRecord) -> None:
    for body in audit.events(record):
        body["id"] = "x"
        check_resource(body)
        assert body["type"]["code"] == "rest"
        assert body["subtype"][0] == {"system": audit.INTERACTION, "code": record.interaction,
                                      "display": record.interaction}
        assert body["action"] == audit.ACTIONS[record.interaction]


def test_a_successful_read_names_user_role_organisation_client_patient_and_data() -> None:
    body = audit.event(AuditRecord(gp(), "read", "Observation", "o1", patient_ids=("p1",),
                                   source_ip="10.1.2.3"), "p1")
    user, org, client, server = body["agent"]
    assert user["who"] == {"reference": "Practitioner/gp-1"} and user["requestor"] is True
    assert user["role"][0]["coding"][0] == {"system": audit.ACCESS_ROLE, "code": "gp"}
    assert {c["code"] for c in user["type"]["coding"]} == {"UserOauthAgent", "IRCP"}
    assert org["who"] == {"reference": "Organization/prac-a"}
    assert client["who"]["identifier"]["value"] == "ehr-a"
    assert client["network"] == {"address": "10.1.2.3", "type": "2"}
    assert server["type"]["coding"][0]["code"] == "110152"
    assert body["outcome"] == "0" and "outcomeDesc" not in body
    assert body["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    assert entity(body, "1")[0]["what"] == {"reference": "Patient/p1"}
    assert entity(body, "4")[0]["what"] == {"reference": "Observation/o1"}


def test_a_failure_carries_its_status_and_message_and_an_unknown_caller() -> None:
    body = audit.event(AuditRecord(None, "search", "Observation", query="a=b\x00", status=403,
                                   message="another patient's record"))
    assert body["outcome"] == "4"
    assert body["outcomeDesc"] == "403 another patient's record"
    assert [a["type"]["coding"][0]["code"] for a in body["agent"]] == ["110153", "110152"]
    query = entity(body, "24")[0]
    assert base64.b64decode(query["query"]) == b"a=b\x00"  # the raw request, exactly
    assert "\x00" not in query["description"]
    assert audit.event(AuditRecord(None, "read", status=503)).get("outcome") == "8"


def test_one_event_per_patient_touched_and_one_for_none() -> None:
    bodies = audit.events(AuditRecord(gp(), "search", "Condition", query="",
                                      patient_ids=("p1", "p2", "p1")))
    assert [entity(b, "1")[0]["what"]["reference"] for b in bodies] == [
        "Patient/p1", "Patient/p2"]
    [lone] = audit.events(AuditRecord(gp(), "search", "Practitioner", query="name=x"))
    assert entity(lone, "1") == []


def test_break_glass_needs_its_reason_and_is_etreat() -> None:
    with pytest.raises(ValueError):
        AuditRecord(gp("p1"), "read", "Patient", "p1", purpose="ETREAT")
    with pytest.raises(ValueError):
        AuditRecord(gp(), "look")
    body = audit.event(AuditRecord(gp("p1"), "read", "Patient", "p1", patient_ids=("p1",),
                                   purpose="ETREAT", reason=REASON), "p1")
    purpose = body["purposeOfEvent"][0]
    assert purpose["coding"][0] == {"system": audit.ACT_REASON, "code": "ETREAT",
                                    "display": "Emergency Treatment"}
    assert purpose["text"] == REASON
    assert body["agent"][0]["purposeOfUse"] == [purpose]


def test_submit_refuses_rather_than_grow_without_bound() -> None:
    log = AuditLog(None, max_pending=2)  # type: ignore[arg-type]
    log.submit([AuditRecord(None, "read")] * 2)
    with pytest.raises(AuditUnavailable):
        log.submit([AuditRecord(None, "read")])
    assert log.pending == 2



def _varied_records() -> list[AuditRecord]:
    """Records of every interaction and outcome, by every kind of caller, with odd values
    where the request supplies them (long ids, absolute and odd references, control
    characters, non-ASCII addresses)."""
    long_id = "x" * 80
    callers: list[Principal | None] = [
        None, gp(), gp("p1"), patient("p1"), patient("p2"),
        Principal(Kind.CARER, "RelatedPerson/rp1", identities=("RelatedPerson/rp2",),
                  client_id="portal"),
        Principal(Kind.SYSTEM, "Device/risk-job", client_id="risk-job"),
        Principal(Kind.PRIVACY_OFFICER, "Practitioner/po", ("Organization/net",
                                                              "Organization/net")),
        Principal(Kind.STAFF, "Practitioner/" + long_id, ("https://other.example/fhir/"
                                                          "Organization/o9",), Role.ADMIN,
                  ("PractitionerRole/" + "r" * 300,), client_id="c" * 300),
        Principal(Kind.PATIENT, "https://other.example/fhir/Patient/p3"),
        Principal(Kind.SYSTEM, "Patient/", client_id=""),
    ]
    targets = [(None, None, None), ("Observation", "o1", None), ("Patient", "p1", "3"),
               ("Condition", long_id, None), ("Patient", "p2", None)]
    patient_sets = [(), ("p1",), ("p1", "p2", "p1"), ("p3", long_id)]
    out: list[AuditRecord] = []
    for i, interaction in enumerate(audit.ACTIONS):
        for j, who in enumerate(callers):
            type_, id_, version = targets[(i + j) % len(targets)]
            status = (200, 201, 401, 403, 404, 500)[(i * 3 + j) % 6]
            etreat = who is not None and who.break_glass is not None and status < 400
            out.append(AuditRecord(
                who, interaction, type_, id_, version_id=version,
                patient_ids=patient_sets[(i + 2 * j) % len(patient_sets)], status=status,
                message=("refused \x07 here" if status >= 400 and j % 2 else None),
                purpose="ETREAT" if etreat else ("TREAT", "HOPERAT", "PATRQT")[j % 3],
                reason=REASON if etreat else None,
                query=(None, "", "subject=Patient/p1&code=\x00<b>", "name=Müller\udcff")[j % 4],
                client_id=(None, "ehr-b")[i % 2],
                source_ip=(None, "10.0.0.1", "FE80::1", "Ä\x01" + "9" * 300)[(i + j) % 4],
                request_id=(None, "req-1", "r" * 200)[(i + j) % 3]))
    return out


def test_audit_index_rows_are_the_rows_the_generic_extraction_finds() -> None:
    """consent.audit.index_rows reads an AuditEvent's shape by hand; the registry's FHIRPath
    extraction is the oracle that keeps it in step."""
    from fhir.store import _index_rows

    records = _varied_records()
    assert len(records) > 100
    compared = 0
    for record in records:
        for body in audit.events(record):
            body["id"] = "x"
            fast_rows, fast_patient = audit.index_rows(body)
            rows, patient_id = _index_rows(body)
            assert fast_patient == patient_id, body
            assert fast_rows.keys() == rows.keys()
            for table, found in rows.items():
                assert sorted(map(repr, fast_rows[table])) == sorted(map(repr, found)), (
                    table, body)
                assert len(set(fast_rows[table])) == len(fast_rows[table])
            compared += 1
    assert compared > len(records)  # records of several patients gave several events

# ---- storage, on both backends -----------------------------------------------------------

def ids(tag: str, *names: str) -> list[str]:
    return [f"{n}-{tag}" for n in names]


async def stored(app: Any, type_: str, patient_id: str) -> list[dict[str, Any]]:
    """The current resources of `type_` filed under `patient_id` (any reader)."""
    async with app.state.db.read() as conn:
        rows = (await conn.execute(sa.select(resource.c.content).where(
            resource.c.type == type_, resource.c.patient_id == patient_id))).scalars()
        return [orjson.loads(r) if isinstance(r, str) else r for r in rows]


async def patient_search(conn: AsyncConnection, who: Principal, params: list[tuple[str, str]]
                         ) -> list[dict[str, Any]]:
    """`AuditEvent?params` as `who` runs it: through the access filter of consent/policy.py."""
    ctx = AccessContext(who, time.time())
    query = search.parse("AuditEvent", [*params, ("_count", "200")])
    page = await search.run(conn, query, [search_filter(ctx, resource, "AuditEvent")])
    return [orjson.loads(row[3]) for row in page.matches]


async def test_a_patient_finds_exactly_the_events_of_their_record(app: Any, tag: str) -> None:
    p1, p2 = ids(tag, "p1", "p2")
    records = [
        AuditRecord(gp(), "read", "Patient", p1, patient_ids=(p1,)),
        AuditRecord(gp(), "search", "Observation", query=f"subject={p1}",
                    patient_ids=(p1, p2)),
        AuditRecord(gp(), "read", "Condition", "c9", patient_ids=(p2,)),
        AuditRecord(gp(p1), "read", "Condition", "c1", patient_ids=(p1,), purpose="ETREAT",
                    reason=REASON),
        AuditRecord(patient(p1), "read", "Patient", p1, patient_ids=(p1,)),
        AuditRecord(patient(p2), "read", "Patient", p1, patient_ids=(p1,), status=403,
                    message="another patient's record"),
        AuditRecord(gp(), "search", "Practitioner", query="name=smith"),
    ]
    async with app.state.db.write() as conn:
        written = await audit.write(conn, records)
    assert len(written) == 8  # the search of two patients is two events
    async with app.state.db.read() as conn:
        mine = await patient_search(conn, patient(p1), [("patient", f"Patient/{p1}")])
        everything_i_may = await patient_search(conn, patient(p1), [("date", "gt2000")])
        theirs = await patient_search(conn, patient(p1), [("patient", f"Patient/{p2}")])
    assert {e["id"] for e in mine} == {written[i] for i in (0, 1, 4, 5)}
    # Another patient's refused attempt is filed under the patient who made it (its agent).
    async with app.state.db.read() as conn:
        theirs_all = await patient_search(conn, patient(p2), [("date", "gt2000")])
    assert {e["id"] for e in theirs_all} == {written[i] for i in (2, 3, 6)}
    [attempt] = [e for e in theirs_all if e["outcome"] != "0"]
    assert {e["id"] for e in everything_i_may} >= {e["id"] for e in mine}
    assert {e["id"] for e in everything_i_may}.isdisjoint({written[2], written[3], written[7]})
    assert theirs == []  # p2's event of the shared search is filed under p2
    [emergency] = [e for e in mine if e["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"]
    assert emergency["purposeOfEvent"][0]["text"] == REASON
    assert emergency["agent"][0]["who"] == {"reference": "Practitioner/gp-1"}
    assert attempt["outcomeDesc"] == "403 another patient's record"
    for body in mine:
        check_resource(body)
    # A privacy officer (network-wide) finds p2's events with the same search.
    officer = Principal(Kind.PRIVACY_OFFICER, "Practitioner/po", ("Organization/net",))
    async with app.state.db.read() as conn:
        found = await patient_search(conn, officer, [("patient", f"Patient/{p2}")])
    assert {e["id"] for e in found} == {written[i] for i in (2, 3, 6)}


async def test_a_write_and_its_audit_commit_or_fail_together(app: Any, tag: str) -> None:
    p, q = ids(tag, "p", "q")

    async def create_and_audit(conn: AsyncConnection, patient_id: str) -> None:
        body = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                "subject": {"reference": f"Patient/{patient_id}"}}
        async with pending.batched(conn):  # as a transaction Bundle's writes are
            made = await interactions.create(conn, "Observation", body)
            assert made.stored is not None
            await audit.write(conn, [AuditRecord(gp(), "create", "Observation", made.stored.id,
                                                 patient_ids=(patient_id,), status=201)])

    with pytest.raises(RuntimeError):
        async with app.state.db.write() as conn:
            await create_and_audit(conn, p)
            raise RuntimeError("the request failed after both were written")
    assert await stored(app, "AuditEvent", p) == [] and await stored(app, "Observation", p) == []
    async with app.state.db.write() as conn:
        await create_and_audit(conn, q)
    [observation] = await stored(app, "Observation", q)
    [event] = await stored(app, "AuditEvent", q)
    assert entity(event, "4")[0]["what"] == {"reference": f"Observation/{observation['id']}"}
    assert event["action"] == "C" and event["agent"][0]["type"]["coding"][1]["code"] == "AGNT"



async def test_events_are_stored_in_bulk_as_version_1_with_their_history(app: Any,
                                                                          tag: str) -> None:
    p, q = ids(tag, "p", "q")
    async with app.state.db.write() as conn:
        one = await audit.write(conn, [AuditRecord(gp(), "read", "Patient", p,
                                                   patient_ids=(p,))])  # alone: one statement
        many = await audit.write(conn, [AuditRecord(gp(), "search", "Observation", query="",
                                                    patient_ids=(p, q))] * 3)
    assert len(one) == 1 and len(many) == 6 and len(set(one + many)) == 7
    async with app.state.db.read() as conn:
        for id_ in one + many:
            current = await store.read_current(conn, "AuditEvent", id_)
            first = await store.read_version(conn, "AuditEvent", id_, 1)
            assert current is not None and first is not None and current.version == 1
            assert current.content == first.content
            body = orjson.loads(current.content)
            assert body["meta"] == {"versionId": "1", "lastUpdated": current.instant}
    assert len(await stored(app, "AuditEvent", q)) == 3
    with fhir_guard.guarding(object()), pytest.raises(RuntimeError):  # type: ignore[arg-type]
        async with app.state.db.write() as conn:
            await store.insert_many(conn, [])

async def test_break_glass_raises_one_flag_per_session(app: Any, tag: str) -> None:
    [p] = ids(tag, "p")
    who = gp(break_glass_for=p)
    first = AuditRecord(who, "read", "Patient", p, patient_ids=(p,), purpose="ETREAT",
                        reason=REASON)
    later = AuditRecord(who, "search", "Observation", query=f"subject=Patient/{p}",
                        patient_ids=(p,), purpose="ETREAT", reason=REASON)
    async with app.state.db.write() as conn:
        [audit_id] = await audit.write(conn, [first])
    async with app.state.db.write() as conn:
        await audit.write(conn, [later])
    [flag] = await stored(app, "Flag", p)
    check_resource(flag)
    assert flag["subject"] == {"reference": f"Patient/{p}"}
    assert flag["author"] == {"reference": "Practitioner/gp-1"}
    assert flag["status"] == "active" and flag["period"]["start"]
    assert flag["code"]["text"] == "Emergency access to record"
    assert flag["category"][0]["coding"][0]["code"] == "admin"
    extensions = {x["url"]: x for x in flag["extension"]}
    assert extensions[audit.FLAG_DETAIL]["valueReference"] == {
        "reference": f"AuditEvent/{audit_id}"}
    assert extensions[audit.REASON_EXTENSION]["valueString"] == REASON
    # A new session (a new BreakGlass) is a new alert; a refused access raises none.
    again = AuditRecord(gp(break_glass_for=p), "read", "Patient", p, patient_ids=(p,),
                        purpose="ETREAT", reason="second emergency", time=time.time() + 1)
    refused = AuditRecord(who, "read", "Patient", p, patient_ids=(p,), purpose="ETREAT",
                          reason=REASON, status=403, time=time.time() + 2)
    async with app.state.db.write() as conn:
        await audit.write(conn, [again, refused])
    assert len(await stored(app, "Flag", p)) == 2


async def test_the_buffered_log_loses_nothing_under_racing_submits(app: Any, tag: str) -> None:
    [p] = ids(tag, "p")
    log = AuditLog(app.state.db)
    await log.start()

    async def submitter(n: int) -> None:
        for i in range(50):
            log.submit([AuditRecord(gp(), "read", "Observation", f"o{n}-{i}", patient_ids=(p,))])
            if i % 7 == 0:
                await asyncio.sleep(0)

    try:
        await asyncio.gather(*(submitter(n) for n in range(20)))
        await log.flush()
        assert log.pending == 0
    finally:
        await log.stop()
    bodies = await stored(app, "AuditEvent", p)
    data = [entity(b, "4")[0]["what"]["reference"] for b in bodies]
    assert len(data) == 1000
    assert set(data) == {f"Observation/o{n}-{i}" for n in range(20) for i in range(50)}


class Flaky:
    """A database whose first `failures` write transactions fail."""

    def __init__(self, db: Any, failures: int) -> None:
        self.db, self.failures = db, failures

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self.db.write() as conn:
            if self.failures:
                self.failures -= 1
                raise sa.exc.OperationalError("INSERT", {}, Exception("connection lost"))
            yield conn


async def test_a_failed_flush_is_logged_and_retried(app: Any, tag: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    [p] = ids(tag, "p")
    log = AuditLog(Flaky(app.state.db, failures=2), interval=0.01)  # type: ignore[arg-type]
    await log.start()
    try:
        log.submit([AuditRecord(gp(), "read", "Patient", p, patient_ids=(p,))] * 3)
        with caplog.at_level(logging.ERROR, logger="carenet.audit"):
            await asyncio.wait_for(log.flush(), 10)
    finally:
        await log.stop()
    assert len(await stored(app, "AuditEvent", p)) == 3
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


async def test_flush_without_a_running_task_writes_inline(app: Any, tag: str) -> None:
    [p] = ids(tag, "p")
    log = AuditLog(app.state.db)
    log.submit([AuditRecord(gp(), "read", "Patient", p, patient_ids=(p,), time=t)
                for t in (1.0, 2.0)])
    await log.flush()
    assert sorted(b["recorded"] for b in await stored(app, "AuditEvent", p)) == [
        "1970-01-01T00:00:01.000Z", "1970-01-01T00:00:02.000Z"]
    await log.stop()  # never started: nothing to do



async def test_the_log_gives_sqlite_planner_statistics_as_it_grows(app: Any, tag: str) -> None:
    """Without them SQLite walked a patient's whole log for every event it tested (a minute
    at 20,000 events, issue 16); the audit log refreshes them once ANALYZE_FROM records are
    stored, then at each doubling."""
    if not app.state.db.is_sqlite:
        pytest.skip("PostgreSQL gathers its own statistics")
    [p] = ids(tag, "p")
    async with app.state.db.write() as conn:
        await conn.exec_driver_sql("DROP TABLE IF EXISTS sqlite_stat1")
    log = AuditLog(app.state.db)
    log.submit([AuditRecord(gp(), "read", "Patient", p, patient_ids=(p,))] * audit.ANALYZE_FROM)
    await log.flush()
    async with app.state.db.read() as conn:
        found = (await conn.exec_driver_sql(
            "SELECT idx FROM sqlite_stat1 WHERE tbl = 'sp_reference'")).scalars().all()
    assert "ix_sp_reference_rid" in found
