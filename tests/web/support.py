"""Signing in to the pages through the real authorisation flow, with an ASGI client."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from api.oauth.page import CARRIED

ORIGIN = "http://127.0.0.1"  # http is allowed in redirect URIs on the loopback host only


def pages_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN)


async def sign_in(client: httpx.AsyncClient, user: str, patient: str | None = None) -> None:
    """Sign in on the demo page as `user` (and for a carer, pick `patient`)."""
    r = await client.get("/portal/sign-in")
    assert r.status_code == 303, r.text
    authorize = r.headers["location"]
    assert authorize.startswith(f"{ORIGIN}/oauth/authorize?")
    params = dict(parse_qsl(urlsplit(authorize).query))
    assert params["code_challenge_method"] == "S256"
    form = {k: v for k, v in params.items() if k in CARRIED}
    form.update(user=user, decision="approve")
    if patient:
        form["patient"] = patient
    r = await client.post("/oauth/authorize", data=form)
    assert r.status_code in (302, 303), r.text
    r = await client.get(r.headers["location"])
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/portal/"


def csrf_of(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]
