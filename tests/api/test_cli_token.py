"""`python -m api token`: a token for trying the API, signed with the server's own keys."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from api.__main__ import _token
from api.app import create_app
from api.settings import Settings
from tests.clients import audited_client

SDS = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"


def args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"user": None, "scope": None, "base": None, "hours": 1.0, **kw})


async def test_the_cli_token_signs_in_and_a_user_only_as_who_they_are(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'cli.db'}",
                        base_url="http://test/fhir")
    # As an operator would: the service's token first (the command migrates and signs), then
    # the server, then a user's token for someone the server knows.
    service = await _token(settings, args())
    app = create_app(settings)
    async with app.router.lifespan_context(app), audited_client(
            app, base_url="http://test/fhir") as c:
        made = await c.put("/Patient/cli-1", json={"resourceType": "Patient", "id": "cli-1"},
                           headers={"Authorization": f"Bearer {service}"})
        assert made.status_code == 201, made.text
        patient = await _token(settings, args(user="Patient/cli-1"))
        own = await c.get("/Patient/cli-1", headers={"Authorization": f"Bearer {patient}"})
        assert own.status_code == 200, own.text


async def test_the_cli_refuses_a_token_for_who_could_not_use_it(tmp_path: Path) -> None:
    """Unknown, inactive, or staff without a role: no token, and a message saying why (the
    server would answer 401 to every request with it)."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'cli.db'}",
                        base_url="http://test/fhir")
    service = {"Authorization": f"Bearer {await _token(settings, args())}"}
    app = create_app(settings)
    async with app.router.lifespan_context(app), audited_client(
            app, base_url="http://test/fhir", headers=service) as c:
        for body in ({"resourceType": "Patient", "id": "gone", "active": False},
                     {"resourceType": "Practitioner", "id": "roleless"},
                     {"resourceType": "RelatedPerson", "id": "ex-carer", "active": False,
                      "patient": {"reference": "Patient/gone"}}):
            assert (await c.put(f"/{body['resourceType']}/{body['id']}",
                                json=body)).status_code == 201
    for user, why in (("Patient/nobody", "not in this server's database"),
                      ("Practitioner/nobody", "not in this server's database"),
                      ("Patient/gone", "inactive"), ("RelatedPerson/ex-carer", "inactive"),
                      ("Practitioner/roleless", "no PractitionerRole")):
        with pytest.raises(SystemExit) as refused:
            await _token(settings, args(user=user))
        assert why in str(refused.value.code) and user in str(refused.value.code), user


@pytest.mark.parametrize(("minted_for", "asked_at", "configured", "status"), [
    ("http://127.0.0.1:8000/fhir", "http://localhost:8000", None, 200),
    ("http://localhost:8000/fhir", "http://127.0.0.1:8000", None, 200),
    ("http://127.0.0.1:8000/fhir", "http://127.0.0.1:8000", None, 200),
    ("http://127.0.0.1:8001/fhir", "http://localhost:8000", None, 401),  # another server
    ("http://127.0.0.1:8000/other", "http://localhost:8000", None, 401),
    ("http://127.0.0.1:8000/fhir", "http://evil.example:8000", None, 401),
    # a configured base (production) takes only itself
    ("http://127.0.0.1:8000/fhir", "http://localhost:8000", "http://localhost:8000/fhir", 401),
    ("http://localhost:8000/fhir", "http://localhost:8000", "http://localhost:8000/fhir", 200),
])
async def test_a_token_for_one_loopback_name_works_on_the_other(
        tmp_path: Path, minted_for: str, asked_at: str, configured: str | None,
        status: int) -> None:
    """The README's examples use localhost; the command mints for 127.0.0.1 by default."""
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    token = await _token(Settings(database_url=database), args(base=minted_for))
    settings: dict[str, Any] = {"database_url": database}
    if configured:
        settings["base_url"] = configured
    app = create_app(Settings(**settings))
    async with app.router.lifespan_context(app), audited_client(
            app, base_url=asked_at) as c:
        r = await c.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == status, r.text
