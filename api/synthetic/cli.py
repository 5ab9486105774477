"""Command line for the synthetic network: `python -m api seed ...` and `serve --demo`."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

DEMO_PATIENTS = 2_000
DEMO_SEED = 42
DEFAULT_URL = "http://127.0.0.1:8000/fhir"


def add_seed_parser(sub: Any) -> None:
    seed = sub.add_parser("seed", help="generate a synthetic care network and load it through "
                                       "the FHIR API (or write NDJSON with --out)")
    seed.add_argument("--patients", type=int, default=DEMO_PATIENTS)
    seed.add_argument("--seed", type=int, default=DEMO_SEED)
    seed.add_argument("--url", help=f"FHIR base to post to (default {DEFAULT_URL} unless "
                                    "only --out is given)")
    seed.add_argument("--concurrency", type=int, default=8)
    seed.add_argument("--out", type=Path, help="write <Type>.ndjson files to this directory")
    seed.add_argument("--from", dest="from_dir", type=Path,
                      help="load the <Type>.ndjson files of this directory (a bulk export, "
                           "or --out) instead of generating a network")
    seed.add_argument("--as-of", type=date.fromisoformat,
                      help="the date the records run up to (default: today); with the same "
                           "seed and date the output is identical")
    seed.add_argument("--if-empty", action="store_true",
                      help="load only if the server holds no Patient")
    seed.add_argument("--wait", type=float, default=0.0,
                      help="wait up to this many seconds for the server to answer")
    seed.add_argument("--token", default=os.environ.get("CARENET_TOKEN"),
                      help="a bearer token with system/*.cruds (default: $CARENET_TOKEN, else "
                           "the operator's token, signed with the keys in the database of "
                           "CARENET_DATABASE_URL: the server's own)")


def run_seed(args: argparse.Namespace) -> int:
    from api.synthetic.load import seed_command

    url = args.url if args.url or args.out else DEFAULT_URL
    given = args.token

    async def token() -> str:
        return given or await _operator_token(url.rstrip("/"))

    if args.from_dir is not None:
        from api.synthetic.ndjson import load_command

        return asyncio.run(load_command(url=url or DEFAULT_URL, directory=args.from_dir,
                                        concurrency=args.concurrency, token=token))

    return asyncio.run(seed_command(
        url=url, out=args.out, seed=args.seed, n_patients=args.patients,
        as_of=args.as_of or date.today(), concurrency=args.concurrency,
        if_empty=args.if_empty, wait=args.wait,
        prefix="demo: " if args.if_empty else "", token=token if url else None))


async def _operator_token(fhir_base: str) -> str:
    """The operator's token for the server at `fhir_base` on this machine's database."""
    from api.settings import Settings
    from consent.grants import operator_token
    from fhir.db import Database

    settings = Settings()
    db = Database(settings.database_url, pool_size=1)
    try:
        return await operator_token(db, fhir_base=fhir_base, client_id="carenet-seed",
                                    issuer=settings.issuer or None)
    finally:
        await db.dispose()


def start_demo(host: str, port: int) -> subprocess.Popen[bytes]:
    """Load the demo network once the server answers, if it holds no patients yet.

    A separate process, so generating and encoding Bundles never competes with the server's
    event loop for the GIL; it exits when done and is stopped with the server.
    """
    target = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return subprocess.Popen([
        sys.executable, "-m", "api", "seed", "--patients", str(DEMO_PATIENTS),
        "--seed", str(DEMO_SEED), "--url", f"http://{target}:{port}/fhir",
        "--if-empty", "--wait", "120"])
