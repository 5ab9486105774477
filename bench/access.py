"""What access control costs on read and search: the same requests, the same run, with and
without it (issue 5: keep it under 20%).

    uv run python bench/access.py --db postgresql://postgres@127.0.0.1:5432/carenet_ingest25k \
        [--runs 3 --duration 8 --connections 16 --server-cpus 0 --client-cpus 1]

On a network database (bench/network.py ingest), for the patients registered at the largest
practice, four servers take turns within each run:
- `open`: bench/open_app.py, the same code with access control switched off (no token check,
  no decision, no SQL filter, no audit): the baseline;
- `gp`: the real server, a GP of that practice signed in (user/*.cruds): the relationship,
  Consent and label rules, and an AuditEvent per request;
- `gp-unaudited`: bench/unaudited_app.py, the real server with the audit of reads switched
  off, the same GP: what the decisions cost, apart from the AuditEvents;
- `operator`: the real server, the network's backend service (system/*.cruds).
Requests: reads of those patients' Patient and Observation resources by id, and two of the
clinician searches (active problems; active medications with their Medication included).
The cost is 1 - (req/s with) / (req/s open), from the medians. Results go to
bench/results/<timestamp>-network-access.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from network import RESULTS, ROOT, launch, machine, save, stop_server, wrk  # noqa: E402
from principals import gp_of_largest_practice, tokens  # noqa: E402

KINDS = {
    "read Patient": "/fhir/Patient/{patient}",
    "read Observation": "/fhir/Observation/{observation}",
    "problems": "/fhir/Condition?patient={patient}&clinical-status=active",
    "medications": "/fhir/MedicationRequest?patient={patient}&status=active"
                   "&_include=MedicationRequest:medication",
}


def start(app: str, db_url: str, port: int, workers: int, cpus: str | None) -> subprocess.Popen:
    """uvicorn serving `app` ("api.main:app" or "bench.open_app:app") on `db_url`."""
    cmd = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--workers",
           str(workers), "--log-level", "warning", "--no-access-log"]
    return launch(cmd, {"CARENET_DATABASE_URL": db_url, "CARENET_LOG_LEVEL": "warning",
                        "CARENET_MIGRATE_ON_START": "false", "PYTHONPATH": str(ROOT)},
                  port, cpus, app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, default=8096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server-cpus")
    parser.add_argument("--client-cpus")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    gp, patients, observations, _practice = asyncio.run(gp_of_largest_practice(args.db, 2000))
    rng = random.Random(3)
    work = RESULTS / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, template in KINDS.items():
        paths = [template.format(patient=rng.choice(patients), observation=o)
                 for o in (observations if "observation" in template else patients)]
        files[kind] = work / f"access-{kind.replace(' ', '-')}.txt"
        files[kind].write_text("\n".join(paths) + "\n")
    signed = asyncio.run(tokens(args.db, args.port, gp))
    apps = {"open": "bench.open_app:app", "gp": "api.main:app",
            "gp-unaudited": "bench.unaudited_app:app", "operator": "api.main:app"}
    dbname = args.db.rsplit("/", 1)[-1]
    results: dict[str, dict[str, list[dict]]] = {v: {k: [] for k in KINDS} for v in apps}
    for _ in range(args.runs):
        for variant, app in apps.items():
            proc = start(app, args.db, args.port, args.workers, args.server_cpus)
            try:
                run_args = argparse.Namespace(**{**vars(args), "token": signed[variant]})
                for kind, path in files.items():
                    wrk(path, argparse.Namespace(**{**vars(run_args), "duration": 3}))  # warm
                    results[variant][kind].append(wrk(path, run_args, cpu_of=(proc.pid, dbname)))
            finally:
                stop_server(proc)

    def med(variant: str, kind: str, key: str) -> float:
        return statistics.median(r.get(key, 0) for r in results[variant][kind])

    rows = []
    for kind in KINDS:
        base = med("open", kind, "requests_per_s")
        cells = [f"{base:,.0f}"]
        for variant in ("gp", "gp-unaudited", "operator"):
            rate = med(variant, kind, "requests_per_s")
            bad = sum(r["non2xx"] for r in results[variant][kind])
            cells.append(f"{rate:,.0f} ({100 * (1 - rate / base):+.0f}%)"
                         + (f", {bad} non-2xx" if bad else ""))
        cells += [f"{med(v, kind, 'server_cpu_ms_per_req'):.2f}" for v in apps]
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
    table = (f"## the cost of access control on {dbname}\n\n- machine: {machine()}\n"
             f"- server: {args.workers} worker(s), cpus {args.server_cpus or 'any'}; wrk 1 thread, "
             f"{args.connections} connections, cpus {args.client_cpus or 'any'}; {args.runs} runs "
             f"x {args.duration} s, the three servers in turn within each run (medians)\n"
             f"- GP: Practitioner/{gp}, {len(patients)} of their practice's patients\n\n"
             "| requests | open req/s | GP req/s (cost) | GP without audit (cost) | "
             "operator req/s (cost) | server CPU ms/req open | GP | GP without audit | "
             "operator |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
             + "\n".join(rows) + "\n\n" + "\n".join(f"- {k}: `{v}`" for k, v in KINDS.items())
             + "\n")
    save("access", {"results": results, "machine": machine(), "args": vars(args),
                    "gp": gp}, table)


if __name__ == "__main__":
    main()
