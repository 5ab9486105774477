"""Instance and type interactions: read, vread, create, update, patch, delete (and conditional).

Routes parse the request and hand over to `fhir.interactions`; nothing here knows SQL.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from api import audit
from api.access import Access, AccessDep
from api.deps import DbDep, SettingsDep
from api.http import if_match, outcome_response, read_json, resource_response
from fhir import interactions
from fhir.errors import BadRequest, NotFound
from fhir.registry import registry
from fhir.store import Stored

router = APIRouter()


def known_type(type_: str) -> str:
    if type_ not in registry().resource_types:
        raise NotFound(f"'{type_}' is not a resource type this server knows.")
    return type_


def criteria(request: Request) -> list[tuple[str, str]]:
    """The search criteria of a conditional interaction (query string, minus _format)."""
    return [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True)
            if k not in ("_format", "_pretty")]


async def _redacted(conn: AsyncConnection, access: Access, stored: Stored) -> Stored:
    """An AuditEvent as a patient or carer may see it (api/audit.py); anything else as is."""
    if stored.type != "AuditEvent" or not audit.redacts(access):
        return stored
    content = (await audit.redact_contents(conn, access, [stored.content]))[0]
    return dataclasses.replace(stored, content=content)


@router.get("/{type_}/{id_}")
async def read(type_: str, id_: str, request: Request, db: DbDep,
               access: AccessDep) -> Response:
    known_type(type_)
    access.scope_context(type_, "read")  # before the lookup: a 403 must not mean "it exists"
    access.shows_audit = True  # _redacted: a patient's view of their access log
    async with db.read() as conn, access.guarding(conn):
        stored = await _redacted(conn, access, await interactions.read(conn, type_, id_))
    return resource_response(request, stored)


@router.get("/{type_}/{id_}/_history/{vid}")
async def vread(type_: str, id_: str, vid: str, request: Request, db: DbDep,
               access: AccessDep) -> Response:
    known_type(type_)
    access.scope_context(type_, "read")
    access.shows_audit = True
    async with db.read() as conn, access.guarding(conn):
        stored = await _redacted(conn, access, await interactions.vread(conn, type_, id_, vid))
    return resource_response(request, stored)


@router.post("/{type_}")
async def create(type_: str, request: Request, db: DbDep, settings: SettingsDep,
                 access: AccessDep) -> Response:
    known_type(type_)
    body = await read_json(request, settings.max_body_bytes)
    header = request.headers.get("if-none-exist")
    condition = parse_qsl(header.lstrip("?").split("?")[-1], keep_blank_values=True) \
        if header is not None else None
    if header is not None and not condition:
        raise BadRequest("If-None-Exist is empty; give search criteria such as "
                         "identifier=system|value.")
    async with db.write() as conn, access.guarding(conn, write=True,
                                                           search=condition is not None):
        result = await interactions.create(conn, type_, body, condition)
    assert result.stored is not None
    return resource_response(request, result.stored, result.status, result.message,
                             location=True)


@router.put("/{type_}/{id_}")
async def update(type_: str, id_: str, request: Request, db: DbDep,
                 settings: SettingsDep, access: AccessDep) -> Response:
    known_type(type_)
    body = await read_json(request, settings.max_body_bytes)
    version = if_match(request)
    async with db.write() as conn, access.guarding(conn, write=True):
        result = await interactions.update(conn, type_, id_, body, version)
    assert result.stored is not None
    return resource_response(request, result.stored, result.status, location=True)


@router.put("/{type_}")
async def conditional_update(type_: str, request: Request, db: DbDep,
                             settings: SettingsDep, access: AccessDep) -> Response:
    known_type(type_)
    params = criteria(request)
    if not params:
        raise BadRequest(f"PUT /{type_} needs search criteria (conditional update) or an id "
                         f"(PUT /{type_}/[id]).")
    body = await read_json(request, settings.max_body_bytes)
    version = if_match(request)
    async with db.write() as conn, access.guarding(conn, write=True, search=True):
        result = await interactions.conditional_update(conn, type_, params, body, version)
    assert result.stored is not None
    return resource_response(request, result.stored, result.status, location=True)


@router.patch("/{type_}/{id_}")
async def patch(type_: str, id_: str, request: Request, db: DbDep,
                settings: SettingsDep, access: AccessDep) -> Response:
    known_type(type_)
    operations = await read_json(request, settings.max_body_bytes, patch=True)
    version = if_match(request)
    async with db.write() as conn, access.guarding(conn, write=True):
        result = await interactions.patch(conn, type_, id_, operations, version)
    assert result.stored is not None
    return resource_response(request, result.stored, result.status, location=True)


@router.delete("/{type_}/{id_}")
async def delete(type_: str, id_: str, request: Request, db: DbDep,
               access: AccessDep) -> Response:
    known_type(type_)
    version = if_match(request)
    async with db.write() as conn, access.guarding(conn, write=True):
        result = await interactions.delete(conn, type_, id_, version)
    headers = {"ETag": result.stored.etag} if result.stored else None
    return outcome_response(200, result.message or "Deleted.", headers=headers)


@router.delete("/{type_}")
async def conditional_delete(type_: str, request: Request, db: DbDep,
               access: AccessDep) -> Response:
    known_type(type_)
    params = criteria(request)
    if not params:
        raise BadRequest(f"DELETE /{type_} needs search criteria; to delete one resource use "
                         f"DELETE /{type_}/[id].")
    async with db.write() as conn, access.guarding(conn, write=True, search=True):
        result = await interactions.conditional_delete(conn, type_, params)
    return outcome_response(200, result.message or "Deleted.")
