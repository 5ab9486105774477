"""Round trip: load a small generated network, export it ($export), load the NDJSON into a
fresh database through the seed's load path (api/synthetic/ndjson.py); the counts per type
and a sample of resources are equal. Both backends."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy.engine import make_url

from api.app import create_app
from api.settings import Settings
from api.synthetic import generate
from api.synthetic.load import load
from api.synthetic.ndjson import load_ndjson
from tests.clients import audited_client
from tests.conftest import _reset_postgres, postgres_url
from tests.synthetic.conftest import AS_OF
from tests.tokens import bearer, mint

SEED, PATIENTS = 4242, 15


async def fresh(database_url: str, tmp: Path, name: str) -> str:
    """An empty database of the same backend as `database_url`."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp / f'{name}.db'}"
    url = make_url(postgres_url())
    url = url.set(database=f"{url.database}_{name}").render_as_string(False)
    await _reset_postgres(url)
    return url


@asynccontextmanager
async def server(url: str, exports: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=url, export_dir=exports))
    async with app.router.lifespan_context(app):
        async with audited_client(app, base_url="http://test/fhir/",
                                  headers=bearer(await mint(app)), timeout=120) as c:
            yield c


def comparable(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource without what its store stamps (version and time of the write)."""
    meta = {k: v for k, v in resource.get("meta", {}).items()
            if k not in ("versionId", "lastUpdated")}
    return {**{k: v for k, v in resource.items() if k != "meta"}, **({"meta": meta} if meta
                                                                     else {})}


async def test_export_then_load_into_a_fresh_database(database_url: str,
                                                      tmp_path: Path) -> None:
    source, target = (await fresh(database_url, tmp_path, "rt_src"),
                      await fresh(database_url, tmp_path, "rt_dst"))
    files = tmp_path / "downloaded"
    files.mkdir()
    async with server(source, tmp_path / "exports") as c:
        summary = await load(client=c, seed=SEED, n_patients=PATIENTS, as_of=AS_OF)
        assert summary.failures == []
        r = await c.get("$export", headers={"Prefer": "respond-async"})
        assert r.status_code == 202, r.text
        for _ in range(1000):
            status = await c.get(r.headers["content-location"])
            if status.status_code == 200:
                break
            assert status.status_code == 202, status.text
            await asyncio.sleep(0.05)
        manifest = status.json()
        for out in manifest["output"]:
            (files / f"{out['type']}.ndjson").write_bytes((await c.get(out["url"])).content)
    counts = {out["type"]: out["count"] for out in manifest["output"]}
    network, records = generate(SEED, PATIENTS, AS_OF)
    generated = Counter(r["resourceType"] for r in network.resources)
    generated.update(r["resourceType"] for record in records for r in record.resources)
    assert counts == dict(generated)  # the whole network, and only it

    async with server(target, tmp_path / "exports2") as c:
        loaded = await load_ndjson(client=c, directory=files)
        assert loaded.failures == []
        assert loaded.patients == PATIENTS and loaded.resources == sum(counts.values())
        for type_, count in counts.items():
            r = await c.get(type_, params={"_total": "accurate", "_count": "0"})
            assert r.json()["total"] == count, type_
        for path in files.glob("*.ndjson"):
            sample = [orjson.loads(line) for line in path.read_bytes().splitlines()[:3]]
            for exported in sample:
                r = await c.get(f"{exported['resourceType']}/{exported['id']}")
                assert r.status_code == 200, r.text
                assert comparable(r.json()) == comparable(exported)
