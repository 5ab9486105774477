"""`python -m api token`: a token for trying the API, signed with the server's own keys."""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx

from api.__main__ import _token
from api.app import create_app
from api.settings import Settings
from tests.clients import audited_client


async def test_the_cli_token_signs_in_and_a_user_only_as_who_they_are(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'cli.db'}",
                        base_url="http://test/fhir")

    def args(**kw: object) -> argparse.Namespace:
        return argparse.Namespace(**{"user": None, "scope": None, "base": None, "hours": 1.0,
                                     **kw})

    # As an operator would: tokens first (the command migrates and signs), then the server.
    service = await _token(settings, args())
    patient = await _token(settings, args(user="Patient/cli-1"))
    ghost = await _token(settings, args(user="Patient/nobody"))
    app = create_app(settings)
    async with app.router.lifespan_context(app), audited_client(
            app, base_url="http://test/fhir") as c:
        made = await c.put("/Patient/cli-1", json={"resourceType": "Patient", "id": "cli-1"},
                           headers={"Authorization": f"Bearer {service}"})
        assert made.status_code == 201, made.text
        own = await c.get("/Patient/cli-1", headers={"Authorization": f"Bearer {patient}"})
        assert own.status_code == 200, own.text
        refused = await c.get("/Patient/cli-1", headers={"Authorization": f"Bearer {ghost}"})
        assert refused.status_code == 401  # no such user: the token names nobody
        assert isinstance(refused, httpx.Response)
