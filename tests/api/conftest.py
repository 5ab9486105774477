"""Fixtures of the authorisation server tests (tests/api/test_oauth_*.py).

A server of its own per backend, with demo sign-in and open registration on (PostgreSQL
defaults to off), two trusted identity providers, and fetched key sets served from memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import Settings
from consent.tokens import JwksCache
from consent.trust import TrustedIssuer
from tests.api import oauth_support as o
from tests.clients import audited_client
from tests.tokens import bearer, mint


@pytest.fixture(scope="session")
def served_jwks() -> dict[str, dict[str, Any]]:
    """What the fake network answers for a key set URL (tests add clients' sets)."""
    return {o.STAFF_IDP_JWKS_URL: o.public_jwks(o.STAFF_IDP_KEY)}


@pytest.fixture(scope="session")
async def oauth_app(database_url: str,
                    served_jwks: dict[str, dict[str, Any]]) -> AsyncIterator[Any]:
    settings = Settings(database_url=database_url, demo_login=True, open_registration=True,
                        trusted_issuers=[
                            TrustedIssuer(issuer=o.PATIENT_IDP, audience=o.PATIENT_IDP_AUDIENCE,
                                          jwks=o.public_jwks(o.PATIENT_IDP_KEY)),
                            TrustedIssuer(issuer=o.STAFF_IDP, audience="carenet",
                                          kind="practitioner", claim="sds_user_id",
                                          system=o.SDS_USER_ID, jwks_url=o.STAFF_IDP_JWKS_URL),
                        ])
    app = create_app(settings)

    async def fetch(url: str) -> dict[str, Any]:
        if url not in served_jwks:
            raise httpx.ConnectError(f"no route to {url}")
        return served_jwks[url]

    async with app.router.lifespan_context(app):
        app.state.jwks_cache = JwksCache(fetch=fetch, ttl=0)
        yield app


@pytest.fixture(scope="session")
async def oauth(oauth_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with audited_client(oauth_app, base_url="http://test") as c:
        yield c


@pytest.fixture(scope="session")
async def people(oauth: httpx.AsyncClient, oauth_app: Any) -> SimpleNamespace:
    """Who signs in: a GP with a PractitionerRole, a Practitioner without one, two patients
    (bob registered at the GP's practice, alice nowhere)."""
    loader = bearer(await mint(oauth_app))  # the network's backend service writes them

    async def create(body: dict[str, Any]) -> str:
        r = await oauth.post(f"/fhir/{body['resourceType']}", json=body, headers=loader)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    sds = o.nhs_number()  # any unique digits will do
    org = await create({"resourceType": "Organization", "name": "Test Surgery"})
    gp = await create({"resourceType": "Practitioner", "name": [{"family": "Gee",
                                                                  "prefix": ["Dr"]}],
                       "identifier": [{"system": o.SDS_USER_ID, "value": sds}]})
    role = await create({"resourceType": "PractitionerRole", "practitioner": {
        "reference": f"Practitioner/{gp}"}, "organization": {"reference": f"Organization/{org}"},
        "code": [{"coding": [{"system": "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode",
                              "code": "R0260"}], "text": "General practitioner"}]})
    roleless = await create({"resourceType": "Practitioner", "name": [{"family": "Nobody"}]})
    nhs = o.nhs_number()
    alice = await create({"resourceType": "Patient", "name": [{"family": "Able"}],
                          "identifier": [{"system": o.NHS, "value": nhs}]})
    bob = await create({"resourceType": "Patient", "name": [{"family": "Baker"}],
                        "generalPractitioner": [{"reference": f"Organization/{org}"}]})
    visit = await create({"resourceType": "Encounter", "status": "in-progress",
                          "class": {"code": "AMB"}, "subject": {"reference": f"Patient/{alice}"}})
    return SimpleNamespace(org=org, gp=f"Practitioner/{gp}", gp_id=gp, gp_sds=sds, role=role,
                           roleless=f"Practitioner/{roleless}", alice=alice, alice_nhs=nhs,
                           bob=bob, visit=visit)
