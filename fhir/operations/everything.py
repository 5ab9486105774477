"""Patient/[id]/$everything (https://hl7.org/fhir/R4/patient-operation-everything.html).

The answer is the Patient, every resource in its compartment (`fhir.search.compartment`), and
the resources those point at that are in no patient's compartment (Practitioner,
Organization, Medication, Location, ...), each once, in row id order and paged by keyset.

Parameters: `start` / `end` bound the clinical date of the compartment resources whose type
has one (`CLINICAL_DATE`; a resource with no such date is kept), `_since` keeps resources
updated at or after an instant, `_type` keeps only the named types, `_count` sizes the page.
The referenced resources are those of the compartment resources that pass `start`/`end`;
`_type` and `_since` then filter the whole answer. References are followed one step, through
the reference index (so through a reference some search parameter covers).

Only rows the caller may see (`EverythingQuery.visible`) are paged and returned, and
references are followed only from those: a hidden resource does not reveal what it points at.

A page is read with a server-side cursor (`rows`) and written as it is read
(`fhir.bundles.searchset_stream`), so memory stays flat however large the page or record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir import pending
from fhir.dates import BadDate, date_range
from fhir.errors import BadRequest
from fhir.registry import registry
from fhir.schema import INDEX_TABLES, resource
from fhir.search import compartment, paging
from fhir.search.params import DEFAULT_COUNT, MAX_COUNT
from fhir.visibility import Visibility, conditions

Row = tuple[int, str, str, str]  # rid, type, id, content
STREAM_BATCH = 32  # rows fetched from the server-side cursor at a time

# The date search parameter that says when the care a resource records happened: the R4
# `clinical-date` parameter (`date`) where a type has it, else the nearest equivalent.
CLINICAL_DATE = {
    "Account": "period", "AdverseEvent": "date", "AllergyIntolerance": "date",
    "Appointment": "date", "AuditEvent": "date", "Basic": "created", "CarePlan": "date",
    "CareTeam": "date", "ChargeItem": "occurrence", "Claim": "created",
    "ClaimResponse": "created", "ClinicalImpression": "date", "Communication": "sent",
    "CommunicationRequest": "authored", "Composition": "date", "Condition": "onset-date",
    "Consent": "date", "CoverageEligibilityRequest": "created",
    "CoverageEligibilityResponse": "created", "DetectedIssue": "identified",
    "DeviceRequest": "authored-on", "DiagnosticReport": "date", "DocumentManifest": "created",
    "DocumentReference": "period", "Encounter": "date", "EpisodeOfCare": "date",
    "ExplanationOfBenefit": "created", "FamilyMemberHistory": "date", "Flag": "date",
    "Goal": "start-date", "ImagingStudy": "started", "Immunization": "date",
    "ImmunizationEvaluation": "date", "ImmunizationRecommendation": "date", "Invoice": "date",
    "List": "date", "MeasureReport": "period", "Media": "created",
    "MedicationAdministration": "effective-time", "MedicationDispense": "whenhandedover",
    "MedicationRequest": "authoredon", "MedicationStatement": "effective",
    "NutritionOrder": "datetime", "Observation": "date", "Procedure": "date",
    "Provenance": "recorded", "QuestionnaireResponse": "authored", "RequestGroup": "authored",
    "ResearchSubject": "date", "RiskAssessment": "date", "Schedule": "date",
    "ServiceRequest": "authored", "Specimen": "collected", "SupplyRequest": "date",
    "Task": "authored-on", "VisionPrescription": "datewritten",
}


@dataclass(slots=True)
class EverythingQuery:
    patient_id: str
    start: float | None = None  # the low end of `start`
    end: float | None = None  # the high end of `end`
    since: float | None = None
    types: list[str] | None = None
    count: int = DEFAULT_COUNT
    first: int | None = None  # the row id this page starts at (from _cursor)
    accepted: list[tuple[str, str]] = field(default_factory=list)
    visible: Visibility | None = None  # the caller's filter; never in `link`

    @property
    def path(self) -> str:
        return f"Patient/{self.patient_id}/$everything"

    def link(self, first: int | None = None) -> str:
        params = [*self.accepted, ("_count", str(self.count))]
        if first is not None:
            params.append(("_cursor", paging.encode([first])))
        query = "&".join(f"{quote(k, safe='_')}={quote(v, safe=',:.-_')}" for k, v in params)
        return f"{self.path}?{query}"


def _date(name: str, value: str) -> tuple[float, float]:
    try:
        return date_range(value)
    except BadDate as exc:
        raise BadRequest(f"{name}: {exc}.") from None


def parse(patient_id: str, params: list[tuple[str, str]], *,
          visible: Visibility | None = None) -> EverythingQuery:
    """The $everything request for `patient_id` from its query parameters (400 when wrong),
    answered with the rows `visible` lets the caller see (None: every row)."""
    query = EverythingQuery(patient_id, visible=visible)
    seen: set[str] = set()
    for name, value in params:
        if name in ("_format", "_pretty"):
            continue
        if name in seen and name != "_type":
            raise BadRequest(f"$everything: '{name}' may be given once.")
        seen.add(name)
        if name == "start":
            query.start = _date(name, value)[0]
        elif name == "end":
            query.end = _date(name, value)[1]
        elif name == "_since":
            query.since = _date(name, value)[0]
        elif name == "_type":
            wanted = [t.strip() for t in value.split(",") if t.strip()]
            unknown = [t for t in wanted if t not in registry().resource_types]
            if not wanted or unknown:
                raise BadRequest(f"_type: {', '.join(unknown) or 'nothing'} is not a resource "
                                 "type (give a comma-separated list such as "
                                 "Observation,Condition).")
            query.types = sorted({*(query.types or []), *wanted})
        elif name == "_count":
            if not (value.isascii() and value.isdigit()) or int(value) < 1:
                raise BadRequest(f"_count must be a whole number from 1 to {MAX_COUNT}, "
                                 f"not '{value}'.")
            query.count = min(int(value), MAX_COUNT)
            continue
        elif name == "_cursor":
            query.first = paging.decode(value)[-1]
            continue
        else:
            raise BadRequest(f"'{name}' is not a parameter of Patient/$everything (it takes "
                             "start, end, _since, _type, _count).")
        query.accepted.append((name, value))
    if query.start is not None and query.end is not None and query.start >= query.end:
        raise BadRequest("$everything: start is after end.")
    return query


# Statements are built once per shape (which filters are present) with bound parameters,
# and reused: building the large compartment test anew per request would cost more memory
# and time than reading a page.
_PID = sa.bindparam("pid", type_=sa.String)
_START = sa.bindparam("start", type_=sa.Float)
_END = sa.bindparam("end", type_=sa.Float)
_SINCE = sa.bindparam("since", type_=sa.Float)
_TYPES = sa.bindparam("types", type_=sa.String, expanding=True)
_FIRST = sa.bindparam("first", type_=sa.BigInteger)
_STOP = sa.bindparam("stop", type_=sa.BigInteger)
_COUNT = sa.bindparam("count", type_=sa.Integer)
_NO_STOP = 2**62


def _in_window(start: bool, end: bool) -> Any:
    """`extra(row)` for compartment rows: a clinical date, if the row's type has one and the
    row a value for it, that meets start/end. None when there is no window."""
    if not (start or end):
        return None
    by_param: dict[str, list[str]] = {}
    for type_, param in CLINICAL_DATE.items():
        sp = registry().get(type_, param)
        if sp is not None and sp.type == "date":
            by_param.setdefault(sp.key, []).append(type_)  # its index rows' `param`
    dated = sorted(t for ts in by_param.values() for t in ts)

    def condition(row: Any) -> Any:
        clauses = [row.c.type.not_in(dated)]
        for param, ts in sorted(by_param.items()):
            any_date = INDEX_TABLES["date"].alias()
            within = INDEX_TABLES["date"].alias()
            window = []
            if start:
                window.append(within.c.hi > _START)
            if end:
                window.append(within.c.lo < _END)
            undated = sa.not_(sa.exists().where(any_date.c.rid == row.c.rid,
                                                any_date.c.param == param))
            meets = sa.exists().where(within.c.rid == row.c.rid, within.c.param == param,
                                      *window)
            clauses.append(sa.and_(row.c.type.in_(ts), sa.or_(undated, meets)))
        return sa.or_(*clauses)

    return condition


@lru_cache(maxsize=32)
def _statements(start: bool, end: bool, types: bool, since: bool) -> tuple[Any, Any]:
    """The statements of a caller who sees every row, built once per shape of request."""
    return _build(start, end, types, since, None)


def _build(start: bool, end: bool, types: bool, since: bool,
           visible: Visibility | None) -> tuple[Any, Any]:
    """(the next page's first row id, this page's rows) for one shape of request, of the
    rows `visible` lets the caller see.

    Bound: pid, first, count, stop, and start / end / types / since when present."""
    window = _in_window(start, end)

    def keep(row: Any) -> Any:
        return sa.and_(*([window(row)] if window else []),
                       *conditions(visible, row, None, read=True))

    members = compartment.members(_PID, keep if window or visible else None).cte("members")
    ref = INDEX_TABLES["reference"].alias()
    target = resource.alias()
    referenced = (sa.select(target.c.rid)
                  .select_from(ref.join(target, sa.and_(target.c.type == ref.c.target_type,
                                                        target.c.id == ref.c.target_id)))
                  .where(ref.c.rid.in_(sa.select(members.c.rid)),
                         target.c.patient_id.is_(None), target.c.deleted.is_(False)))
    ids = sa.union_all(sa.select(members.c.rid), referenced).subquery("everything")
    where = [resource.c.rid.in_(sa.select(ids.c.rid)), resource.c.deleted.is_(False),
             resource.c.rid >= _FIRST, *conditions(visible, resource, None, read=True)]
    if types:
        where.append(resource.c.type.in_(_TYPES))
    else:  # the record, not the log of who read it (AuditEvent?patient=, or _type=AuditEvent)
        where.append(resource.c.type != "AuditEvent")
    if since:
        where.append(resource.c.last_updated >= _SINCE)
    boundary = (sa.select(resource.c.rid).where(*where).order_by(resource.c.rid)
                .offset(_COUNT).limit(1))
    page = (sa.select(resource.c.rid, resource.c.type, resource.c.id, resource.c.content)
            .where(*where, resource.c.rid < _STOP).order_by(resource.c.rid).limit(_COUNT)
            .execution_options(yield_per=STREAM_BATCH))
    return boundary, page


def _bound(query: EverythingQuery, stop: int | None = None) -> tuple[Any, Any, dict[str, Any]]:
    shape = (query.start is not None, query.end is not None, query.types is not None,
             query.since is not None)
    # A caller's filter is its own: its statements are built for it, never cached.
    boundary, page = (_statements(*shape) if query.visible is None
                      else _build(*shape, query.visible))
    values: dict[str, Any] = {"pid": query.patient_id, "first": query.first or 0,
                              "count": query.count,
                              "stop": stop if stop is not None else _NO_STOP}
    for name in ("start", "end", "types", "since"):
        if getattr(query, name) is not None:
            values[name] = getattr(query, name)
    return boundary, page, values


async def next_page(conn: AsyncConnection, query: EverythingQuery) -> int | None:
    """The row id the page after this one starts at, or None when this is the last page."""
    await pending.settle(conn)  # index rows this transaction queued (fhir/pending.py)
    boundary, _, values = _bound(query)
    return (await conn.execute(boundary, values)).scalar_one_or_none()


async def rows(conn: AsyncConnection, query: EverythingQuery,
               stop: int | None) -> AsyncIterator[Row]:
    """This page's rows (those before row id `stop`), read through a server-side cursor a
    few at a time: nothing here holds more than a few dozen rows."""
    _, page, values = _bound(query, stop)
    result = await conn.stream(page, values)
    try:
        async for row in result:
            yield row.rid, row.type, row.id, row.content
    finally:
        await result.close()
