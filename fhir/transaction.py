"""Batch and transaction Bundles posted to the base (https://hl7.org/fhir/R4/http.html#transaction).

A transaction runs in the caller's one database transaction: any failing entry raises and
nothing is kept. Entries run in the order the spec gives (DELETE, POST, PUT/PATCH, GET);
`urn:uuid:` fullUrls and conditional references (`Patient?identifier=...`) are resolved to
ids first and rewritten in every resource. A batch runs each entry in its own transaction.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir import bundles, interactions, jsontext, pending, search, store
from fhir.errors import BadRequest, FhirError, MethodNotAllowed, NotFound, PreconditionFailed
from fhir.interactions import Result
from fhir.registry import registry

MAX_ENTRIES = 5000
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


@dataclass(slots=True)
class Entry:
    index: int
    method: str
    type: str
    id: str | None
    params: list[tuple[str, str]]
    resource: Any
    full_url: str | None
    if_match: int | None
    if_none_exist: list[tuple[str, str]] | None
    url: str
    planned: bool = False  # a conditional update's id chosen by `_resolve` (no match then)


def parse_entries(bundle: Any, kind: str) -> list[Entry]:
    """Check a batch/transaction Bundle's shape and read its entries' requests."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base takes a Bundle of type batch or transaction.")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest("Bundle.entry must be an array.", expression="Bundle.entry")
    if len(entries) > MAX_ENTRIES:
        raise BadRequest(f"A {kind} may hold at most {MAX_ENTRIES} entries; split it.")
    out = []
    full_urls: dict[tuple[str, Any], int] = {}
    for i, raw in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        request = raw.get("request") if isinstance(raw, dict) else None
        if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
            raise BadRequest(f"{where}.request needs a method and a url.", expression=where)
        method = str(request["method"]).upper()
        if method not in ORDER:
            raise BadRequest(f"{where}.request.method '{method}' is not a FHIR method.")
        parts = urlsplit(str(request["url"]))
        path = parts.path.strip("/").split("/")
        type_ = path[0]
        if type_ not in registry().resource_types:
            raise NotFound(f"{where}: unknown resource type '{type_}'.", expression=where)
        if_match = request.get("ifMatch")
        if_none = request.get("ifNoneExist")
        for key, value in (("ifMatch", if_match), ("ifNoneExist", if_none)):
            if value is not None and not isinstance(value, str):
                raise BadRequest(f"{where}.request.{key} must be a string.",
                                 expression=f"{where}.request.{key}")
        full_url = raw.get("fullUrl")
        if full_url is not None:
            # bdl-7: fullUrl is unique in a Bundle, unless the versions differ
            # (https://hl7.org/fhir/R4/bundle.html#invs)
            resource = raw.get("resource")
            meta = resource.get("meta") if isinstance(resource, dict) else None
            key = (str(full_url), meta.get("versionId") if isinstance(meta, dict) else None)
            if key in full_urls:
                raise BadRequest(f"{where}.fullUrl '{full_url}' is also the fullUrl of "
                                 f"Bundle.entry[{full_urls[key]}]; each entry needs its own "
                                 "(bdl-7).", expression=f"{where}.fullUrl")
            full_urls[key] = i
        out.append(Entry(
            index=i, method=method, type=type_, id=path[1] if len(path) > 1 else None,
            params=parse_qsl(parts.query, keep_blank_values=True),
            resource=raw.get("resource"), full_url=raw.get("fullUrl"),
            if_match=_version(if_match, where) if if_match else None,
            if_none_exist=parse_qsl(if_none.lstrip("?").split("?")[-1], keep_blank_values=True)
            if if_none else None,
            url=str(request["url"]),
        ))
    return out


def _version(etag: str, where: str) -> int:
    text = etag.removeprefix("W/").strip('"')
    if not text.isdigit():
        raise BadRequest(f"{where}.request.ifMatch '{etag}' is not an ETag like W/\"3\".")
    return int(text)


