"""Instance and type interactions: read, vread, create, update, patch, delete (and conditional).

Routes parse the request, call the request's repository (api/repository.py) and respond;
nothing here knows SQL or access rules.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import RepositoryDep, SettingsDep
from api.http import if_match, outcome_response, read_json, resource_response
from fhir import interactions
from fhir.errors import BadRequest, NotFound
from fhir.registry import registry

router = APIRouter()


def known_type(type_: str) -> str:
    if type_ not in registry().resource_types:
        raise NotFound(f"'{type_}' is not a resource type this server knows.")
    return type_


def criteria(request: Request) -> list[tuple[str, str]]:
    """The search criteria of a conditional interaction (query string, minus _format)."""
    return [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True)
            if k not in ("_format", "_pretty")]


@router.get("/{type_}/{id_}")
async def read(type_: str, id_: str, request: Request, repo: RepositoryDep) -> Response:
    known_type(type_)
    stored = await repo.read(type_, id_)
    return resource_response(request, stored)


@router.get("/{type_}/{id_}/_history/{vid}")
async def vread(type_: str, id_: str, vid: str, request: Request, repo: RepositoryDep) -> Response:
    known_type(type_)
    stored = await repo.vread(type_, id_, vid)
    return resource_response(request, stored)


@router.post("/{type_}")
async def create(type_: str, request: Request, settings: SettingsDep,
                 repo: RepositoryDep) -> Response:
    known_type(type_)
    body = await read_json(request, settings.max_body_bytes)
    header = request.headers.get("if-none-exist")
    condition = parse_qsl(header.lstrip("?").split("?")[-1], keep_blank_values=True) \
        if header is not None else None
    if header is not None and not condition:
        raise BadRequest("If-None-Exist is empty; give search criteria such as "
                         "identifier=system|value.")
    result = await repo.write(lambda conn: interactions.create(conn, type_, body, condition),
                              search=condition is not None)
    assert result.stored is not None
    return resource_response(request, result.stored, result.status, result.message,
                             location=True)


@router.put("/{type_}/{id_}")
async def update(type_: str, id_: str, request: Request, settings: SettingsDep,
                 repo: RepositoryDep) -> Response:
    known_type(type_)
    body = await read_json(request, settings.max_body_bytes)
    version = if_match(request)
    result = await repo.write(lambda conn: interactions.update(conn, type_, id_, body, version))
    assert result.stored is not None
    return resource_response(request, result.stored, result.status, location=True)


@router.put("/{type_}")
async def conditional_update(type_: str, request: Request, settings: SettingsDep,
                             repo: RepositoryDep) -> Response:
    known_type(type_)
    params = criteria(request)
    if not params:
        raise BadRequest(f"PUT /{type_} needs search criteria (conditional update) or an id "
                         f"(PUT /{type_}/[id]).")
    body = await read_json(request, settings.max_body_bytes)
    version = if_match(request)
    result = await repo.write(lambda conn: interactions.conditional_update(
        conn, type_, params, body, version), search=True)
    assert result.stored is not None
    return resource_response(request, result.stored, result.status, location=True)


@router.patch("/{type_}/{id_}")
async def patch(type_: str, id_: str, request: Request, settings: SettingsDep,
                repo: RepositoryDep) -> Response:
    known_type(type_)
    operations = await read_json(request, settings.max_body_bytes, patch=True)
    version = if_match(request)
    result = await repo.write(lambda conn: interactions.patch(conn, type_, id_, operations,
                                                             version))
    assert result.stored is not None
    return resource_response(request, result.stored, result.status, location=True)


@router.patch("/{type_}")
async def conditional_patch(type_: str, request: Request, settings: SettingsDep,
                            repo: RepositoryDep) -> Response:
    known_type(type_)
    params = criteria(request)
    if not params:
        raise BadRequest(f"PATCH /{type_} needs search criteria (conditional patch) or an id "
                         f"(PATCH /{type_}/[id]).")
    operations = await read_json(request, settings.max_body_bytes, patch=True)
    version = if_match(request)
    result = await repo.write(lambda conn: interactions.conditional_patch(
        conn, type_, params, operations, version), search=True)
    assert result.stored is not None
    return resource_response(request, result.stored, result.status, location=True)


@router.delete("/{type_}/{id_}")
async def delete(type_: str, id_: str, request: Request, repo: RepositoryDep) -> Response:
    known_type(type_)
    version = if_match(request)
    result = await repo.write(lambda conn: interactions.delete(conn, type_, id_, version))
    headers = {"ETag": result.stored.etag} if result.stored else None
    return outcome_response(200, result.message or "Deleted.", headers=headers)


@router.delete("/{type_}")
async def conditional_delete(type_: str, request: Request, repo: RepositoryDep) -> Response:
    known_type(type_)
    params = criteria(request)
    if not params:
        raise BadRequest(f"DELETE /{type_} needs search criteria; to delete one resource use "
                         f"DELETE /{type_}/[id].")
    result = await repo.write(lambda conn: interactions.conditional_delete(conn, type_, params),
                              search=True)
    return outcome_response(200, result.message or "Deleted.")
