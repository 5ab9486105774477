"""Benchmark the FHIR server: fresh PostgreSQL database, server subprocess, seed data, wrk runs.

    uv run python bench/run.py --scenario read|create|metadata|all --runs 3 --duration 10 \
        --connections 32 --workers 2 [--server-cpus 0 --client-cpus 1] [--profile]

Results go to bench/results/<timestamp>-<scenario>.json and .md (see bench/README.md).
Only 127.0.0.1 is spoken to; the server is stopped and the database dropped however the run
ends; every wait has a deadline. Exit status: 0 clean, 1 when a run saw errors or non-2xx
answers, 2 when the harness itself failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import hotspots  # noqa: E402
import seed  # noqa: E402

SCENARIOS: dict[str, dict[str, Any]] = {
    "read": {"script": "read.lua", "target": 5000,
             "what": "GET /fhir/Patient/{id}, random seeded id"},
    "create": {"script": "create.lua", "target": 1000,
               "what": "POST /fhir/Observation, coded vital sign for a random seeded Patient"},
    "metadata": {"script": "metadata.lua", "target": None,
                 "what": "GET /fhir/metadata (cached; HTTP + routing, no database)"},
}
ALL = ["read", "create"]  # --scenario all; metadata is an opt-in baseline
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


class HarnessError(RuntimeError):
    """The harness could not do its job (not a benchmark finding)."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the machine and its processes (/proc) ---------------------------------------------------

def machine_info() -> dict[str, Any]:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    if match:
        model = match.group(1).strip()
    mem_kb = 0
    match = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M)
    if match:
        mem_kb = int(match.group(1))
    return {"nproc": os.cpu_count(), "nproc_available": len(os.sched_getaffinity(0)),
            "cpu_model": model, "mem_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_start": os.getloadavg()}


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime + stime in ticks) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def user_system(pids: list[int]) -> tuple[int, int]:
    """CPU ticks of the processes in user mode and in the kernel (system calls, networking)."""
    user = system = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        user += int(fields[11])
        system += int(fields[12])
    return user, system


def thread_split(pids: list[int]) -> tuple[int, int]:
    """CPU ticks of the processes' main threads, and of all their other threads."""
    main = other = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2:].split()
            ticks = int(fields[11]) + int(fields[12])
            if int(tid) == pid:
                main += ticks
            else:
                other += ticks
    return main, other


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        st = _stat(pid)
        if st:
            children.setdefault(st[0], []).append(pid)
    out, todo = [], [root]
    while todo and len(out) < 10_000:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return ""


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    out = {}
    for pid in pids:
        st = _stat(pid)
        if st:
            out[pid] = st[1]
    return out


def pg_backends(db: str) -> list[int]:
    """PostgreSQL backend processes connected to database `db` (their title names it)."""
    needle = f" {db} "
    return [pid for pid in _pids() if (c := cmdline(pid)).startswith("postgres:") and needle in c]


def machine_ticks() -> dict[str, int]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    names = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
    values = dict(zip(names, (int(x) for x in fields), strict=False))
    values["total"] = sum(values.values())
    return values


def affinity(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "?"
    match = re.search(r"^Cpus_allowed_list:\s*(\S+)", text, re.M)
    return match.group(1) if match else "?"


def cpu_count_of(spec: str) -> int:
    """How many CPUs a taskset list such as '1', '0-1' or '0,1' names."""
    count = 0
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi) - int(lo) + 1 if hi else 1
    return count


def wait_quiet(limit_s: float, threshold_pct: float) -> dict[str, float]:
    """Wait (at most `limit_s`) until the machine is no more than `threshold_pct` busy over one
    second, our server being idle; returns the last reading and the time waited."""
    started = time.monotonic()
    while True:
        a = machine_ticks()
        time.sleep(1)
        b = machine_ticks()
        total = (b["total"] - a["total"]) or 1
        busy = 100 * (total - (b["idle"] - a["idle"]) - (b["iowait"] - a["iowait"])) / total
        waited = time.monotonic() - started
        if busy <= threshold_pct or waited >= limit_s:
            return {"busy_pct": round(busy, 1), "waited_s": round(waited, 1)}


# --- PostgreSQL ------------------------------------------------------------------------------

