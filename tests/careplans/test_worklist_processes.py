"""Concurrent builds in separate processes on PostgreSQL (`python -m careplans worklist build`
three times at once, on a database of this test's own): one item per key, one Task each."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from api.app import create_app
from api.settings import Settings
from careplans.worklist.models import WorklistItem
from fhir.schema import resource
from tests.careplans import worklist_support as w
from tests.conftest import _reset_postgres
from tests.tokens import bearer, mint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def own_database(pg_url: str) -> str:
    url = pg_url.rsplit("/", 1)[0] + "/" + pg_url.rsplit("/", 1)[1] + "_processes"
    await _reset_postgres(url)
    return url


async def test_builds_in_three_processes_at_once(own_database: str) -> None:
    app: Any = create_app(Settings(database_url=own_database))
    async with app.router.lifespan_context(app):
        token = await mint(app)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test/fhir",
                                     headers=bearer(token)) as client:
            t = await w.team(client, "proc")
            pids = []
            for _ in range(30):
                pid = await w.patient(client, t)
                await w.risk(client, pid, "severe")
                await w.message(client, pid, f"Patient/{pid}", w.ago(7))
                pids.append(pid)
        env = {**os.environ, "CARENET_DATABASE_URL": own_database}
        command = [sys.executable, "-m", "careplans", "worklist", "build", "--as-of",
                   w.AS_OF.isoformat(), "--quiet"]
        procs = [await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(3)]
        outs = [await p.communicate() for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1].decode() for o in outs]
        created = [int(o[0].decode().split(" items created")[0].rsplit(" ", 1)[1])
                   for o in outs]
        assert sum(created) == 60  # 30 patients x 2 rules, whichever process made each
        async with app.state.db.read() as conn:
            items = WorklistItem.__table__
            keys = (await conn.execute(sa.select(sa.func.count()).select_from(items))
                    ).scalar_one()
            tasks = (await conn.execute(sa.select(sa.func.count()).where(
                resource.c.type == "Task"))).scalar_one()
        assert (keys, tasks) == (60, 60)