def _rewrite(value: Any, mapping: dict[str, str]) -> Any:
    """Replace every Reference.reference found in `mapping`; unresolved urn:uuid is an error."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                if item in mapping:
                    value[key] = mapping[item]
                elif item.startswith(("urn:uuid:", "urn:oid:")):
                    raise BadRequest(f"The reference '{item}' names no entry of this transaction.")
            else:
                _rewrite(item, mapping)
    elif isinstance(value, list):
        for item in value:
            _rewrite(item, mapping)
    return value


def _conditional_references(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and "?" in item:
                found.add(item)
            else:
                _conditional_references(item, found)
    elif isinstance(value, list):
        for item in value:
            _conditional_references(item, found)


async def _resolve(conn: AsyncConnection, entries: list[Entry]) -> dict[str, str]:
    """fullUrl and conditional reference → Type/id, assigning ids to new resources."""
    mapping: dict[str, str] = {}
    for e in entries:
        if e.method == "POST":
            e.id = None
            if e.if_none_exist:
                ids = await search.match_ids(conn, e.type, e.if_none_exist)
                if len(ids) > 1:
                    raise PreconditionFailed(f"Bundle.entry[{e.index}]: ifNoneExist matches "
                                             f"more than one {e.type}.")
                e.id = ids[0] if ids else None
            e.id = e.id or interactions.new_id()
        elif e.method == "PUT" and e.id is None and e.params:
            ids = await search.match_ids(conn, e.type, e.params)
            if len(ids) == 1:
                e.id = ids[0]
            elif not ids and isinstance(e.resource, dict):
                # No match: this entry creates, with an id chosen now so that references
                # to its fullUrl can name it (the body's own id, or one planned here).
                own = e.resource.get("id")
                e.id = own if isinstance(own, str) and own else interactions.new_id()
                e.planned = True
        if e.full_url and e.id and e.method in ("POST", "PUT"):
            mapping[e.full_url] = f"{e.type}/{e.id}"
    wanted: set[str] = set()
    for e in entries:
        _conditional_references(e.resource, wanted)
    for ref in wanted:
        type_, _, query = ref.partition("?")
        if type_ not in registry().resource_types:
            raise BadRequest(f"Conditional reference '{ref}' names an unknown type.")
        ids = await search.match_ids(conn, type_, parse_qsl(query, keep_blank_values=True))
        if len(ids) != 1:
            raise PreconditionFailed(f"Conditional reference '{ref}' matches {len(ids) or 'no'} "
                                     f"resources; it must match exactly one.")
        mapping[ref] = f"{type_}/{ids[0]}"
    return mapping


async def _run_entry(conn: AsyncConnection, e: Entry, base: str) -> tuple[Result | None, Any]:
    """Run one entry; returns the write Result, or (None, body) for a GET."""
    if e.method == "GET" or e.method == "HEAD":
        if e.id is None:
            query = search.parse(e.type, e.params)
            page = await search.run(conn, query)
            body = bundles.searchset(base=base, page=page, query=query)
            return None, jsontext.loads(body)
        stored = await interactions.read(conn, e.type, e.id)
        return Result(200, stored), None
    if e.method == "POST":
        if e.id and e.if_none_exist is None:
            return await interactions.create(conn, e.type, e.resource, id_=e.id), None
        return await interactions.create(conn, e.type, e.resource, e.if_none_exist, id_=e.id), None
    if e.method == "PUT":
        if e.id and not e.params:
            return await interactions.update(conn, e.type, e.id, e.resource, e.if_match), None
        return await interactions.conditional_update(
            conn, e.type, e.params, e.resource, e.if_match,
            id_=e.id if e.planned else None), None
    if e.method == "PATCH":
        ops = _patch_body(e.resource)
        if e.id is None:
            if not e.params:
                raise MethodNotAllowed("PATCH in a Bundle needs Type/id or Type?criteria.")
            return await interactions.conditional_patch(conn, e.type, e.params, ops,
                                                        e.if_match), None
        return await interactions.patch(conn, e.type, e.id, ops, e.if_match), None
    if e.id:
        return await interactions.delete(conn, e.type, e.id, e.if_match), None
    return await interactions.conditional_delete(conn, e.type, e.params), None


def _patch_body(resource: Any) -> Any:
    """A JSON Patch in a Bundle travels as a Binary whose data is the patch, base64."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            return jsontext.loads(base64.b64decode(resource.get("data", "")))
        except (ValueError, TypeError, orjson.JSONDecodeError):  # TypeError: data not text
            raise BadRequest("The Binary of a PATCH entry must hold a JSON Patch.") from None
    raise BadRequest("A PATCH entry carries its JSON Patch as a Binary resource.")


def _response(e: Entry, result: Result | None, body: Any, base: str,
              minimal: bool = False) -> dict[str, Any]:
    if result is None:
        return {"resource": body, "response": {"status": "200 OK"}}
    out: dict[str, Any] = {"response": {"status": STATUS_TEXT.get(result.status,
                                                                  str(result.status))}}
    stored = result.stored
    if stored is not None:
        out["fullUrl"] = f"{base}/{e.type}/{stored.id}"
        out["response"].update(etag=stored.etag, lastModified=stored.instant)
        if e.method in ("POST", "PUT", "PATCH"):
            out["response"]["location"] = f"{stored.type}/{stored.id}/_history/{stored.version}"
        if stored.content is not None and e.method != "DELETE" and not minimal:
            out["resource"] = orjson.Fragment(stored.content)  # the stored text, unparsed
    return out