class Postgres:
    """psql against the local server, to create, measure and drop the benchmark database."""

    def __init__(self, url: str, db: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or parts.hostname not in LOCAL_HOSTS:
            raise HarnessError(f"--pg must be a postgresql:// URL on 127.0.0.1, not {url}")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", db):
            raise HarnessError(f"--db {db!r}: use lower-case letters, digits and _")
        self.host = "127.0.0.1"
        self.port = parts.port or 5432
        self.user = parts.username or "postgres"
        self.db = db
        self.url = f"postgresql://{self.user}@{self.host}:{self.port}/{db}"

    def sql(self, statement: str, db: str | None = None) -> str:
        cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p",
               str(self.port), "-U", self.user, "-d", db or self.db, "-tAc", statement]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise HarnessError(f"psql failed ({statement}): {done.stderr.strip()}")
        return done.stdout.strip()

    def recreate(self) -> None:
        self.drop()
        self.sql(f'CREATE DATABASE "{self.db}"', db="postgres")

    def drop(self) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)', db="postgres")

    def stats(self) -> dict[str, int]:
        """This database's cumulative counters (pg_stat_database; sessions: PostgreSQL 14+)."""
        cols = ["sessions", "xact_commit", "xact_rollback", "tup_inserted", "tup_fetched"]
        try:
            row = self.sql(f"SELECT {', '.join(cols)} FROM pg_stat_database "
                           f"WHERE datname = '{self.db}'")
        except HarnessError:
            return {}
        return {c: int(v) for c, v in zip(cols, row.split("|"), strict=False) if v.isdigit()}

    def version(self) -> str:
        return self.sql("SHOW server_version", db="postgres")

    def data_size(self) -> dict[str, Any]:
        rows = self.sql("SELECT type, count(*) FROM resource WHERE NOT deleted "
                        "GROUP BY type ORDER BY type")
        counts = {t: int(n) for t, n in (line.split("|") for line in rows.splitlines() if line)}
        size = int(self.sql(f"SELECT pg_database_size('{self.db}')"))
        return {"resources": counts, "database_bytes": size}


# --- the server ------------------------------------------------------------------------------

class Server:
    """`python -m api serve` as a subprocess in its own process group (stopped as a group)."""

    def __init__(self, *, port: int, workers: int, cpus: str | None, database_url: str,
                 extra_env: dict[str, str], log_path: Path) -> None:
        self.port = port
        self.workers = workers
        self.cpus = cpus
        self.database_url = database_url
        self.extra_env = extra_env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{port}/fhir"
        self.command: list[str] = []

    def start(self) -> None:
        cmd = [sys.executable, "-m", "api", "serve", "--host", "127.0.0.1", "--port",
               str(self.port), "--workers", str(self.workers)]
        if self.cpus:
            cmd = ["taskset", "-c", self.cpus, *cmd]
        env = {**os.environ, "CARENET_DATABASE_URL": self.database_url,
               "CARENET_LOG_LEVEL": "warning", **self.extra_env}
        self.command = cmd
        log(f"starting server: {shlex.join(cmd)}")
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float) -> None:
        """Until /fhir/metadata answers 200 and every worker process is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(f"the server exited during start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/metadata", timeout=5) as resp:
                    if resp.status == 200 and len(self.worker_pids()) >= self.workers:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.25)
        raise HarnessError(f"the server did not answer /fhir/metadata in {timeout:.0f}s:\n"
                           f"{self.log_tail()}")

    def pids(self) -> list[int]:
        return descendants(self.proc.pid) if self.proc else []

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's spawned workers, or the one process."""
        if not self.proc:
            return []
        if self.workers == 1:
            return [self.proc.pid]
        return [p for p in self.pids() if p != self.proc.pid and "spawn_main" in cmdline(p)]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        log("stopping server")
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)  # our child's own group (start_new_session)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                log(f"server did not stop on {sig.name}")


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def operator_token(database_url: str, fhir_base: str) -> str:
    """The network backend service's token (system/*.cruds), signed with the keys the server
    keeps in its database (consent.grants.operator_token): every FHIR request needs one."""
    import asyncio

    sys.path.insert(0, str(ROOT))
    from consent.grants import operator_token as sign
    from fhir.db import Database

    async def make() -> str:
        db = Database(database_url, pool_size=1)
        try:
            return await sign(db, fhir_base=fhir_base, client_id="carenet-bench",
                              lifetime=24 * 3600)
        finally:
            await db.dispose()

    return asyncio.run(make())


