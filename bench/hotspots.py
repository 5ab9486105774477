"""Where server time goes: a summary of py-spy's collapsed stacks (`py-spy record --format raw`).

Each input line is `frame;frame;...;leaf COUNT`, a frame `function (path:line)`. py-spy samples
only threads that are running (no `--idle`), so sample shares are shares of the workers' CPU
time; times CPU µs per request (measured by bench/run.py from /proc) they give µs per request.
Without `--native`, time in C code (uvloop, asyncpg's protocol, httptools, system calls such
as a socket send) counts as self time of the Python frame that called it. Samples whose leaf is
a thread wait (Condition.wait...) are left out: py-spy reports idle pool threads there.

    uv run python bench/hotspots.py bench/results/<ts>-read-pyspy-*.txt [--cpu-us-per-req 600]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")
# py-spy names files relative to sys.path: "uvicorn/server.py", "threading.py", "api/app.py".
# First match wins; a file matching none is the standard library's (or native code's).
COMPONENTS = [
    ("pydantic / fhir.resources (validation)",
     re.compile(r"^(pydantic|pydantic_core|fhir/resources|fhir_core)/")),
    ("project: api/", re.compile(r"^api/")),
    ("project: fhir/", re.compile(r"^fhir/")),
    ("uvicorn (HTTP protocol, server)", re.compile(r"^uvicorn/")),
    ("httptools (HTTP parser)", re.compile(r"^httptools/")),
    ("fastapi (routing, dependencies)", re.compile(r"^fastapi/")),
    ("starlette (ASGI, middleware, responses)", re.compile(r"^starlette/")),
    ("anyio (thread pool for sync dependencies)", re.compile(r"^anyio/")),
    ("sqlalchemy (engine, compile, pool, greenlet bridge)", re.compile(r"^sqlalchemy/")),
    ("asyncpg (driver; C calls and socket I/O count here)", re.compile(r"^asyncpg/")),
    ("orjson / jsonpatch", re.compile(r"^(orjson|jsonpatch|jsonpointer)/")),
    ("asyncio / uvloop (event loop)", re.compile(r"^(asyncio|uvloop)/")),
    ("email.utils / datetime (headers)", re.compile(r"^(email/|_strptime|datetime)")),
    ("threading (thread hand-offs)", re.compile(r"^(threading|queue)\.py")),
]
# Leaf frames of threads waiting, not running: py-spy (without --idle) still reports some of
# them, e.g. anyio's idle pool threads in Condition.wait, which /proc shows use ~no CPU.
IDLE_LEAVES = {("Condition.wait", "threading.py"), ("Event.wait", "threading.py"),
               ("Thread._wait_for_tstate_lock", "threading.py"), ("Thread.join", "threading.py"),
               ("Queue.get", "queue.py"), ("EpollSelector.select", "selectors.py"),
               ("SimpleQueue.get", "queue.py"),
               ("Connection._recv", "multiprocessing/connection.py")}  # uvicorn's ping pipe

# Frames under every sample (process start-up, the event loop's run loop): not costs.
BOOTSTRAP = {"<module>", "spawn_main", "_main", "BaseProcess._bootstrap", "BaseProcess.run",
             "subprocess_started", "Process.target", "Server.run", "asyncio_run", "Runner.run",
             "run", "main", "Server.serve", "Server._serve", "Multiprocess.run",
             "BaseEventLoop.run_until_complete", "BaseEventLoop.run_forever",
             "BaseEventLoop._run_once", "Handle._run", "Context.run"}


def parse_frame(frame: str) -> tuple[str, str]:
    """(function, file) of one py-spy frame; the line number is dropped."""
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    return m.group("func"), m.group("path")


def short(path: str) -> str:
    """A file as py-spy names it, or shortened the same way when it gave a full path."""
    for marker in ("site-packages/", "/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    match = re.search(r"/lib/python3\.\d+/(.*)$", path)
    return match.group(1) if match else path


def component(path: str) -> str:
    path = short(path)
    for name, pattern in COMPONENTS:
        if pattern.search(path):
            return name
    return "python stdlib / native"


def read_stacks(paths: list[Path]) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            # Drop py-spy's leading process/thread pseudo-frames, if any.
            frames = tuple(f for f in stack.split(";") if " (" in f and f.endswith(")"))
            if frames:
                stacks[frames] += int(count)
    return stacks


def summarise(stacks: Counter[tuple[str, ...]], top: int = 25) -> dict[str, Any]:
    idle = 0
    for frames in list(stacks):
        func, path = parse_frame(frames[-1])
        if (func, short(path)) in IDLE_LEAVES:
            idle += stacks.pop(frames)
    total = sum(stacks.values()) or 1
    self_fn: Counter[str] = Counter()
    self_comp: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    for frames, n in stacks.items():
        func, path = parse_frame(frames[-1])
        self_fn[f"{func} ({short(path)})"] += n
        self_comp[component(path)] += n
        seen_fn: set[str] = set()
        for frame in frames:
            func, path = parse_frame(frame)
            key = f"{func} ({short(path)})"
            if func not in BOOTSTRAP and key not in seen_fn:
                seen_fn.add(key)
                incl_fn[key] += n

    def rows(counter: Counter[str], limit: int) -> list[dict[str, Any]]:
        return [{"name": k, "samples": v, "share": v / total} for k, v in
                counter.most_common(limit)]

    return {"samples": total, "idle_samples_dropped": idle,
            "self_by_component": rows(self_comp, 50), "self_by_function": rows(self_fn, top),
            "inclusive_by_function": rows(incl_fn, top)}


def markdown(summary: dict[str, Any], cpu_us_per_req: float | None = None,
             limit: int | None = None) -> str:
    def table(title: str, rows: list[dict[str, Any]]) -> list[str]:
        head = "| " + title + " | share of worker CPU |"
        sep = "|---|---:|"
        if cpu_us_per_req:
            head += " µs per request |"
            sep += "---:|"
        out = [head, sep]
        for r in rows[:limit]:
            line = f"| `{r['name']}` | {r['share'] * 100:.1f}% |"
            if cpu_us_per_req:
                line += f" {r['share'] * cpu_us_per_req:.0f} |"
            out.append(line)
        return out + [""]

    lines = [f"py-spy samples: {summary['samples']} (left out: "
             f"{summary.get('idle_samples_dropped', 0)} of threads waiting in Condition.wait "
             "and the like)"
             + (f"; worker CPU per request: {cpu_us_per_req:.0f} µs" if cpu_us_per_req else ""),
             ""]
    lines += table("component (self time: the frame's file)", summary["self_by_component"])
    lines += table("function (self time)", summary["self_by_function"])
    lines += table("function (inclusive; process start-up and event-loop frames left out)",
                   summary["inclusive_by_function"])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="py-spy --format raw outputs")
    parser.add_argument("--cpu-us-per-req", type=float, help="worker CPU µs per request")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(markdown(summarise(read_stacks(args.files), args.top), args.cpu_us_per_req))


if __name__ == "__main__":
    main()
