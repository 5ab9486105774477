"""Who can sign in: staff are Practitioners with a PractitionerRole, patients are Patients.

Both live in the FHIR store; this module finds them (by reference, or by an identifier an
external identity provider vouches for) and lists some for the demo sign-in page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from consent.trust import NHS_NUMBER  # noqa: F401  (re-exported)
from fhir import store
from fhir.errors import FhirError
from fhir.schema import resource
from fhir.search import execute
from fhir.search.params import parse

USER_TYPES = {"Patient": "patient", "Practitioner": "practitioner", "RelatedPerson": "carer"}
_TYPE_OF = {kind: type_ for type_, kind in USER_TYPES.items()}


@dataclass(frozen=True, slots=True)
class Role:
    """One PractitionerRole: where a member of staff works and as what."""

    id: str
    organization: str | None  # "Organization/<id>"
    code: str | None  # SDS job role code
    text: str | None


@dataclass(frozen=True, slots=True)
class User:
    kind: Literal["patient", "practitioner", "carer"]
    id: str
    display: str
    roles: tuple[Role, ...] = ()

    @property
    def reference(self) -> str:
        return f"{_TYPE_OF[self.kind]}/{self.id}"


def split_reference(reference: str) -> tuple[str, str] | None:
    """("Patient", "123") from "Patient/123" (or an absolute URL ending so)."""
    parts = reference.rstrip("/").split("/")
    if len(parts) < 2 or not parts[-1] or not parts[-2]:
        return None
    return parts[-2], parts[-1]


async def exists(conn: AsyncConnection, type_: str, id_: str) -> dict[str, Any] | None:
    """The current content of Type/id, or None if it is unknown or deleted."""
    if not id_ or len(id_) > 64:
        return None
    stored = await store.read_current(conn, type_, id_)
    if stored is None or stored.deleted or stored.content is None:
        return None
    return orjson.loads(stored.content)


async def lookup(conn: AsyncConnection, reference: str) -> User | None:
    """The user `reference` names ("Patient/1", "Practitioner/2"), if they may sign in."""
    parts = split_reference(reference)
    if parts is None or parts[0] not in USER_TYPES:
        return None
    type_, id_ = parts
    body = await exists(conn, type_, id_)
    if body is None or body.get("active") is False:
        return None
    if type_ == "Patient":
        return User("patient", id_, _name(body) or reference)
    if type_ == "RelatedPerson":  # a carer: what they see is the patient's proxy grant
        return User("carer", id_, _name(body) or reference)
    roles = await practitioner_roles(conn, id_)
    if not roles:  # staff without a role belong to no organisation: nothing to act as
        return None
    return User("practitioner", id_, _name(body) or reference, roles)


async def practitioner_roles(conn: AsyncConnection, practitioner_id: str) -> tuple[Role, ...]:
    query = parse("PractitionerRole", [("practitioner", f"Practitioner/{practitioner_id}"),
                                       ("_count", "50")])
    page = await execute.run(conn, query)
    roles = [_role(orjson.loads(row[3])) for row in page.matches]
    return tuple(r for r in roles if r is not None)


async def find_by_identifier(conn: AsyncConnection, type_: str, system: str,
                             value: str) -> list[str]:
    """Ids of the current resources of `type_` with identifier system|value (at most two)."""
    if not value or "|" in value or "," in value or "\\" in value or len(value) > 255:
        return []
    try:
        return await execute.match_ids(conn, type_, [("identifier", f"{system}|{value}")])
    except FhirError:
        return []


async def demo_users(conn: AsyncConnection, limit: int = 40) -> tuple[list[User], list[User]]:
    """Some staff (with their roles) and patients to choose from on the demo sign-in page."""
    staff_rows = await _first(conn, "Practitioner", limit)
    role_rows = await _first(conn, "PractitionerRole", 20 * limit)
    roles: dict[str, list[Role]] = {}
    for _id, body in role_rows:
        role = _role(body)
        ref = (body.get("practitioner") or {}).get("reference")
        if role is not None and isinstance(ref, str):
            roles.setdefault(ref.rsplit("/", 1)[-1], []).append(role)
    staff = [User("practitioner", id_, _name(body) or id_, tuple(roles[id_]))
             for id_, body in staff_rows if roles.get(id_)]
    patients = [User("patient", id_, _name(body) or id_)
                for id_, body in await _first(conn, "Patient", limit)]
    return staff, patients


async def _first(conn: AsyncConnection, type_: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
    rows = (await conn.execute(
        sa.select(resource.c.id, resource.c.content)
        .where(resource.c.type == type_, resource.c.deleted.is_(False))
        .order_by(resource.c.rid).limit(limit))).all()
    return [(id_, orjson.loads(content)) for id_, content in rows if content]


def _role(body: dict[str, Any]) -> Role | None:
    if body.get("active") is False or not body.get("id"):
        return None
    org = (body.get("organization") or {}).get("reference")
    code = text = None
    for concept in body.get("code") or ():
        text = text or concept.get("text")
        for coding in concept.get("coding") or ():
            code = code or coding.get("code")
            text = text or coding.get("display")
    return Role(body["id"], org if isinstance(org, str) else None, code, text)


def _name(body: dict[str, Any]) -> str:
    for name in body.get("name") or ():
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("prefix") or ()), *(name.get("given") or ()), name.get("family")]
        shown = " ".join(str(p) for p in parts if p)
        if shown:
            return shown
    return ""
