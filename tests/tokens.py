"""Access tokens for tests, signed by the server's own keys, as its token endpoint signs them.

The OAuth flows that issue tokens are tested end to end in tests/api/test_oauth_*.py; other
tests take a token straight from the same signer (`consent.tokens.issue_access_token`) so
they need not run a sign-in each. The server verifies these exactly as any other.
"""

from __future__ import annotations

from typing import Any

from consent.grants import operator_token
from consent.keys import KeyRing
from consent.tokens import Grant, issue_access_token
from fhir.db import Database

ISSUER = "http://test"
FHIR_BASE = "http://test/fhir"
# The suite's default caller: a backend service of the network with every system scope
# (the network's own loader), which the policy lets see and write every record.
SYSTEM_SCOPE = "system/*.cruds"
TEST_CLIENT = "carenet-test-suite"


async def mint(app: Any, *, sub: str = TEST_CLIENT, scope: str = SYSTEM_SCOPE,
               fhir_user: str | None = None, patient: str | None = None,
               client_id: str = TEST_CLIENT, lifetime: int = 3600,
               issuer: str = ISSUER, audience: str = FHIR_BASE) -> str:
    """A signed access token for `sub` with `scope` from `app`'s signing keys."""
    state = app.state
    if getattr(state, "oauth_keys", None) is None:
        state.oauth_keys = KeyRing()
    keys = await state.oauth_keys.get(state.db)
    grant = Grant(subject=sub, scope=scope, fhir_user=fhir_user, patient=patient)
    return issue_access_token(keys, issuer=issuer, audience=audience, client_id=client_id,
                              grant=grant, lifetime=lifetime, fhir_base=FHIR_BASE).token


async def mint_for_server(database_url: str, base: str) -> str:
    """The operator's token for a server running in another process on `database_url`
    (`consent.grants.operator_token`, as `python -m api seed` takes it)."""
    db = Database(database_url, pool_size=1)
    try:
        return await operator_token(db, fhir_base=base, client_id=TEST_CLIENT)
    finally:
        await db.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
