"""Search (GET and POST _search) and history at instance, type and system level."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from api import audit as api_audit
from api.access import Access, AccessDep
from api.deps import DbDep, SettingsDep
from api.http import FHIR_JSON, base_url, fhir_response, prefer
from api.routes.record import known_type
from consent import access_log
from fhir import bundles, everything, interactions, search
from fhir.dates import BadDate, date_range
from fhir.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, UnsupportedMediaType
from fhir.search import compartment

router = APIRouter()


async def _search(request: Request, db: DbDep, access: Access, type_: str,
                  params: list[tuple[str, str]]) -> Response:
    lenient = prefer(request, "handling") == "lenient"
    access.scope_context(type_, "search", params)
    access.shows_audit = True  # _audit_patients redacts what a patient finds of it
    _check_log_search(access, type_, params)
    async with db.read() as conn, access.guarding(conn, search=True) as guard:
        query = search.parse(type_, params, lenient=lenient, visible=guard.visible)
        page = await search.run(conn, query)
        await _audit_patients(conn, access, type_, params, page)
    return fhir_response(bundles.searchset(base=base_url(request), page=page, query=query))


# What a patient or carer may search their access log by: who, when, how, with what outcome;
# never by the entries it names (`entity`...), whose matching would tell which exist.
LOG_PARAMS = frozenset({"patient", "date", "agent", "agent-role", "action", "subtype", "type",
                        "outcome", "_id", "_lastUpdated"})
_RESULT_PARAMS = frozenset({"_count", "_sort", "_total", "_summary", "_elements", "_format",
                            "_pretty", "_cursor", "_include", "_revinclude"})


def _check_log_search(access: Access, type_: str, params: list[tuple[str, str]]) -> None:
    """A patient's or carer's search of the access log takes only LOG_PARAMS (400 otherwise),
    and no search of theirs reaches into it with `_has:AuditEvent`."""
    if not api_audit.redacts(access):
        return
    for key, value in params:
        name = key.partition(":")[0].partition(".")[0]
        sorts = {v.strip().lstrip("-") for v in value.split(",")} if name == "_sort" else set()
        if key.startswith("_has:AuditEvent:") or (type_ == "AuditEvent" and (
                name not in LOG_PARAMS | _RESULT_PARAMS or not sorts <= LOG_PARAMS)):
            raise BadRequest(f"Your access log is searched by {', '.join(sorted(LOG_PARAMS))} "
                             f"(not '{key}').")


async def _audit_patients(conn: AsyncConnection, access: Access, type_: str,
                          params: list[tuple[str, str]], page: search.Page) -> None:
    """Redact the AuditEvents a patient or carer finds (api/audit.py), and file the search's
    audit under every patient it names or whose record it returns (consent/access_log.py: BALP
    PatientQuery), so each sees it in their access log."""
    if api_audit.redacts(access):  # a patient's access log: what it hides from them, left out
        for name in ("matches", "included"):
            rows = getattr(page, name)
            texts = await api_audit.redact_contents(conn, access, [r[3] for r in rows])
            setattr(page, name, [(*r[:3], t) for r, t in zip(rows, texts, strict=True)])
    access.patients |= access_log.named_patients(type_, params)
    rows = [*page.matches, *page.included]
    access.patients |= {row[2] for row in rows if row[1] == "Patient"}
    others = [row[0] for row in rows if row[1] != "Patient"]
    if others:
        access.patients |= await access_log.returned_patients(conn, others)


@router.get("/_history")
async def history_system(request: Request, db: DbDep, access: AccessDep) -> Response:
    return await _history(request, db, access, None, None, "_history")


@router.get("/{type_}")
async def search_type(type_: str, request: Request, db: DbDep,
                      access: AccessDep) -> Response:
    known_type(type_)
    params = parse_qsl(request.url.query, keep_blank_values=True)
    return await _search(request, db, access, type_, params)


@router.post("/{type_}/_search")
async def search_post(type_: str, request: Request, db: DbDep,
                      settings: SettingsDep, access: AccessDep) -> Response:
    known_type(type_)
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype and ctype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded.")
    body = await request.body()
    if len(body) > settings.max_body_bytes:
        raise PayloadTooLarge(f"The search form exceeds the limit of {settings.max_body_bytes} "
                              "bytes.")
    params = parse_qsl(request.url.query, keep_blank_values=True)
    params += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return await _search(request, db, access, type_, params)


def _history_params(request: Request) -> tuple[float | None, int, int | None]:
    since = count = before = None
    for key, value in parse_qsl(request.url.query, keep_blank_values=True):
        if key == "_since":
            try:
                since = date_range(value)[0]
            except BadDate as exc:
                raise BadRequest(f"_since: {exc}.") from None
        elif key == "_count":
            if not (value.isascii() and value.isdigit()):
                raise BadRequest(f"_count must be a whole number, not '{value}'.")
            count = min(int(value), search.MAX_COUNT)
        elif key == "_cursor":
            before = search.decode_cursor(value)[-1]
        elif key not in ("_format", "_pretty"):
            raise BadRequest(f"History takes _since, _count and _cursor; '{key}' is not "
                             "supported.")
    return since, count if count is not None else search.DEFAULT_COUNT, before


async def _history(request: Request, db: DbDep, access: Access, type_: str | None,
                   id_: str | None, path: str) -> Response:
    since, count, before = _history_params(request)
    if type_ is not None:
        access.scope_context(type_, "read" if id_ is not None else "search")
    async with db.read() as conn, access.guarding(conn, search=id_ is None) as guard:
        if id_ is not None and type_ is not None:
            await interactions.read_any(conn, type_, id_)  # 404 unless the caller may see it
        rows, after = await interactions.history(conn, type_=type_, id_=id_, since=since,
                                                 count=count, before=before,
                                                 visible=guard.visible)
        # Its audit reaches the log of every patient whose record it returns.
        access.patients |= await access_log.patients_of(conn, {(r[1], r[2]) for r in rows})
    keep = [(k, v) for k, v in parse_qsl(request.url.query) if k in ("_since",)]
    query = urlencode(keep + [("_count", str(count))], safe=":")  # "+" in _since: %2B
    links = {"self": f"{path}?{query}"}
    if after is not None:
        links["next"] = f"{path}?{query}&_cursor={search.encode_cursor([after])}"
    return fhir_response(bundles.history_bundle(base=base_url(request), rows=rows, total=None,
                                                links=links))


@router.get("/{type_}/_history")
async def history_type(type_: str, request: Request, db: DbDep,
                       access: AccessDep) -> Response:
    known_type(type_)
    return await _history(request, db, access, type_, None, f"{type_}/_history")


@router.get("/{type_}/{id_}/_history")
async def history_instance(type_: str, id_: str, request: Request, db: DbDep,
                           access: AccessDep) -> Response:
    known_type(type_)
    return await _history(request, db, access, type_, id_, f"{type_}/{id_}/_history")


def _break_glass_patient(access: Access, id_: str) -> None:
    """Emergency access to Patient/[id]/...: the patient of the path, unless
    X-Break-Glass-Patient names another (403 before any lookup, so it tells nothing)."""
    if access.break_glass_reason is None:
        return
    if access.break_glass_patient is None:
        access.break_glass_patient = id_
    elif access.break_glass_patient != id_:
        raise Forbidden(f"X-Break-Glass-Patient names Patient/{access.break_glass_patient}, "
                        f"but the request is for Patient/{id_}: name the same patient, or "
                        "leave the header out.")


# Patient compartment routes: after /{type_}/{id_}/_history, which they would otherwise take.


@router.get("/Patient/{id_}/$everything")
async def patient_everything(id_: str, request: Request, db: DbDep,
                             access: AccessDep) -> Response:
    """Patient/[id]/$everything, streamed: the Bundle is written while its rows are read."""
    guard = access.guard()  # its filter reads the context resolved below, when it runs
    query = everything.parse(id_, parse_qsl(request.url.query, keep_blank_values=True),
                             visible=guard.visible)
    if not query.types or "AuditEvent" not in query.types:
        # The record, not the log of who read it (AuditEvent?patient=..., or _type=AuditEvent).
        query.visible = lambda row, type_: sa.and_(guard.visible(row, type_),
                                                  row.c.type != "AuditEvent")
    access.scope_context("Patient", "read")
    _break_glass_patient(access, id_)
    async with db.read() as conn, access.guarding(conn):
        await interactions.read(conn, "Patient", id_)  # 404 unknown or unseen, 410 deleted
        await access.open_search(conn)  # any refusal before the first byte, not mid-stream
    base = base_url(request)

    async def body() -> AsyncIterator[bytes]:
        async with db.read(snapshot=True) as conn:  # open until the last byte is written
            await access.open_search(conn)
            stop = await everything.next_page(conn, query)
            links = {"self": query.link()}
            if stop is not None:
                links["next"] = query.link(stop)
            async for chunk in bundles.searchset_stream(
                    base=base, links=links, rows=everything.rows(conn, query, stop)):
                yield chunk

    return StreamingResponse(body(), media_type=FHIR_JSON)


@router.get("/Patient/{id_}/{type_}")
async def search_compartment(id_: str, type_: str, request: Request, db: DbDep,
                             access: AccessDep) -> Response:
    """Patient/[id]/[type]: the search of [type] within the patient's compartment."""
    if type_.startswith("$"):
        raise NotFound(f"Operation {type_} is not supported on Patient/[id] (try $everything).")
    known_type(type_)
    restriction = compartment.condition(type_, id_)  # 400 when [type] is not in it
    lenient = prefer(request, "handling") == "lenient"
    params = parse_qsl(request.url.query, keep_blank_values=True)
    access.scope_context(type_, "search", [*params, ("patient", f"Patient/{id_}")])
    _break_glass_patient(access, id_)
    access.shows_audit = True  # _audit_patients redacts what a patient finds of it
    _check_log_search(access, type_, params)
    async with db.read() as conn, access.guarding(conn, search=True) as guard:
        await interactions.read(conn, "Patient", id_)  # 404 unknown or unseen, 410 deleted
        query = search.parse(type_, params, lenient=lenient, visible=guard.visible)
        query.path = f"Patient/{id_}/{type_}"
        page = await search.run(conn, query, [restriction])
        await _audit_patients(conn, access, type_, params, page)
    return fhir_response(bundles.searchset(base=base_url(request), page=page, query=query))
