"""Search (GET and POST _search) and history at instance, type and system level."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from api.deps import RepositoryDep, SettingsDep
from api.http import FHIR_JSON, base_url, fhir_response, prefer
from api.repository import Repository
from api.routes.record import known_type
from fhir import bundles, search
from fhir.dates import BadDate, date_range
from fhir.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType

router = APIRouter()


async def _search(request: Request, repo: Repository, type_: str,
                  params: list[tuple[str, str]], patient: str | None = None) -> Response:
    lenient = prefer(request, "handling") == "lenient"
    page, query = await repo.search(type_, params, lenient=lenient, patient=patient)
    return fhir_response(bundles.searchset(base=base_url(request), page=page, query=query))


@router.get("/_history")
async def history_system(request: Request, repo: RepositoryDep) -> Response:
    return await _history(request, repo, None, None, "_history")


@router.get("/{type_}")
async def search_type(type_: str, request: Request, repo: RepositoryDep) -> Response:
    known_type(type_)
    params = parse_qsl(request.url.query, keep_blank_values=True)
    return await _search(request, repo, type_, params)


@router.post("/{type_}/_search")
async def search_post(type_: str, request: Request, settings: SettingsDep,
                      repo: RepositoryDep) -> Response:
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
    return await _search(request, repo, type_, params)


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


async def _history(request: Request, repo: Repository, type_: str | None,
                   id_: str | None, path: str) -> Response:
    since, count, before = _history_params(request)
    rows, after = await repo.history(type_, id_, since=since, count=count, before=before)
    keep = [(k, v) for k, v in parse_qsl(request.url.query) if k in ("_since",)]
    query = urlencode(keep + [("_count", str(count))], safe=":")  # "+" in _since: %2B
    links = {"self": f"{path}?{query}"}
    if after is not None:
        links["next"] = f"{path}?{query}&_cursor={search.encode_cursor([after])}"
    return fhir_response(bundles.history_bundle(base=base_url(request), rows=rows, total=None,
                                                links=links))


@router.get("/{type_}/_history")
async def history_type(type_: str, request: Request, repo: RepositoryDep) -> Response:
    known_type(type_)
    return await _history(request, repo, type_, None, f"{type_}/_history")


@router.get("/{type_}/{id_}/_history")
async def history_instance(type_: str, id_: str, request: Request,
                           repo: RepositoryDep) -> Response:
    known_type(type_)
    return await _history(request, repo, type_, id_, f"{type_}/{id_}/_history")


# Patient compartment routes: after /{type_}/{id_}/_history, which they would otherwise take.


@router.get("/Patient/{id_}/$everything")
async def patient_everything(id_: str, request: Request, repo: RepositoryDep) -> Response:
    """Patient/[id]/$everything, streamed: the Bundle is written while its rows are read."""
    params = parse_qsl(request.url.query, keep_blank_values=True)
    body = await repo.everything(id_, params, base_url(request))
    return StreamingResponse(body, media_type=FHIR_JSON)


@router.get("/Patient/{id_}/{type_}")
async def search_compartment(id_: str, type_: str, request: Request,
                             repo: RepositoryDep) -> Response:
    """Patient/[id]/[type]: the search of [type] within the patient's compartment."""
    if type_.startswith("$"):
        raise NotFound(f"Operation {type_} is not supported on Patient/[id] (try $everything).")
    known_type(type_)
    params = parse_qsl(request.url.query, keep_blank_values=True)
    return await _search(request, repo, type_, params, patient=id_)
