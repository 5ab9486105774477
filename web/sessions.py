"""Server-side sessions of the pages (back-end-for-front-end).

The browser holds only a random session id in an HttpOnly cookie; the access tokens, the
PKCE verifier and the CSRF token stay here, in the `web_session` table (migration 0007), so a
worker restart or a second worker finds them. The id is stored as its SHA-256 digest, so a
copy of the table opens no session. A session ends after `idle` seconds without a request or
`absolute` seconds after sign-in, whichever comes first (OWASP Session Management Cheat
Sheet: idle and absolute timeouts).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from fhir.db import Database
from fhir.schema import metadata

web_session = sa.Table(
    "web_session",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float(precision=53), nullable=False),
    sa.Column("seen_at", sa.Float(precision=53), nullable=False),
    sa.Column("data", sa.Text, nullable=False),  # JSON: identities, tokens, csrf, pending
    sa.Index("ix_web_session_seen_at", "seen_at"),
)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(slots=True)
class Session:
    """One browser's session: `id` is what its cookie holds (never stored as such)."""

    id: str
    created_at: float
    seen_at: float
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def csrf(self) -> str:
        return str(self.data["csrf"])

    @property
    def signed_in(self) -> bool:
        return bool(self.data.get("identities"))


class Expired(Exception):
    """The session existed but timed out (idle or absolute): say so, then sign in again."""


class SessionStore:
    def __init__(self, db: Database, *, idle: float, absolute: float) -> None:
        self.db, self.idle, self.absolute = db, idle, absolute

    async def new(self, data: dict[str, Any] | None = None) -> Session:
        now = time.time()
        session = Session(secrets.token_urlsafe(32), now, now,
                          {"csrf": secrets.token_urlsafe(32), **(data or {})})
        async with self.db.write() as conn:
            # Sweep what has timed out, so the table holds live sessions only.
            await conn.execute(web_session.delete().where(
                web_session.c.seen_at < now - self.idle))
            await conn.execute(web_session.insert().values(
                id_hash=_digest(session.id), created_at=now, seen_at=now,
                data=orjson.dumps(session.data).decode()))
        return session

    async def get(self, session_id: str | None) -> Session | None:
        """The live session of a cookie value; None if there is none; Expired if it timed out
        (it is deleted then)."""
        if not session_id or len(session_id) > 100:
            return None
        now = time.time()
        key = _digest(session_id)
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(
                web_session.c.created_at, web_session.c.seen_at, web_session.c.data)
                .where(web_session.c.id_hash == key))).first()
        if row is None:
            return None
        created, seen, data = row
        if now - seen > self.idle or now - created > self.absolute:
            await self.delete(session_id)
            raise Expired("idle" if now - seen > self.idle else "absolute")
        session = Session(session_id, created, seen, orjson.loads(data))
        if now - seen > 5:  # touch at most every few seconds: a page's requests cost no write
            async with self.db.write() as conn:
                await conn.execute(web_session.update().where(web_session.c.id_hash == key)
                                   .values(seen_at=now))
            session.seen_at = now
        return session

    async def save(self, session: Session) -> None:
        async with self.db.write() as conn:
            await conn.execute(web_session.update().where(
                web_session.c.id_hash == _digest(session.id)).values(
                data=orjson.dumps(session.data).decode(), seen_at=time.time()))

    async def rotate(self, session: Session) -> Session:
        """The same session under a new id and CSRF token (after sign-in: no fixation)."""
        await self.delete(session.id)
        data = {**session.data, "csrf": secrets.token_urlsafe(32)}
        fresh = await self.new(data)
        return fresh

    async def delete(self, session_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(web_session.delete().where(
                web_session.c.id_hash == _digest(session_id)))
