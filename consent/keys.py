"""The server's signing keys: made on first use, kept in the database, published as a JWKS.

The newest key signs; every stored key verifies, so a key added by another worker (or a
rotation) is picked up by reloading when a token names a kid not yet seen.
RS256: the OpenID Connect default, and the cheapest of the JOSE algorithms to verify.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy.ext.asyncio import AsyncConnection

from consent.oauth_schema import oauth_signing_key
from fhir.db import Database

ALG = "RS256"


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """The keys as loaded: `current` signs, `verify` holds the public halves of all."""

    current: RSAKey
    verify: KeySet

    def jwks(self) -> dict[str, Any]:
        """The public JWKS (https://www.rfc-editor.org/rfc/rfc7517#section-5)."""
        return dict(self.verify.as_dict(private=False))

    def knows(self, kid: str | None) -> bool:
        return any(k.kid == kid for k in self.verify.keys)


def new_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"alg": ALG, "use": "sig"}, private=True,
                               auto_kid=True)


async def load(conn: AsyncConnection) -> SigningKeys | None:
    rows = (await conn.execute(
        sa.select(oauth_signing_key.c.jwk).order_by(oauth_signing_key.c.created_at,
                                                     oauth_signing_key.c.kid))).scalars().all()
    if not rows:
        return None
    keys = [RSAKey.import_key(orjson.loads(text)) for text in rows]
    public = KeySet([RSAKey.import_key(k.as_dict(private=False)) for k in keys])
    return SigningKeys(current=keys[-1], verify=public)


async def create(conn: AsyncConnection) -> None:
    """Add a fresh key (it becomes the one that signs)."""
    key = await asyncio.to_thread(new_key)  # RSA generation takes tens of milliseconds
    await conn.execute(oauth_signing_key.insert().values(
        kid=key.kid, alg=ALG, jwk=orjson.dumps(key.as_dict(private=True)).decode(),
        created_at=time.time()))


class KeyRing:
    """The signing keys of one process, loaded (or made) on first use and cached.

    A token naming a kid the cache lacks reloads the keys, at most once every few seconds
    (another worker may have made or rotated a key).
    """

    RELOAD_AFTER = 5.0

    def __init__(self) -> None:
        self._keys: SigningKeys | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self, db: Database, kid: str | None = None) -> SigningKeys:
        keys = self._keys
        if keys is not None and (kid is None or keys.knows(kid)
                                 or time.monotonic() - self._loaded_at < self.RELOAD_AFTER):
            return keys
        async with self._lock:
            if self._keys is not keys and self._keys is not None:
                return self._keys
            async with db.read() as conn:
                loaded = await load(conn)
            if loaded is None:
                async with db.write() as conn:
                    if await load(conn) is None:
                        await create(conn)
                async with db.read() as conn:
                    loaded = await load(conn)
            assert loaded is not None
            self._keys, self._loaded_at = loaded, time.monotonic()
            return loaded
