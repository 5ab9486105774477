"""$export (FHIR Bulk Data Access, https://hl7.org/fhir/uv/bulkdata/export.html): what is
exported, as SQL.

Three levels: the system (`[base]/$export`: every resource the caller may see, but the
AuditEvent log unless `_type` names it), all patients (`[base]/Patient/$export`: the patient
compartments) and a group (`[base]/Group/[id]/$export`: the compartments of its members).
`_type` names the types, `_since` keeps resources updated at or after an instant, and
`_typeFilter` (`Type?search`) keeps, of a type it names, the resources one of its searches
finds (several for one type are OR'ed, https://hl7.org/fhir/uv/bulkdata/export.html#_typefilter-experimental-query-parameter).

Rows are read in pages by keyset over the row id (`page`), with the caller's filter
(`visible`, the same as a search's) applied in SQL, so an export holds one page at a time
whatever the size of the record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir import search
from fhir.dates import BadDate, date_range
from fhir.errors import BadRequest
from fhir.registry import registry
from fhir.schema import resource
from fhir.visibility import Visibility, conditions

PAGE = 500  # rows read at a time
FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
Row = tuple[int, str, str, str | None, Any]  # rid, type, id, patient_id, content


@dataclass(slots=True)
class ExportRequest:
    level: str  # "system", "patient" or "group"
    group: str | None = None
    types: list[str] | None = None
    since: float | None = None
    type_filters: dict[str, list[list[tuple[str, str]]]] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return {"system": "$export", "patient": "Patient/$export"}.get(
            self.level, f"Group/{self.group}/$export")


def _types(value: str) -> list[str]:
    wanted = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in registry().resource_types]
    if not wanted or unknown:
        raise BadRequest(f"_type: {', '.join(unknown) or 'nothing'} is not a resource type "
                         "(give a comma-separated list such as Patient,Observation).")
    return wanted


def _type_filter(value: str, request: ExportRequest) -> None:
    type_, _, query = value.partition("?")
    if type_ not in registry().resource_types or not query:
        raise BadRequest(f"_typeFilter '{value}' is not [type]?[search] with a resource type "
                         "(e.g. Observation?category=laboratory).")
    params = parse_qsl(query, keep_blank_values=True)
    bad = [k for k, _ in params if k.startswith("_") and k not in ("_id", "_lastUpdated",
                                                                   "_tag", "_profile")]
    if bad:
        raise BadRequest(f"_typeFilter '{value}': {', '.join(bad)} is not a search "
                         "criterion (result parameters such as _count do not apply).")
    search.parse(type_, params)  # 400 now, not in the job, for an unknown parameter
    request.type_filters.setdefault(type_, []).append(params)


def parse(level: str, group: str | None, params: list[tuple[str, str]]) -> ExportRequest:
    """The export request from its query parameters (400 when wrong)."""
    request = ExportRequest(level, group)
    for name, value in params:
        if name == "_outputFormat":
            if value not in FORMATS:
                raise BadRequest(f"_outputFormat '{value}' is not supported; this server "
                                 "writes application/fhir+ndjson.")
        elif name == "_type":
            request.types = sorted({*(request.types or []), *_types(value)})
        elif name == "_since":
            if request.since is not None:
                raise BadRequest("$export: '_since' may be given once.")
            try:
                request.since = date_range(value)[0]
            except BadDate as exc:
                raise BadRequest(f"_since: {exc}.") from None
        elif name == "_typeFilter":
            for one in value.split(","):
                _type_filter(one, request)
        elif name == "_format":
            continue
        else:
            raise BadRequest(f"'{name}' is not a parameter of $export here (it takes _type, "
                             "_since, _typeFilter and _outputFormat).")
    if request.types is not None:
        stray = sorted(set(request.type_filters) - set(request.types))
        if stray:
            raise BadRequest(f"_typeFilter names {', '.join(stray)}, which _type leaves out.")
    return request


def statement(request: ExportRequest, visible: Visibility | None,
              members: list[str] | None = None) -> Any:
    """One page of the export's rows after row id `after` (bound: after, limit)."""
    where: list[Any] = [resource.c.rid > sa.bindparam("after"), resource.c.deleted.is_(False),
                        *conditions(visible, resource, None, read=True)]
    if request.types is not None:
        where.append(resource.c.type.in_(request.types))
    else:  # the record, not the log of who read it
        where.append(resource.c.type != "AuditEvent")
    if request.level == "patient":
        where.append(resource.c.patient_id.is_not(None))
    elif request.level == "group":
        where.append(resource.c.patient_id.in_(members or []))
    if request.since is not None:
        where.append(resource.c.last_updated >= request.since)
    for type_, searches in request.type_filters.items():
        found = [sa.and_(sa.true(), *search.parse(type_, p, visible=visible).conditions)
                 for p in searches]
        where.append(sa.or_(resource.c.type != type_, sa.or_(*found)))
    return (sa.select(resource.c.rid, resource.c.type, resource.c.id, resource.c.patient_id,
                      resource.c.content)
            .where(*where).order_by(resource.c.rid).limit(sa.bindparam("limit")))


async def rows(conn: AsyncConnection, stmt: Any, page: int = PAGE) -> AsyncIterator[list[Row]]:
    """The export's rows, a page at a time (keyset on the row id)."""
    after = 0
    while True:
        batch = (await conn.execute(stmt, {"after": after, "limit": page})).all()
        if not batch:
            return
        yield [tuple(r) for r in batch]  # type: ignore[misc]
        after = batch[-1][0]


def group_members(group: dict[str, Any]) -> list[str]:
    """The Patient ids a Group's `member.entity` names (inactive members left out)."""
    ids = []
    for member in group.get("member") or []:
        if not isinstance(member, dict) or member.get("inactive") is True:
            continue
        ref = (member.get("entity") or {}).get("reference") or ""
        type_, _, id_ = ref.rpartition("/")
        if type_.endswith("Patient") and id_:
            ids.append(id_)
    return ids
