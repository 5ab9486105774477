"""Command line: `python -m api serve | migrate`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

# Run from the checkout: the project's `fhir` package must precede fhir.resources' (DESIGN.md).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    if args.host:
        settings.host = args.host
    if args.port:
        settings.port = args.port
    if args.workers:
        settings.workers = args.workers
    if settings.workers > 1:
        asyncio.run(_migrate(settings))  # once, before the workers start
        os.environ["CARENET_MIGRATE_ON_START"] = "false"
    uvicorn.run("api.main:app", host=settings.host, port=settings.port,
                workers=settings.workers, log_level=settings.log_level, access_log=False,
                factory=False)


async def _migrate(settings: Settings) -> None:
    from fhir.db import Database
    from fhir.migrate import upgrade

    db = Database(settings.database_url)
    try:
        await upgrade(db.engine)
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description="carenet")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the FHIR server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    sub.add_parser("migrate", help="bring the database schema up to date")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "serve":
        _serve(args, settings)
    elif args.command == "migrate":
        asyncio.run(_migrate(settings))


if __name__ == "__main__":
    main()