def _one_change_each(entries: list[Entry]) -> None:
    """A transaction changes each resource once: two entries writing the same Type/id (ids
    resolved from conditional criteria too) make it fail
    (https://hl7.org/fhir/R4/http.html#trules)."""
    seen: dict[str, int] = {}
    for e in entries:
        if e.method in ("GET", "HEAD") or not e.id:
            continue
        key = f"{e.type}/{e.id}"
        if key in seen:
            raise BadRequest(f"Bundle.entry[{seen[key]}] and Bundle.entry[{e.index}] both "
                             f"change {key}; a transaction may change a resource only once.",
                             expression=f"Bundle.entry[{e.index}]")
        seen[key] = e.index


class _LostRace(Exception):
    """A conditional create found a resource made after `_resolve` had planned a new id for
    it (and rewritten references to that id): by a concurrent transaction, or by an earlier
    entry with the same criteria. Args: the entry and the id found."""


async def transaction(conn: AsyncConnection, bundle: Any, base: str,
                      minimal: bool = False) -> dict[str, Any]:
    """Run a transaction Bundle in `conn`'s transaction; raise on the first failing entry.

    On PostgreSQL each attempt runs in a savepoint; one whose conditional create or update
    lost a race is undone and run again from the original Bundle, then resolving to the
    winner's id.
    """
    conditional = any(isinstance(x, dict) and isinstance(x.get("request"), dict)
                      and (x["request"].get("ifNoneExist")
                           or (str(x["request"].get("method")).upper() == "PUT"
                               and "?" in str(x["request"].get("url", "")))) for x in
                      (bundle.get("entry") or [] if isinstance(bundle, dict) else []))
    if conn.dialect.name == "sqlite" or not conditional:  # no race to lose
        attempts, original = 1, None
    else:
        attempts, original = interactions.CONDITIONAL_RETRIES, jsontext.dumps(bundle)
    for _ in range(attempts):
        try:
            if original is None:
                async with pending.batched(conn):
                    return await _transaction(conn, bundle, base, minimal)
            async with conn.begin_nested(), pending.batched(conn):
                return await _transaction(conn, jsontext.loads(original), base, minimal)
        except _LostRace as lost:
            e, found = lost.args
    raise PreconditionFailed(
        f"Bundle.entry[{e.index}] ({e.method} {e.url}): its criteria matched {e.type}/{found}, "
        "created after this transaction resolved its references (by an earlier entry of it or "
        "by a concurrent request); give each resource one entry, or retry.",
        expression=f"Bundle.entry[{e.index}]")


async def _transaction(conn: AsyncConnection, bundle: Any, base: str,
                       minimal: bool) -> dict[str, Any]:
    entries = parse_entries(bundle, "transaction")
    mapping = await _resolve(conn, entries)
    _one_change_each(entries)
    await store.prefetch_current(conn, [(e.type, e.id) for e in entries
                                        if e.method == "PUT" and e.id and not e.params])
    for e in entries:
        if e.resource is not None and e.method in ("POST", "PUT"):
            try:
                _rewrite(e.resource, mapping)
            except BadRequest as exc:  # name the entry holding the unresolvable reference
                raise BadRequest(f"Bundle.entry[{e.index}] ({e.method} {e.url}): {exc}",
                                 expression=f"Bundle.entry[{e.index}].resource") from None
    responses: list[dict[str, Any] | None] = [None] * len(entries)
    for e in sorted(entries, key=lambda x: ORDER[x.method]):
        try:
            result, body = await _run_entry(conn, e, base)
        except FhirError as exc:
            for issue in exc.issues:
                object.__setattr__(issue, "diagnostics",
                                   f"Bundle.entry[{e.index}] ({e.method} {e.url}): "
                                   f"{issue.diagnostics}")
            raise
        if ((e.method == "POST" and e.if_none_exist or e.planned) and result is not None
                and result.stored is not None and result.stored.id != e.id):
            raise _LostRace(e, result.stored.id)
        responses[e.index] = _response(e, result, body, base, minimal)
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": responses}


async def batch(open_write: Callable[[], Any], bundle: Any, base: str,
                minimal: bool = False) -> dict[str, Any]:
    """Run a batch Bundle: each entry alone, in its own transaction, failures reported inline."""
    entries = parse_entries(bundle, "batch")
    responses = []
    for e in entries:
        try:
            async with open_write() as conn:
                result, body = await _run_entry(conn, e, base)
            responses.append(_response(e, result, body, base, minimal))
        except FhirError as exc:
            responses.append({"response": {"status": str(exc.status), "outcome": exc.outcome()}})
    return {"resourceType": "Bundle", "type": "batch-response", "entry": responses}


__all__ = ["Awaitable", "batch", "transaction"]
