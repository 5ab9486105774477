"""The pages' FHIR client: the public FHIR API with the signed-in person's token, nothing else.

In process: an httpx client on the app itself (ASGITransport), not over loopback. The request
still passes through every layer a remote client's would (authentication, the access policy,
the audit), so the pages can never see more than the person may; and it needs no known port
or listening socket (the server may sit behind a proxy, on any port, in a test without one),
costs no TCP round trip, and cannot be sent anywhere but this server. The URL carries the
origin the browser used, so the token's `aud` (that origin's FHIR base) matches.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

FHIR_JSON = "application/fhir+json"


class ApiError(Exception):
    """The FHIR API refused: its status and the OperationOutcome's words for a person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def transport_client(app: Any) -> httpx.AsyncClient:
    """One in-process client per app (kept on app.state)."""
    client = getattr(app.state, "web_http", None)
    if client is None:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=30)
        app.state.web_http = client
    return client


class Fhir:
    """FHIR interactions for one signed-in person (`token`) at `origin` (scheme://host)."""

    def __init__(self, http: httpx.AsyncClient, origin: str, token: str,
                 fhir_base: str | None = None) -> None:
        self.http = http
        self.base = (fhir_base or f"{origin}/fhir").rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON}

    async def _send(self, method: str, path: str, *, params: Any = None,
                    body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = dict(self.headers)
        content = None
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
            content = orjson.dumps(body)
        r = await self.http.request(method, f"{self.base}/{path}", params=params,
                                    headers=headers, content=content)
        if r.status_code >= 400:
            raise ApiError(r.status_code, _words(r))
        return r.json() if r.content else {}

    async def read(self, type_: str, id_: str) -> dict[str, Any]:
        return await self._send("GET", f"{type_}/{id_}")

    async def search(self, type_: str, params: list[tuple[str, str]] | dict[str, str]
                     ) -> list[dict[str, Any]]:
        """The matches of a search's first page (includes are dropped)."""
        bundle = await self._send("GET", type_, params=params)
        return [e["resource"] for e in bundle.get("entry", ())
                if (e.get("search") or {}).get("mode", "match") == "match"]

    async def search_all(self, type_: str, params: list[tuple[str, str]] | dict[str, str]
                         ) -> list[dict[str, Any]]:
        """Matches and includes of a search's first page."""
        bundle = await self._send("GET", type_, params=params)
        return [e["resource"] for e in bundle.get("entry", ())]

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._send("POST", body["resourceType"], body=body)

    async def operation(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._send("POST", path, body=body)


def _words(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return f"The record answered {r.status_code}."
    issues = body.get("issue") if isinstance(body, dict) else None
    words = [i.get("diagnostics") or (i.get("details") or {}).get("text") or ""
             for i in issues or ()]
    return " ".join(w for w in words if w) or f"The record answered {r.status_code}."