def get_status(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


# --- wrk -------------------------------------------------------------------------------------

class Sampler:
    """CPU used by the server's processes, this database's PostgreSQL backends, wrk and the
    whole machine between `start()` and `stop()` (from /proc and getrusage)."""

    def __init__(self, server: Server, pg: Postgres) -> None:
        self.server = server
        self.pg = pg
        self.db = pg.db

    def _snap(self) -> dict[str, Any]:
        pids = self.server.pids()
        return {"server": cpu_ticks(pids), "pg": cpu_ticks(pg_backends(self.db)),
                "threads": thread_split(pids), "user_system": user_system(pids),
                "machine": machine_ticks(),
                "children": resource.getrusage(resource.RUSAGE_CHILDREN),
                "wall": time.monotonic()}

    def start(self) -> None:
        self.pg_before = self.pg.stats()
        self.before = self._snap()

    def stop(self, requests: int) -> dict[str, Any]:
        after, before = self._snap(), self.before
        time.sleep(1.1)  # backends flush their statistics about once a second
        pg_after = self.pg.stats()

        def delta(kind: str) -> float:
            return sum(t - before[kind].get(pid, 0) for pid, t in after[kind].items()) / CLK_TCK

        m0, m1 = before["machine"], after["machine"]
        total = (m1["total"] - m0["total"]) or 1
        busy = total - (m1["idle"] - m0["idle"]) - (m1["iowait"] - m0["iowait"])
        wall = after["wall"] - before["wall"]
        ncpu = os.cpu_count() or 1
        c0, c1 = before["children"], after["children"]
        out = {
            "server_cpu_s": round(delta("server"), 3),
            "pg_backends_cpu_s": round(delta("pg"), 3),
            "wrk_cpu_s": round((c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime), 3),
            "machine_busy_cpu_s": round(busy / total * wall * ncpu, 3),
            "machine_busy_pct": round(100 * busy / total, 1),
            "steal_pct": round(100 * (m1["steal"] - m0["steal"]) / total, 2),
            "wall_s": round(wall, 3),
        }
        out["other_cpu_s"] = round(out["machine_busy_cpu_s"] - out["server_cpu_s"]
                                   - out["pg_backends_cpu_s"] - out["wrk_cpu_s"], 3)
        # Everything else: other users' processes, PostgreSQL's background processes, softirq.
        out["other_pct"] = round(100 * out["other_cpu_s"] / (wall * ncpu), 1)
        # Main threads (the event loops) against all other threads (thread pools, pings).
        out["server_main_threads_cpu_s"] = round(
            (after["threads"][0] - before["threads"][0]) / CLK_TCK, 3)
        out["server_other_threads_cpu_s"] = round(
            (after["threads"][1] - before["threads"][1]) / CLK_TCK, 3)
        user = after["user_system"][0] - before["user_system"][0]
        system = after["user_system"][1] - before["user_system"][1]
        out["server_system_share"] = round(system / ((user + system) or 1), 3)
        # What PostgreSQL saw: sessions opened (connection churn), transactions per request.
        out["pg_stats"] = {k: pg_after[k] - self.pg_before[k] for k in pg_after
                           if k in self.pg_before}
        if requests and out["pg_stats"]:
            out["pg_commits_per_req"] = round(out["pg_stats"].get("xact_commit", 0) / requests,
                                              3)
        if requests:
            out["server_cpu_ms_per_req"] = round(1000 * out["server_cpu_s"] / requests, 4)
            out["pg_cpu_ms_per_req"] = round(1000 * out["pg_backends_cpu_s"] / requests, 4)
        return out


def wrk_command(args: argparse.Namespace, scenario: str, duration: float,
                ids_file: Path) -> list[str]:
    threads = args.threads or (cpu_count_of(args.client_cpus) if args.client_cpus else 2)
    threads = max(1, min(threads, args.connections))
    cmd = ["wrk", "-t", str(threads), "-c", str(args.connections), "-d", f"{duration:g}s",
           "--timeout", f"{args.timeout:g}s", "-s", str(BENCH / SCENARIOS[scenario]["script"]),
           f"http://127.0.0.1:{args.port}", "--", str(ids_file)]
    if args.client_cpus:
        cmd = ["taskset", "-c", args.client_cpus, *cmd]
    return cmd


def parse_wrk(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise HarnessError(f"wrk printed no BENCH_JSON line:\n{stdout[-2000:]}")


def run_wrk(args: argparse.Namespace, scenario: str, duration: float, ids_file: Path,
            sampler: Sampler) -> dict[str, Any]:
    cmd = wrk_command(args, scenario, duration, ids_file)
    quiet = wait_quiet(args.quiet_wait, args.quiet_threshold) if args.quiet_wait > 0 else None
    load = os.getloadavg()[0]
    sampler.start()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"wrk did not finish within {duration + 60:g}s") from None
    if done.returncode != 0:
        raise HarnessError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    result = parse_wrk(done.stdout)
    result["cpu"] = sampler.stop(result["requests"])
    result["loadavg_1m_before"] = load
    result["machine_before"] = quiet
    result["socket_errors"] = sum(result["errors"][k] for k in ("connect", "read", "write",
                                                                  "timeout"))
    return result


def run_problems(result: dict[str, Any]) -> list[str]:
    problems = []
    if result["socket_errors"]:
        problems.append(f"socket errors {result['errors']}")
    if result["non2xx"]:
        problems.append(f"{result['non2xx']} non-2xx answers {result['statuses']}; first: "
                        f"{result['non2xx_sample'][:300]}")
    if result["requests"] == 0:
        problems.append("no requests completed")
    return problems


def summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3) if values else 0.0

    rps = [r["requests_per_s"] for r in runs]
    return {
        "runs": len(runs),
        "requests_per_s_median": round(statistics.median(rps), 1),
        "requests_per_s_min": round(min(rps), 1),
        "requests_per_s_max": round(max(rps), 1),
        "latency_ms_median": {p: med([r["latency_ms"][p] for r in runs])
                              for p in ("p50", "p90", "p95", "p99", "p999", "max")},
        "requests_total": sum(r["requests"] for r in runs),
        "non2xx_total": sum(r["non2xx"] for r in runs),
        "socket_errors_total": sum(r["socket_errors"] for r in runs),
        "server_cpu_ms_per_req_median": med([r["cpu"].get("server_cpu_ms_per_req", 0)
                                             for r in runs]),
        "pg_cpu_ms_per_req_median": med([r["cpu"].get("pg_cpu_ms_per_req", 0) for r in runs]),
        "machine_busy_pct_median": med([r["cpu"]["machine_busy_pct"] for r in runs]),
        "pg_commits_per_req_median": med([r["cpu"].get("pg_commits_per_req", 0) for r in runs]),
        "pg_sessions_opened_total": sum(r["cpu"].get("pg_stats", {}).get("sessions", 0)
                                        for r in runs),
        "server_system_share_median": med([r["cpu"].get("server_system_share", 0)
                                           for r in runs]),
        "server_other_threads_cpu_share": round(
            sum(r["cpu"]["server_other_threads_cpu_s"] for r in runs)
            / (sum(r["cpu"]["server_cpu_s"] for r in runs) or 1), 3),
        "other_pct_median": med([r["cpu"]["other_pct"] for r in runs]),
        "other_pct_max": max(r["cpu"]["other_pct"] for r in runs),
    }


