from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.web.record import build


@pytest.fixture
def demo_login(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo sign-in page (on by default for SQLite only)."""
    monkeypatch.setattr(app.state.settings, "demo_login", True)


@pytest.fixture(scope="session")
async def people(client: httpx.AsyncClient) -> SimpleNamespace:
    return await build(client)
