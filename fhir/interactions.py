"""The FHIR RESTful interactions on one resource type (https://hl7.org/fhir/R4/http.html).

Each takes an open connection (the caller owns the transaction) and returns a `Result`
or raises a `FhirError`. Conditional create is decided by a unique key in the database:
of many concurrent identical creates one inserts the key, the others wait for it and then
find the resource it made.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import jsonpatch
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from fhir import guard, jsontext, pending, search, store
from fhir.errors import BadRequest, Gone, NotFound, PreconditionFailed, Unprocessable
from fhir.schema import conditional_key, resource
from fhir.schema import history as history_table
from fhir.store import Stored
from fhir.validation import check_resource
from fhir.visibility import Visibility, conditions

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
CONDITIONAL_RETRIES = 5


@dataclass(slots=True)
class Result:
    """What an interaction did: the HTTP-neutral status and the version it produced or found."""

    status: int
    stored: Stored | None = None
    message: str | None = None


def new_id() -> str:
    return str(uuid.uuid4())


def check_id(id_: str) -> str:
    if not ID_PATTERN.match(id_):
        raise BadRequest(f"'{id_}' is not a valid resource id (1-64 of A-Z a-z 0-9 - .).")
    return id_


@asynccontextmanager
async def _savepoint(conn: AsyncConnection) -> AsyncIterator[None]:
    """A savepoint on PostgreSQL; SQLite's single writer needs none (and pysqlite's are fragile).

    Writes queued for the transaction's batch inside it are dropped if it rolls back.
    """
    async with pending.undo_on_error():
        if conn.dialect.name == "sqlite":
            yield
            return
        async with conn.begin_nested():
            yield


async def read(conn: AsyncConnection, type_: str, id_: str) -> Stored:
    stored = await store.read_current(conn, type_, check_id(id_))
    if stored is None:
        raise NotFound(f"{type_}/{id_} is not known.")
    await guard.check_read(conn, "read", stored)
    if stored.deleted:
        raise Gone(f"{type_}/{id_} was deleted (version {stored.version}).")
    return stored


async def read_any(conn: AsyncConnection, type_: str, id_: str) -> Stored:
    """The current row of Type/id, deleted or not (a history's subject); 404 if unknown or
    hidden from the caller."""
    stored = await store.read_current(conn, type_, check_id(id_))
    if stored is None:
        raise NotFound(f"{type_}/{id_} is not known.")
    await guard.check_read(conn, "history", stored)
    return stored


async def vread(conn: AsyncConnection, type_: str, id_: str, version: str) -> Stored:
    if not (version.isascii() and version.isdigit()):
        raise BadRequest(f"'{version}' is not a version id; versions are whole numbers.")
    if int(version) >= 2**31:  # beyond the version column: no such version
        raise NotFound(f"{type_}/{id_} has no version {version}.")
    stored = await store.read_version(conn, type_, check_id(id_), int(version))
    if stored is None:
        raise NotFound(f"{type_}/{id_} has no version {version}.")
    await guard.check_read(conn, "vread", stored)
    if stored.deleted:
        raise Gone(f"Version {version} of {type_}/{id_} is its deletion.")
    return stored


async def _claim_key(conn: AsyncConnection, type_: str, key: str, rid: int) -> None:
    await conn.execute(conditional_key.insert().values(type=type_, query=key, rid=rid))


def criteria_key(params: list[tuple[str, str]]) -> str:
    """The per-criteria lock of conditional create and update: the normalised query."""
    return search.canonical_query(params)


async def _conditional(conn: AsyncConnection, type_: str, params: list[tuple[str, str]],
                       what: str, on_match: Callable[[Stored], Awaitable[Result]],
                       on_none: Callable[[], Awaitable[Result]]) -> Result:
    """Conditional create and update: `on_match` with the single match, or `on_none` (which
    stores a new resource) while holding the criteria's key.

    The key is a row of `conditional_key` under a unique constraint: of many concurrent
    writers that found no match, one inserts it; the others wait on its transaction, fail,
    and on their next turn find the resource it made. A key whose resource no longer matches
    (changed since) is stale and released.
    """
    key = criteria_key(params)
    for _ in range(CONDITIONAL_RETRIES):
        found = await _single_match(conn, type_, params, what)
        if found is not None:
            return await on_match(found)
        if conn.dialect.name == "sqlite":
            # No savepoint on SQLite, so a failed key insert would leave this resource stored
            # behind it. Its one writer at a time has just seen no match: a key here is stale.
            await conn.execute(conditional_key.delete().where(
                conditional_key.c.type == type_, conditional_key.c.query == key))
        try:
            async with _savepoint(conn):
                result = await on_none()
                assert result.stored is not None
                await _claim_key(conn, type_, key, result.stored.rid)
            return result
        except IntegrityError:
            # Another writer took the key. If what it made still matches, that is the answer
            # (next loop); if not, the key is stale (its resource changed), so release it.
            # Read the holder before matching, and delete only that holder's key: a key a
            # concurrent writer has just committed for a matching resource must stay.
            holder = (await conn.execute(sa.select(conditional_key.c.rid).where(
                conditional_key.c.type == type_, conditional_key.c.query == key))).scalar()
            if holder is None or await search.match_ids(conn, type_, params, limit=1):
                continue
            await conn.execute(conditional_key.delete().where(
                conditional_key.c.type == type_, conditional_key.c.query == key,
                conditional_key.c.rid == holder))
    raise PreconditionFailed(f"{what} could not settle under concurrent writes; retry the "
                             "request.")


async def create(conn: AsyncConnection, type_: str, body: Any,
                 if_none_exist: list[tuple[str, str]] | None = None, *,
                 id_: str | None = None) -> Result:
    """POST [type]: a new resource with a server-assigned id; conditional with If-None-Exist.

    `id_` is an id the server chose beforehand (a transaction resolving urn:uuid references).
    """
    body = check_resource(body, expected_type=type_)
    if not if_none_exist:
        body["id"] = id_ or new_id()
        return Result(201, await store.insert(conn, body, method="POST"))

    async def exists(found: Stored) -> Result:
        return Result(200, found, "A matching resource exists; nothing was created.")

    async def insert() -> Result:
        body["id"] = id_ or new_id()
        return Result(201, await store.insert(conn, body, method="POST"))

    return await _conditional(conn, type_, if_none_exist, "The conditional create", exists,
                              insert)


async def _single_match(conn: AsyncConnection, type_: str, params: list[tuple[str, str]],
                        what: str) -> Stored | None:
    ids = await search.match_ids(conn, type_, params, limit=2)
    if len(ids) > 1:
        raise PreconditionFailed(f"{what} matches more than one {type_}; make the criteria "
                                 "more selective.")
    return await store.read_current(conn, type_, ids[0], for_update=True) if ids else None


async def update(conn: AsyncConnection, type_: str, id_: str, body: Any,
                 if_match: int | None = None, *, checked: bool = False) -> Result:
    """PUT [type]/[id]: a new version, or create-on-update with the client's id."""
    check_id(id_)
    if not checked:
        body = check_resource(body, expected_type=type_)
    if body.get("id") != id_:
        raise BadRequest(f"The resource id '{body.get('id')}' does not match the URL id "
                         f"'{id_}'; a PUT body must carry the id of the URL.", expression="id")
    current = await store.read_current(conn, type_, id_, for_update=if_match is None)
    await guard.check_target(conn, "update", type_, id_, current)
    if current is None:
        if if_match is not None:
            raise PreconditionFailed(f"If-Match names version {if_match} but {type_}/{id_} "
                                     "does not exist.")
        # ON CONFLICT DO NOTHING, not a savepoint: a concurrent create of the same id makes
        # this insert a no-op, and the update below then applies to what is there now.
        created = await store.insert(conn, body, method="PUT", if_absent=True)
        if created is not None:
            return Result(201, created)
        current = await store.read_current(conn, type_, id_, for_update=True)
        assert current is not None
    return await _replace(conn, current, body, if_match, "PUT")


async def _replace(conn: AsyncConnection, current: Stored, body: dict[str, Any],
                   if_match: int | None, method: str) -> Result:
    if if_match is not None and current.version != if_match:
        raise PreconditionFailed(f"{current.type}/{current.id} is at version {current.version}, "
                                 f"not {if_match} (If-Match); read it again and retry.")
    was_deleted = current.deleted
    stored = await store.replace(conn, current, body, method=method)
    return Result(201 if was_deleted else 200, stored)


async def conditional_update(conn: AsyncConnection, type_: str, params: list[tuple[str, str]],
                             body: Any, if_match: int | None = None, *,
                             id_: str | None = None) -> Result:
    """PUT [type]?criteria: update the one match, or create when none matches.

    Creating takes the criteria's key as conditional create does, so of many concurrent
    identical requests one creates (201) and the others update what it made (200).
    `id_`: the id a transaction planned for the resource should it be created.
    """
    body = check_resource(body, expected_type=type_)
    own_id = body.get("id")

    async def replace(found: Stored) -> Result:
        if own_id not in (None, found.id):
            raise BadRequest(f"The body's id '{own_id}' is not the id of the matching "
                             f"resource ({found.id}).", expression="id")
        body["id"] = found.id
        return await _replace(conn, found, body, if_match, "PUT")

    async def insert() -> Result:
        if own_id:
            return await update(conn, type_, own_id, body, if_match, checked=True)
        body["id"] = id_ or new_id()
        return Result(201, await store.insert(conn, body, method="PUT"))

    return await _conditional(conn, type_, params, "The conditional update", replace, insert)


async def patch(conn: AsyncConnection, type_: str, id_: str, operations: Any,
                if_match: int | None = None) -> Result:
    """PATCH [type]/[id] with a JSON Patch document (RFC 6902)."""
    if not isinstance(operations, list):
        raise BadRequest("A JSON Patch body is an array of operations.")
    current = await store.read_current(conn, type_, check_id(id_), for_update=if_match is None)
    if current is None:
        raise NotFound(f"{type_}/{id_} is not known.")
    await guard.check_target(conn, "patch", type_, id_, current)  # before its content counts
    if current.deleted or current.content is None:
        raise Gone(f"{type_}/{id_} was deleted; it cannot be patched.")
    try:
        body = jsonpatch.apply_patch(jsontext.loads(current.content), operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError,
            KeyError, ValueError) as exc:
        raise Unprocessable(f"The JSON Patch could not be applied: {exc}.") from None
    if not isinstance(body, dict) or body.get("resourceType") != type_ or body.get("id") != id_:
        raise Unprocessable("A patch may not change the resourceType or id.")
    check_resource(body, expected_type=type_)
    return await _replace(conn, current, body, if_match, "PATCH")


async def conditional_patch(conn: AsyncConnection, type_: str, params: list[tuple[str, str]],
                            operations: Any, if_match: int | None = None) -> Result:
    """PATCH [type]?criteria: patch the single match (https://hl7.org/fhir/R4/http.html#patch);
    none is 404, several 412. The match is locked, so concurrent patches apply one by one."""
    found = await _single_match(conn, type_, params, "The conditional patch")
    if found is None:
        raise NotFound(f"No {type_} matches the conditional patch's criteria.")
    return await patch(conn, type_, found.id, operations, if_match)


async def delete(conn: AsyncConnection, type_: str, id_: str,
                 if_match: int | None = None) -> Result:
    """DELETE [type]/[id]: later reads answer 410; the history keeps every version."""
    current = await store.read_current(conn, type_, check_id(id_), for_update=True)
    if current is None:
        raise NotFound(f"{type_}/{id_} is not known.")
    await guard.check_target(conn, "delete", type_, id_, current)  # before its version counts
    if if_match is not None and current.version != if_match:
        raise PreconditionFailed(f"{type_}/{id_} is at version {current.version}, not {if_match}.")
    if current.deleted:
        return Result(200, current, f"{type_}/{id_} was already deleted.")
    stored = await store.mark_deleted(conn, current)
    return Result(200, stored, f"Deleted {type_}/{id_}.")


async def conditional_delete(conn: AsyncConnection, type_: str,
                             params: list[tuple[str, str]]) -> Result:
    """DELETE [type]?criteria: deletes the single match (none: nothing to do)."""
    found = await _single_match(conn, type_, params, "The conditional delete")
    if found is None:
        return Result(200, None, f"No {type_} matched; nothing was deleted.")
    return await delete(conn, type_, found.id)


async def history(conn: AsyncConnection, *, type_: str | None, id_: str | None,
                  since: float | None, count: int, before: int | None,
                  visible: Visibility | None = None) -> tuple[list[Any], int | None]:
    """Versions newest first: [(hid, type, id, version, last_updated, method, deleted, content)].

    `visible`: only versions of resources whose current row the caller may see (what a
    version shows is judged as the resource stands now); an instance it may not see is
    NotFound, as an unknown one."""
    h = history_table
    await pending.settle(conn)
    stmt = sa.select(h.c.hid, h.c.type, h.c.id, h.c.version, h.c.last_updated, h.c.method,
                     h.c.deleted, h.c.content)
    if id_ is not None and type_ is not None:
        rid = (await conn.execute(sa.select(resource.c.rid).where(
            resource.c.type == type_, resource.c.id == check_id(id_),
            *conditions(visible, resource, type_, read=True)))).scalar_one_or_none()
        if rid is None:
            raise NotFound(f"{type_}/{id_} is not known.")
        stmt = stmt.where(h.c.rid == rid)
    else:
        if type_ is not None:
            stmt = stmt.where(h.c.type == type_)
        if visible is not None:
            current = resource.alias()
            stmt = stmt.join_from(h, current, current.c.rid == h.c.rid).where(
                *conditions(visible, current, type_, read=True))
    if since is not None:
        stmt = stmt.where(h.c.last_updated >= since)
    if before is not None:
        stmt = stmt.where(h.c.hid < before)
    rows = list((await conn.execute(stmt.order_by(h.c.hid.desc()).limit(count + 1))).all())
    after = None
    if len(rows) > count:
        rows = rows[:count]
        after = rows[-1][0] if rows else None  # _count=0: no page to follow
    return rows, after