# --- profiling -------------------------------------------------------------------------------

def profile(args: argparse.Namespace, server: Server, scenario: str, ids_file: Path,
            sampler: Sampler, stem: str, cpu_us_per_req: float) -> dict[str, Any]:
    """An extra, unmeasured wrk run with py-spy sampling every worker; where time goes."""
    spy = shlex.split(args.py_spy)
    check = subprocess.run([*spy, "--version"], capture_output=True, text=True, timeout=300)
    if check.returncode != 0:
        raise HarnessError(f"py-spy is not available ({args.py_spy}): {check.stderr[-500:]}")
    workers = server.worker_pids()
    seconds = args.profile_duration
    cmd = wrk_command(args, scenario, seconds + 6, ids_file)
    outputs = [args.results_dir / f"{stem}-{scenario}-pyspy-{pid}.txt" for pid in workers]
    log(f"profiling {scenario}: py-spy on workers {workers} for {seconds:g}s under load")
    wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    spies: list[subprocess.Popen[str]] = []
    try:
        time.sleep(2)  # let the connections open and the load settle
        for pid, out in zip(workers, outputs, strict=True):
            spies.append(subprocess.Popen(
                [*spy, "record", "--pid", str(pid), "--duration", f"{seconds:g}", "--rate",
                 str(args.profile_rate), "--format", "raw", "--output", str(out),
                 # --native (C frames: uvloop, asyncpg, syscalls) needs py-spy to pause the
                 # process for each sample, so it slows the worker more.
                 *(["--native"] if args.profile_native else ["--nonblocking"])],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for proc in spies:
            proc.communicate(timeout=seconds + 120)
        stdout, _ = wrk.communicate(timeout=seconds + 120)
    finally:
        for proc in [*spies, wrk]:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    load = parse_wrk(stdout)
    stacks = hotspots.read_stacks([o for o in outputs if o.exists()])
    if not stacks:
        raise HarnessError("py-spy recorded no samples")
    summary = hotspots.summarise(stacks, top=30)
    text = hotspots.markdown(summary, cpu_us_per_req)
    md_path = args.results_dir / f"{stem}-{scenario}-profile.md"
    md_path.write_text(f"# Where server CPU goes: {scenario}\n\n"
                       f"{args.workers} worker(s); load during profiling: "
                       f"{load['requests_per_s']:.0f} req/s (py-spy running, not a measurement)"
                       f"; raw stacks: {', '.join(o.name for o in outputs)}\n\n{text}\n")
    return {"summary": summary, "markdown": str(md_path),
            "raw": [str(o) for o in outputs], "load_requests_per_s": load["requests_per_s"],
            "cpu_us_per_req": cpu_us_per_req}


# --- reporting -------------------------------------------------------------------------------

def markdown(report: dict[str, Any]) -> str:
    cfg, m = report["config"], report["machine"]
    data = report.get("data", {})
    size = data.get("end") or data.get("start") or {}
    counts = ", ".join(f"{n:,} {t}" for t, n in size.get("resources", {}).items()) or "?"
    lines = [
        f"## carenet bench {report['timestamp']} ({report['scenario']})",
        "",
        f"- machine: {m['nproc']} CPUs (nproc), {m['cpu_model']}, {m['mem_gib']} GiB, "
        f"Linux {m['kernel']}; load average at start {m['loadavg_start'][0]:.2f}",
        f"- server: {cfg['workers']} uvicorn worker(s), CPU pinning: {pinning_text(cfg)}; "
        f"PostgreSQL {report.get('postgres_version', '?')} (same machine, not pinned)",
        f"- wrk: {cfg['wrk_threads']} thread(s), {cfg['connections']} connections, "
        f"{cfg['runs']} run(s) × {cfg['duration']:g} s after a {cfg['warmup']:g} s warm-up",
        f"- data: {cfg['patients']:,} Patients seeded in transaction Bundles of "
        f"{cfg['bundle_size']}; at the end {counts}, database "
        f"{size.get('database_bytes', 0) / 1e6:.0f} MB",
        f"- code: git {report['git']['commit']}"
        + (f" with uncommitted changes (diff sha256 {report['git']['diff_sha256']})"
           if report["git"]["dirty"] else ""),
        "",
        "| scenario | req/s median | min–max | p50 ms | p95 ms | p99 ms | non-2xx | socket errors "
        "| target | server CPU ms/req | PG CPU ms/req | other load | runs | workers | pinning |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, sc in report["scenarios"].items():
        s = sc.get("summary")
        if not s:
            why = "; ".join(sc.get("problems", []))[:200] or report.get("failure", "no runs")
            lines.append(f"| {name} | failed: {why} "
                         "| | | | | | | | | | | | | |")
            continue
        lat = s["latency_ms_median"]
        target = SCENARIOS[name]["target"]
        verdict = "—" if target is None else (
            f"{target:,} {'met' if s['requests_per_s_median'] >= target else 'not met'}")
        lines.append(
            f"| {name} | {s['requests_per_s_median']:,.0f} | {s['requests_per_s_min']:,.0f}–"
            f"{s['requests_per_s_max']:,.0f} | {lat['p50']:.1f} | {lat['p95']:.1f} | "
            f"{lat['p99']:.1f} | {s['non2xx_total']} | {s['socket_errors_total']} | {verdict} | "
            f"{s['server_cpu_ms_per_req_median']:.3f} | {s['pg_cpu_ms_per_req_median']:.3f} | "
            f"{s['other_pct_median']:.0f}% (max {s['other_pct_max']:.0f}%) | "
            f"{runs_text(s)} | {cfg['workers']} | {pinning_text(cfg)} |")
    details = []
    for name, sc in report["scenarios"].items():
        s = sc.get("summary")
        if s:
            details.append(
                f"- {name}: PostgreSQL commits per request {s['pg_commits_per_req_median']:g}, "
                f"sessions opened during the runs {s['pg_sessions_opened_total']}; server CPU "
                f"in the kernel {100 * s['server_system_share_median']:.0f}%, outside the "
                f"event-loop threads {100 * s['server_other_threads_cpu_share']:.1f}%")
    if details:
        lines += ["", *details]
    problems = [f"- {name}: {p}" for name, sc in report["scenarios"].items()
                for p in sc.get("problems", [])]
    if problems:
        lines += ["", "**Problems:**", *problems]
    lines += ["", "req/s and latency percentiles: median over runs of each run's figure. CPU "
              "ms/req from /proc: the server's processes; this database's PostgreSQL backends. "
              "Other load: share of the machine's CPU used by anything else during the runs "
              "(other users, PostgreSQL background processes, kernel softirq): the noise. "
              f"Runs with other load over {report['config']['max_other_load']:g}% are noisy: "
              "repeated (at most "
              f"{report['config']['retries']} times per scenario) and left out of the summary "
              "when clean runs exist; 'runs' says how many were kept of how many made."]
    return "\n".join(lines) + "\n"


def runs_text(s: dict[str, Any]) -> str:
    text = str(s["runs"])
    if s.get("noisy_runs_in_summary"):
        text += " (all noisy)" if s["noisy_runs_in_summary"] == s["runs"] else \
            f" ({s['noisy_runs_in_summary']} noisy)"
    if s.get("runs_total", s["runs"]) > s["runs"]:
        text += f" of {s['runs_total']}"
    return text


def pinning_text(cfg: dict[str, Any]) -> str:
    if not cfg.get("server_cpus") and not cfg.get("client_cpus"):
        return "none"
    return f"server {cfg.get('server_cpus') or 'any'}, wrk {cfg.get('client_cpus') or 'any'}"


def git_info() -> dict[str, Any]:
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    # Other people edit the tree while benchmarks run: fingerprint the uncommitted changes.
    diff = git("diff", "HEAD")
    return {"commit": git("rev-parse", "--short", "HEAD") or "?", "dirty": bool(diff),
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None}


# --- the run ---------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark the carenet FHIR server with wrk.")
    p.add_argument("--scenario", default="all", choices=[*SCENARIOS, "all"])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=10, help="seconds per run")
    p.add_argument("--warmup", type=float, default=3, help="unmeasured seconds per scenario")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, help="wrk threads (default: client CPUs, or 2)")
    p.add_argument("--timeout", type=float, default=5, help="wrk per-request timeout, seconds")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--server-cpus", help="taskset CPU list for the server, e.g. 0")
    p.add_argument("--client-cpus", help="taskset CPU list for wrk, e.g. 1")
    p.add_argument("--patients", type=int, default=2000)
    p.add_argument("--bundle-size", type=int, default=100)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432",
                   help="local PostgreSQL server (user, host, port)")
    p.add_argument("--db", default="carenet_bench", help="database to (re)create and drop")
    p.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    p.add_argument("--env", action="append", default=[], metavar="CARENET_X=VALUE",
                   help="extra server setting, e.g. CARENET_DB_POOL_SIZE=5 (repeatable)")
    p.add_argument("--startup-timeout", type=float, default=90)
    p.add_argument("--max-other-load", type=float, default=15,
                   help="a run during which other processes used more than this %% of the "
                        "machine is noisy: repeated, and left out of the summary")
    p.add_argument("--retries", type=int, default=3,
                   help="at most this many extra runs per scenario to replace noisy ones")
    p.add_argument("--quiet-wait", type=float, default=120,
                   help="before each run wait at most this long for the machine to be quiet "
                        "(0: do not wait)")
    p.add_argument("--quiet-threshold", type=float, default=20,
                   help="machine busy %% under which it counts as quiet")
    p.add_argument("--profile", action="store_true",
                   help="after the measured runs, sample the workers with py-spy under load")
    p.add_argument("--profile-duration", type=float, default=15)
    p.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--profile-native", action="store_true",
                   help="py-spy --native: C and system-call frames too (pauses the workers)")
    p.add_argument("--py-spy", default="uv run --with py-spy py-spy",
                   help="how to run py-spy")
    p.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = p.parse_args(argv)
    if args.runs < 1 or args.duration <= 0 or args.connections < 1 or args.workers < 1:
        p.error("--runs, --duration, --connections and --workers must be positive")
    for spec in (args.server_cpus, args.client_cpus):
        if spec and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", spec):
            p.error(f"CPU list {spec!r}: use taskset -c syntax such as 0, 1 or 0-1")
    for item in args.env:
        if not re.fullmatch(r"CARENET_[A-Z_]+=.*", item):
            p.error(f"--env {item!r}: expected CARENET_NAME=value")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "psql", *(["taskset"] if args.server_cpus or args.client_cpus else [])):
        if not shutil.which(tool):
            log(f"{tool} is not installed")
            return 2
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally below stops the server.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))

    names = ALL if args.scenario == "all" else [args.scenario]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = stamp
    args.results_dir.mkdir(parents=True, exist_ok=True)
    threads = args.threads or (cpu_count_of(args.client_cpus) if args.client_cpus else 2)
    report: dict[str, Any] = {
        "timestamp": stamp, "scenario": args.scenario, "machine": machine_info(),
        "git": git_info(),
        "config": {"runs": args.runs, "duration": args.duration, "warmup": args.warmup,
                   "connections": args.connections,
                   "wrk_threads": max(1, min(threads, args.connections)),
                   "timeout": args.timeout, "workers": args.workers,
                   "server_cpus": args.server_cpus, "client_cpus": args.client_cpus,
                   "patients": args.patients, "bundle_size": args.bundle_size,
                   "env": args.env, "port": args.port, "db": args.db,
                   "max_other_load": args.max_other_load, "retries": args.retries,
                   "quiet_wait": args.quiet_wait, "quiet_threshold": args.quiet_threshold},
        "scenarios": {}, "data": {},
    }
    pg = server = None
    work = Path(tempfile.mkdtemp(prefix="carenet-bench-"))
    status = 0
    try:
        if port_in_use(args.port):
            raise HarnessError(f"127.0.0.1:{args.port} is already in use; pick --port")
        pg = Postgres(args.pg, args.db)
        report["postgres_version"] = pg.version()
        log(f"recreating database {args.db}")
        pg.recreate()
        extra_env = dict(item.split("=", 1) for item in args.env)
        server = Server(port=args.port, workers=args.workers, cpus=args.server_cpus,
                        database_url=pg.url, extra_env=extra_env,
                        log_path=work / "server.log")
        server.start()
        server.wait_ready(args.startup_timeout)
        report["server"] = {"command": shlex.join(server.command),
                            "worker_pids": server.worker_pids(),
                            "affinity": {p: affinity(p) for p in server.pids()}}
        log(f"server up; workers {server.worker_pids()}; seeding {args.patients} Patients")
        token = operator_token(pg.url, server.base)
        os.environ["BENCH_TOKEN"] = token  # wrk's scripts send it (common.lua use_token)
        started = time.monotonic()
        ids = seed.seed_patients(server.base, args.patients, bundle_size=args.bundle_size,
                                 token=token)
        report["data"]["seed_seconds"] = round(time.monotonic() - started, 1)
        ids_file = work / "patient-ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        if get_status(f"{server.base}/Patient/{ids[0]}", token) != 200:
            raise HarnessError(f"a seeded Patient ({ids[0]}) does not read back")
        report["data"]["start"] = pg.data_size()
        sampler = Sampler(server, pg)

        for name in names:
            entry: dict[str, Any] = {"what": SCENARIOS[name]["what"], "runs": [], "problems": []}
            report["scenarios"][name] = entry
            log(f"{name}: warm-up {args.warmup:g}s")
            warm = run_wrk(args, name, args.warmup, ids_file, sampler)
            entry["warmup"] = warm
            entry["problems"] += [f"warm-up: {p}" for p in run_problems(warm)]
            if warm["requests"] == 0 or warm["non2xx"] == warm["requests"]:
                log(f"{name}: warm-up failed ({entry['problems']}); skipping its runs")
                continue
            clean = retries = 0
            while clean < args.runs:
                if not server.alive():
                    raise HarnessError(f"the server died:\n{server.log_tail()}")
                result = run_wrk(args, name, args.duration, ids_file, sampler)
                n = len(entry["runs"]) + 1
                result["noisy"] = result["cpu"]["other_pct"] > args.max_other_load
                entry["runs"].append(result)
                entry["problems"] += [f"run {n}: {p}" for p in run_problems(result)]
                lat = result["latency_ms"]
                log(f"{name} run {n}: {result['requests_per_s']:,.0f} req/s, "
                    f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, non-2xx "
                    f"{result['non2xx']}, socket errors {result['socket_errors']}, server CPU "
                    f"{result['cpu'].get('server_cpu_ms_per_req', 0):.3f} ms/req, machine "
                    f"{result['cpu']['machine_busy_pct']}% busy, other load "
                    f"{result['cpu']['other_pct']}%{' (noisy)' if result['noisy'] else ''}")
                if not result["noisy"]:
                    clean += 1
                elif retries < args.retries:
                    retries += 1  # a noisy run is repeated, a bounded number of times
                else:
                    clean += 1  # out of retries: it counts, flagged
            kept = [r for r in entry["runs"] if not r["noisy"]] or entry["runs"]
            entry["summary"] = summarise_runs(kept)
            entry["summary"]["runs_noisy"] = sum(r["noisy"] for r in entry["runs"])
            entry["summary"]["runs_total"] = len(entry["runs"])
            entry["summary"]["noisy_runs_in_summary"] = sum(r["noisy"] for r in kept)
            if args.profile:
                per_req = entry["summary"]["server_cpu_ms_per_req_median"] * 1000
                entry["profile"] = profile(args, server, name, ids_file, sampler, stem,
                                           per_req)
            report["data"][f"after_{name}"] = pg.data_size()
        report["data"]["end"] = pg.data_size()
        if not server.alive():
            raise HarnessError(f"the server died:\n{server.log_tail()}")
        if any(sc["problems"] for sc in report["scenarios"].values()):
            status = 1
    except (HarnessError, subprocess.SubprocessError, OSError, RuntimeError) as exc:
        log(f"FAILED: {exc}")
        report["failure"] = str(exc)
        status = 2
    except (KeyboardInterrupt, SystemExit):
        log("interrupted")
        report["failure"] = "interrupted"
        status = 2
    finally:
        if server is not None:
            server.stop()
            if status != 0 and server.log_path.exists():  # keep the tracebacks of failures
                kept = args.results_dir / f"{stem}-{args.scenario}-server.log"
                shutil.copyfile(server.log_path, kept)
                report["server_log"] = str(kept)
                report["server_log_tail"] = server.log_tail(60)
        if pg is not None and not args.keep_db:
            try:
                pg.drop()
            except (HarnessError, subprocess.SubprocessError, OSError) as exc:
                log(f"could not drop {args.db}: {exc}")
        shutil.rmtree(work, ignore_errors=True)

    report["ok"] = status == 0
    base = args.results_dir / f"{stem}-{args.scenario}"
    base.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    if report.get("failure"):
        text += f"\n**Harness failure:** {report['failure']}\n"
    base.with_suffix(".md").write_text(text)
    print(text)
    for name, sc in report["scenarios"].items():
        if sc.get("profile"):
            prof = sc["profile"]
            print(f"### Where {name} CPU goes (top rows; all in {prof['markdown']})\n")
            print(hotspots.markdown(prof["summary"], prof["cpu_us_per_req"], limit=12))
    log(f"wrote {base}.json and {base}.md")
    return status


if __name__ == "__main__":
    sys.exit(main())
