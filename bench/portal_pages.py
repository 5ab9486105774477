"""How long the patient portal's pages take on a running server (e.g. `serve --demo`).

    uv run python bench/portal_pages.py --url http://127.0.0.1:8000 [--patient ID] [--n 20]

Signs in through the demo sign-in page as a patient (by default the demo patient with the most
Observations among the first 50), then GETs each page `--n` times, one at a time, and prints
the median and 95th percentile in milliseconds. Needs demo login on (SQLite default) and the
server's database (CARENET_DATABASE_URL) for the operator's token that picks the patient.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.oauth.page import CARRIED  # noqa: E402
from api.settings import Settings  # noqa: E402
from consent.grants import operator_token  # noqa: E402
from fhir.db import Database  # noqa: E402

PAGES = ("/portal/", "/portal/record", "/portal/care-plan", "/portal/add", "/portal/messages",
         "/portal/repeats", "/portal/appointments", "/portal/access-log")


async def _busiest_patient(url: str) -> str:
    db = Database(Settings().database_url, pool_size=1)
    try:
        token = await operator_token(db, fhir_base=f"{url}/fhir", client_id="carenet-bench")
    finally:
        await db.dispose()
    async with httpx.AsyncClient(base_url=f"{url}/fhir",
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        patients = (await c.get("/Patient", params={"_count": "50"})).json()["entry"]
        counts = {}
        for e in patients:
            pid = e["resource"]["id"]
            r = await c.get("/Observation", params={"patient": pid, "_summary": "count"})
            counts[pid] = r.json()["total"]
    return max(counts, key=counts.__getitem__)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--patient")
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    patient = args.patient or await _busiest_patient(args.url)
    async with httpx.AsyncClient(base_url=args.url, timeout=30) as browser:
        r = await browser.get("/portal/sign-in")
        params = dict(parse_qsl(urlsplit(r.headers["location"]).query))
        form = {k: v for k, v in params.items() if k in CARRIED}
        r = await browser.post("/oauth/authorize", data={**form, "user": f"Patient/{patient}",
                                                         "decision": "approve"})
        r = await browser.get(r.headers["location"])
        assert r.headers["location"] == "/portal/", r.text
        print(f"Patient/{patient}, {args.n} GETs per page, one at a time\n")
        print("| page | median ms | p95 ms | bytes |\n|---|---|---|---|")
        for path in PAGES:
            times = []
            for _ in range(args.n):
                start = time.perf_counter()
                r = await browser.get(path)
                times.append((time.perf_counter() - start) * 1000)
                assert r.status_code == 200, (path, r.status_code)
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            print(f"| {path} | {statistics.median(times):.0f} | {p95:.0f} | {len(r.content)} |")


if __name__ == "__main__":
    asyncio.run(main())
