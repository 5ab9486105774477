"""Benchmarks on a synthetic network: ingest (load N patients) and the clinician search mix.

    uv run python bench/network.py ingest --patients 25000 [--workers 2]
    uv run python bench/network.py search --db postgresql://postgres@127.0.0.1:5432/carenet_net25k
    uv run python bench/network.py update   (PUT new versions of the network's Observations)

`ingest` makes a fresh PostgreSQL database, starts the server, loads the network through the
public API (`python -m api seed`) and reports resources/s. `search` starts the server on an
existing network database, builds the request lists from its data, and runs wrk once per
query kind and once for the whole mix (`--runs` runs each; medians reported). Results go to
bench/results/<timestamp>-network-<command>.json and .md. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # consent/, fhir/
from run import CLK_TCK, cpu_ticks, descendants, pg_backends  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PG = "postgresql://postgres@127.0.0.1:5432"

# What a clinician's EHR app and a case manager actually ask (issue 4), as path templates.
KINDS = {
    "problems": "/fhir/Condition?patient={patient}&clinical-status=active",
    "latest-obs": "/fhir/Observation?patient={patient}&code={obs_code}&_sort=-date&_count=10",
    "medications": "/fhir/MedicationRequest?patient={patient}&status=active"
                   "&_include=MedicationRequest:medication",
    "care-plans": "/fhir/CarePlan?patient={patient}&_include=CarePlan:care-team"
                  "&_include=CarePlan:goal",
    "tasks": "/fhir/Task?owner={owner}&status=requested,ready,in-progress"
             "&_sort=priority,period&_count=20",
    "over-75": "/fhir/Patient?general-practitioner=Organization/{practice}"
               "&birthdate=le{born_before}&_sort=family,given&_count=20",
}


def start_server(db_url: str, port: int, workers: int, cpus: str | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "api", "serve", "--port", str(port), "--workers", str(workers)]
    return launch(cmd, {"CARENET_DATABASE_URL": db_url, "CARENET_LOG_LEVEL": "warning"}, port,
                  cpus, "the server")


def launch(cmd: list[str], env: dict[str, str], port: int, cpus: str | None,
           name: str) -> subprocess.Popen:
    """Run `cmd` (a server on `port`, under taskset -c `cpus` when given) and wait for its
    /fhir/metadata."""
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}")
        time.sleep(0.5)
    stop_server(proc)
    raise SystemExit(f"{name} did not answer within 90 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def _fresh_db(name: str) -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _analyze(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), "?")
    return f"{os.cpu_count()} CPUs, {model}; load average at start {os.getloadavg()[0]:.2f}"


def save(name: str, data: dict, table: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (RESULTS / f"{stamp}-network-{name}.json").write_text(json.dumps(data, indent=1))
    (RESULTS / f"{stamp}-network-{name}.md").write_text(table)
    print(table)


def ingest(args: argparse.Namespace) -> None:
    asyncio.run(_fresh_db(args.dbname))
    db_url = f"{PG}/{args.dbname}"
    proc = start_server(db_url, args.port, args.workers, args.server_cpus)
    try:
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "api", "seed", "--patients", str(args.patients), "--seed",
             str(args.seed), "--as-of", "2025-06-01", "--concurrency", str(args.concurrency),
             "--url", f"http://127.0.0.1:{args.port}/fhir"],
            cwd=ROOT, capture_output=True, text=True, timeout=args.timeout,
            # The loader signs its token with the keys in the server's database.
            env={**os.environ, "CARENET_DATABASE_URL": db_url})
        seconds = time.perf_counter() - started
    finally:
        stop_server(proc)
    # Fresh tables have no statistics until autovacuum comes round: plan the searches on real
    # ones (stale statistics made the clinician searches ten times slower).
    asyncio.run(_analyze(db_url))
    summary = [line for line in out.stderr.splitlines() + out.stdout.splitlines()
               if line.startswith("patients ")]
    match = re.search(r"resources (\d+), ([\d.]+) s, ([\d,]+) resources/s, failures (\d+)",
                      summary[-1] if summary else "")
    if not match:
        raise SystemExit(f"no summary from the loader:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    resources, load_s, rate, failures = match.groups()
    data = {"patients": args.patients, "resources": int(resources), "seconds": float(load_s),
            "resources_per_s": int(rate.replace(",", "")), "failures": int(failures),
            "workers": args.workers, "concurrency": args.concurrency, "machine": machine(),
            "wall_seconds": seconds}
    table = (f"## ingest: {args.patients:,} patients into PostgreSQL\n\n- machine: {machine()}\n"
             f"- server: {args.workers} worker(s); loader concurrency {args.concurrency}; "
             f"transaction Bundle per patient\n\n| patients | resources | seconds | resources/s |"
             f" failures |\n|---:|---:|---:|---:|---:|\n| {args.patients:,} | {int(resources):,} "
             f"| {float(load_s):.0f} | {rate} | {failures} |\n")
    save("ingest", data, table)


async def _request_lists(db_url: str, n: int,
                         patients: list[str] | None = None,
                         practices: list[str] | None = None) -> dict[str, list[str]]:
    """The request paths per kind, for `patients` (default: any) and `practices` (any)."""
    conn = await asyncpg.connect(db_url)
    try:
        patients = patients or [r["id"] for r in await conn.fetch(
            "SELECT id FROM resource WHERE type='Patient' AND NOT deleted ORDER BY random() "
            "LIMIT $1", n)]
        codes = [r["code"] for r in await conn.fetch(
            "SELECT t.system || '|' || t.code AS code, count(*) FROM sp_token t "
            "JOIN resource r ON r.rid=t.rid WHERE r.type='Observation' AND t.param='code' "
            "AND t.system IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 5")]
        practices = practices or [r["id"] for r in await conn.fetch(
            "SELECT DISTINCT target_id AS id FROM sp_reference WHERE param="
            "'general-practitioner' AND target_type='Organization'")]
        owners = [f"{r['type']}/{r['id']}" for r in await conn.fetch(
            "SELECT type, id FROM resource WHERE type IN ('Practitioner','Organization') "
            "AND NOT deleted LIMIT 200")]
    finally:
        await conn.close()
    rng = random.Random(1)
    lists: dict[str, list[str]] = {}
    for kind, template in KINDS.items():
        lists[kind] = [template.format(
            patient=p, obs_code=rng.choice(codes) if codes else "x", owner=rng.choice(owners),
            practice=rng.choice(practices) if practices else "x", born_before="1950-06-01",
        ) for p in patients]
    return lists


def wrk(paths_file: Path, args: argparse.Namespace, script: str = "urls.lua",
        cpu_of: tuple[int, str] | None = None) -> dict:
    """One wrk run; with `cpu_of` (server pid, database name) also the CPU the server's
    processes and the database's PostgreSQL backends used per request."""
    cmd = ["wrk", "-t", "1", "-c", str(args.connections), "-d", f"{args.duration}s",
           "--latency", "-s", str(HERE / script), f"http://127.0.0.1:{args.port}", "--",
           str(paths_file)]
    if args.client_cpus:
        cmd = ["taskset", "-c", args.client_cpus, *cmd]
    before = _cpu(*cpu_of) if cpu_of else None
    env = {**os.environ, "BENCH_TOKEN": getattr(args, "token", None) or ""}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60,
                         env=env)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")
    result = json.loads(line[len("BENCH_JSON "):])
    if cpu_of and before and result.get("requests"):
        after = _cpu(*cpu_of)
        for key in ("server", "pg"):
            used = sum(t - before[key].get(pid, 0) for pid, t in after[key].items()) / CLK_TCK
            result[f"{key}_cpu_ms_per_req"] = round(1000 * used / result["requests"], 4)
    return result


