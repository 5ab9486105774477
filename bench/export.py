"""Bulk export speed and memory: `$export` of a whole network by the network's backend service.

    uv run python bench/export.py --template carenet_directory_bench25k
    uv run python bench/export.py --db carenet_integration_export25k --reuse   # skip the copy

1. Copies `--template` (a loaded network; never modified) to `--db` with CREATE DATABASE ...
   TEMPLATE and migrates the copy (`python -m api migrate`: adds the export_job table).
2. Starts the server (`python -m api serve`, one worker) on 127.0.0.1:`--port` over the copy,
   with the export directory in a temporary folder.
3. Kicks off `GET /fhir/$export` (every type, the network's operator token), polls the status
   endpoint, and samples the server process's resident memory (VmRSS of it and its children,
   /proc) every `--sample` seconds until the manifest comes back.
4. Prints resources exported, seconds, resources/s, and RSS before / peak / at the end and
   over time (constant memory: the peak should not grow with the network), and writes
   bench/results/<timestamp>-export.json.

The machine is shared: figures are wall-clock on whatever else was running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
PG = "postgresql://postgres@127.0.0.1:5432"


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` and its children, KiB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


async def copy(template: str, db: str) -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
        await conn.execute(f'CREATE DATABASE "{db}" TEMPLATE "{template}"')
    finally:
        await conn.close()


def env_for(db: str, exports: Path, port: int) -> dict[str, str]:
    return {**os.environ, "CARENET_DATABASE_URL": f"{PG}/{db}",
            "CARENET_EXPORT_DIR": str(exports), "CARENET_PORT": str(port),
            "CARENET_HOST": "127.0.0.1", "CARENET_LOG_LEVEL": "warning"}


async def run(args: argparse.Namespace) -> dict[str, object]:
    if not args.reuse:
        started = time.perf_counter()
        await copy(args.template, args.db)
        print(f"copied {args.template} -> {args.db} in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
    exports = Path(tempfile.mkdtemp(prefix="carenet-export-"))
    env = env_for(args.db, exports, args.port)
    subprocess.run([sys.executable, "-m", "api", "migrate"], env=env, cwd=ROOT, check=True)
    token = subprocess.run([sys.executable, "-m", "api", "token"], env=env, cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.strip()
    server = subprocess.Popen([sys.executable, "-m", "api", "serve", "--workers", "1"],
                              env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{args.port}/fhir"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60,
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(300):
                try:
                    if (await c.get("/metadata")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
            before = rss_kib(server.pid)
            started = time.perf_counter()
            r = await c.get("/$export", headers={"Prefer": "respond-async"})
            assert r.status_code == 202, r.text
            status_url = r.headers["content-location"]
            samples: list[tuple[float, int]] = []
            while True:
                samples.append((round(time.perf_counter() - started, 1), rss_kib(server.pid)))
                s = await c.get(status_url)
                if s.status_code == 200:
                    manifest = s.json()
                    break
                assert s.status_code == 202, s.text
                await asyncio.sleep(args.sample)
            seconds = time.perf_counter() - started
            after = rss_kib(server.pid)
    finally:
        server.terminate()
        server.wait(30)
        size = sum(p.stat().st_size for p in exports.rglob("*.ndjson"))
        shutil.rmtree(exports, ignore_errors=True)
    total = sum(o["count"] for o in manifest["output"])
    peak = max(kib for _, kib in samples)
    step = max(1, len(samples) // 12)
    return {
        "database": args.db, "resources": total, "seconds": round(seconds, 1),
        "resources_per_s": round(total / seconds), "ndjson_bytes": size,
        "types": {o["type"]: o["count"] for o in manifest["output"]},
        "opted_out": manifest.get("extension", {}),
        "rss_mib": {"before": round(before / 1024), "peak": round(peak / 1024),
                    "end": round(after / 1024)},
        "rss_over_time_mib": [(t, round(k / 1024)) for t, k in samples[::step]],
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": "shared 2-core machine; one run",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--template", default="carenet_directory_bench25k")
    parser.add_argument("--db", default="carenet_integration_export25k")
    parser.add_argument("--reuse", action="store_true", help="skip the copy")
    parser.add_argument("--port", type=int, default=8147)
    parser.add_argument("--sample", type=float, default=0.5)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=1))
    out = ROOT / "bench" / "results" / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-export.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