async def _token(db_url: str, port: int) -> str | None:
    """The operator's bearer token (system/*.cruds: every record visible) for a server that
    asks for one, signed with the keys in its database; None for a server that does not."""
    try:
        from consent.grants import operator_token
        from fhir.db import Database
    except ImportError:
        return None
    db = Database(db_url, pool_size=1)
    try:
        return await operator_token(db, fhir_base=f"http://127.0.0.1:{port}/fhir",
                                    client_id="carenet-bench")
    finally:
        await db.dispose()


def _cpu(server_pid: int, dbname: str) -> dict[str, dict[int, int]]:
    return {"server": cpu_ticks(descendants(server_pid)), "pg": cpu_ticks(pg_backends(dbname))}


async def _observations(db_url: str, n: int) -> list[str]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT r.id, x.target_id FROM resource r JOIN sp_reference x ON x.rid = r.rid "
            "AND x.param = 'subject' AND x.target_type = 'Patient' "
            "WHERE r.type = 'Observation' AND NOT r.deleted ORDER BY random() LIMIT $1", n)
    finally:
        await conn.close()
    return [f"{r['id']} {r['target_id']}" for r in rows]


def update(args: argparse.Namespace) -> None:
    """PUT new versions of existing Observations on the network (`bench/update.lua`)."""
    RESULTS.mkdir(exist_ok=True)
    ids = RESULTS / "tmp" / "observations.txt"
    ids.parent.mkdir(exist_ok=True)
    ids.write_text("\n".join(asyncio.run(_observations(args.db, 20000))) + "\n")
    proc = start_server(args.db, args.port, args.workers, args.server_cpus)
    try:
        runs = [wrk(ids, args, script="update.lua") for _ in range(args.runs)]
    finally:
        stop_server(proc)
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    lat = lambda p: statistics.median(r["latency_ms"][p] for r in runs)  # noqa: E731
    table = (f"## update on {args.db.rsplit('/', 1)[-1]}\n\n- machine: {machine()}\n- server: "
             f"{args.workers} worker(s), cpus {args.server_cpus or 'any'}; {args.runs} runs x "
             f"{args.duration} s\n\n| requests | req/s | p50 ms | p95 ms | p99 ms | non-2xx |\n"
             f"|---|---:|---:|---:|---:|---:|\n| PUT Observation | {med('requests_per_s'):,.0f} | "
             f"{lat('p50'):.1f} | {lat('p95'):.1f} | {lat('p99'):.1f} | "
             f"{sum(r['non2xx'] for r in runs)} |\n")
    save("update", {"results": runs, "machine": machine(), "args": vars(args)}, table)


def search(args: argparse.Namespace) -> None:
    gp = None
    if args.as_gp:  # a GP of the largest practice, asking about its patients
        from principals import gp_of_largest_practice

        gp, patients, _obs, practice = asyncio.run(gp_of_largest_practice(args.db, 2000))
        lists = asyncio.run(_request_lists(args.db, 2000, patients, [practice]))
    else:
        lists = asyncio.run(_request_lists(args.db, 2000))
    work = RESULTS / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, paths in lists.items():
        files[kind] = work / f"{kind}.txt"
        files[kind].write_text("\n".join(paths) + "\n")
    mix = [p for paths in lists.values() for p in paths]
    random.Random(2).shuffle(mix)
    files["mix"] = work / "mix.txt"
    files["mix"].write_text("\n".join(mix) + "\n")
    if args.kinds:
        files = {k: v for k, v in files.items() if k in args.kinds.split(",")}
    proc = start_server(args.db, args.port, args.workers, args.server_cpus)
    if gp is not None:
        from principals import tokens

        args.token = asyncio.run(tokens(args.db, args.port, gp))["gp"]
    else:
        args.token = asyncio.run(_token(args.db, args.port))
    cpu_of = (proc.pid, args.db.rsplit("/", 1)[-1])
    results: dict[str, list[dict]] = {}
    light: dict[str, dict] = {}
    light_args = argparse.Namespace(**{**vars(args), "connections": args.light_connections})
    try:
        for kind, path in files.items():
            wrk(path, argparse.Namespace(**{**vars(args), "duration": 3}))  # warm up
            results[kind] = [wrk(path, args, cpu_of=cpu_of) for _ in range(args.runs)]
            if args.light_connections:
                light[kind] = wrk(path, light_args, cpu_of=cpu_of)
    finally:
        stop_server(proc)
    rows = []
    for kind, runs in results.items():
        def med(get: Any, runs: list[dict] = runs) -> float:
            return statistics.median(get(r) for r in runs)

        bad = sum(r["non2xx"] for r in runs)
        row = (f"| {kind} | {med(lambda r: r['requests_per_s']):,.0f} | "
               + " | ".join(f"{med(lambda r, p=p: r['latency_ms'][p]):.1f}"
                            for p in ("p50", "p95", "p99"))
               + f" | {bad} | {med(lambda r: r.get('server_cpu_ms_per_req', 0)):.2f} | "
               f"{med(lambda r: r.get('pg_cpu_ms_per_req', 0)):.2f} |")
        if kind in light:
            one = light[kind]
            row += (f" {one['requests_per_s']:,.0f} | {one['latency_ms']['p50']:.1f} | "
                    f"{one['latency_ms']['p99']:.1f} |")
        rows.append(row)
    light_head = (f" req/s at {args.light_connections} | p50 ms at {args.light_connections} |"
                  f" p99 ms at {args.light_connections} |" if light else "")
    light_rule = "---:|---:|---:|" if light else ""
    who = (f"a GP (Practitioner/{gp}) of the largest practice, its patients" if gp else
           "the network's backend service (system/*.cruds), any patient")
    table = (f"## clinician search mix on {args.db.rsplit('/', 1)[-1]}\n\n- machine: {machine()}\n"
             f"- signed in as {who}\n"
             f"- server: {args.workers} worker(s), cpus {args.server_cpus or 'any'}; wrk 1 thread,"
             f" {args.connections} connections, cpus {args.client_cpus or 'any'}; {args.runs} runs"
             f" x {args.duration} s per row (medians)"
             + (f"; then one run of {args.light_connections} connections (light load)"
                if light else "")
             + "; CPU ms/req: the server's processes and this database's PostgreSQL backends"
             "\n\n| requests | req/s | p50 ms | p95 ms | p99 ms | non-2xx | server CPU ms/req |"
             f" PG CPU ms/req |{light_head}\n|---|---:|---:|---:|---:|---:|---:|---:|{light_rule}"
             "\n" + "\n".join(rows) + "\n\n"
             + "\n".join(f"- {k}: `{v}`" for k, v in KINDS.items()) + "\n")
    save("search", {"results": results, "light": light, "machine": machine(),
                    "args": vars(args)}, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("ingest", "search", "update"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, default=8095)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--server-cpus")
        p.add_argument("--client-cpus")
    ing = sub.choices["ingest"]
    ing.add_argument("--patients", type=int, default=25000)
    ing.add_argument("--seed", type=int, default=42)
    ing.add_argument("--concurrency", type=int, default=8)
    ing.add_argument("--dbname", default="carenet_net25k")
    ing.add_argument("--timeout", type=int, default=3600)
    for name in ("search", "update"):
        srch = sub.choices[name]
        srch.add_argument("--db", default=f"{PG}/carenet_net25k")
        srch.add_argument("--runs", type=int, default=3)
        srch.add_argument("--duration", type=int, default=10)
        srch.add_argument("--connections", type=int, default=16)
    srch = sub.choices["search"]
    srch.add_argument("--light-connections", type=int, default=4,
                      help="one more run per kind at this many connections: latency without "
                      "queueing (0: none)")
    srch.add_argument("--kinds", help="comma-separated kinds to run (default: all and the mix)")
    srch.add_argument("--as-gp", action="store_true",
                      help="sign in as a GP of the largest practice and ask about its patients "
                           "(default: the network's backend service, any patient)")
    args = parser.parse_args()
    {"ingest": ingest, "search": search, "update": update}[args.command](args)


if __name__ == "__main__":
    main()
