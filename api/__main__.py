"""Command line: `python -m api serve [--demo] | migrate | seed | token | register-client`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

# Run from the checkout: the project's `fhir` package must precede fhir.resources' (DESIGN.md).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn
    from sqlalchemy.engine import make_url

    from api.errors import FhirHttpToolsProtocol

    if args.host:
        settings.host = args.host
    if args.port:
        settings.port = args.port
    if args.workers:
        settings.workers = args.workers
    if settings.workers > 1 and make_url(settings.database_url).get_backend_name() == "sqlite":
        sys.exit("SQLite is the single-process embedded store: run one worker, or use "
                 "PostgreSQL (CARENET_DATABASE_URL=postgresql://...) for several.")
    if settings.workers > 1:
        asyncio.run(_migrate(settings))  # once, before the workers start
        os.environ["CARENET_MIGRATE_ON_START"] = "false"
    demo = None
    if args.demo:  # load the demo network in the background once the server answers
        from api.synthetic.cli import start_demo

        demo = start_demo(settings.host, settings.port)
    try:
        uvicorn.run("api.main:app", host=settings.host, port=settings.port,
                    workers=settings.workers, log_level=settings.log_level, access_log=False,
                    factory=False, http=FhirHttpToolsProtocol)
    finally:
        if demo is not None and demo.poll() is None:
            demo.terminate()


async def _migrate(settings: Settings) -> None:
    from fhir.db import Database
    from fhir.migrate import upgrade

    db = Database(settings.database_url)
    try:
        await upgrade(db.engine)
    finally:
        await db.dispose()


async def _token(settings: Settings, args: argparse.Namespace) -> str:
    from consent.grants import operator_token
    from fhir.db import Database
    from fhir.migrate import upgrade

    user = args.user
    if user is not None and not user.startswith(("Patient/", "Practitioner/", "RelatedPerson/")):
        sys.exit("--user takes Patient/<id>, Practitioner/<id> or RelatedPerson/<id> (a carer)")
    default = ("system/*.cruds" if user is None else "patient/*.cruds launch/patient"
               if user.startswith("Patient/") else "user/*.cruds")
    base = (args.base or settings.base_url
            or f"http://{settings.host}:{settings.port}/fhir").rstrip("/")
    db = Database(settings.database_url)
    try:
        await upgrade(db.engine)
        if user is not None:
            refused = await _refuse_user(db, user)
            if refused:
                sys.exit(f"no token: {refused}")
        return await operator_token(db, fhir_base=base, client_id="carenet-cli",
                                    scope=args.scope or default, user=user,
                                    lifetime=int(args.hours * 3600),
                                    issuer=settings.issuer or None)
    finally:
        await db.dispose()


async def _refuse_user(db: Any, user: str) -> str | None:
    """Why `user` may not have a token (unknown, inactive, staff without a role), or None:
    the server would refuse the token at once (401), so say so before printing one."""
    from consent import users

    type_, _, id_ = user.partition("/")
    async with db.read() as conn:
        body = await users.exists(conn, type_, id_)
        if body is None:
            return (f"{user} is not in this server's database (CARENET_DATABASE_URL). Find "
                    f"ids with a search, e.g. GET /fhir/{type_}?_count=5 with the backend "
                    "service's token (python -m api token).")
        if body.get("active") is False:
            return f"{user} is inactive (active: false); tokens are for active users only."
        if type_ == "Practitioner" and not await users.practitioner_roles(conn, id_):
            return (f"{user} has no PractitionerRole, so no organisation or role to act in; "
                    "give them one first.")
    return None


async def _register_client(settings: Settings, source: str) -> int:
    import json

    from consent.clients import register
    from consent.oauth_errors import OAuth2Error
    from fhir.db import Database
    from fhir.migrate import upgrade

    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    db = Database(settings.database_url)
    try:
        await upgrade(db.engine)
        async with db.write() as conn:
            registered = await register(conn, json.loads(text), operator=True)
    except (ValueError, OAuth2Error) as exc:
        print(f"not registered: {getattr(exc, 'description', None) or exc}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()
    print(json.dumps(registered, indent=2))
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description="carenet")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the FHIR server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--demo", action="store_true",
                       help="load the 2,000-patient synthetic demo network if there is no Patient")
    sub.add_parser("migrate", help="bring the database schema up to date")
    client = sub.add_parser("register-client",
                            help="register an OAuth client from RFC 7591 metadata (JSON), "
                                 "also when /oauth/register is closed")
    client.add_argument("metadata", help="a JSON file, or - for standard input")
    token = sub.add_parser("token", help="print an access token signed with this server's "
                                         "keys (for trying the API; needs its database)")
    token.add_argument("--user", help="Practitioner/<id>, Patient/<id> or RelatedPerson/<id> "
                                      "(a carer; default: the network's backend service)")
    token.add_argument("--scope", help="default user/*.cruds for a user, patient/*.cruds for a "
                                       "patient, system/*.cruds for the service")
    token.add_argument("--base", default=None,
                       help="the FHIR base the token is for (default http://HOST:PORT/fhir, "
                            "or CARENET_BASE_URL)")
    token.add_argument("--hours", type=float, default=1.0)
    from api.synthetic.cli import add_seed_parser, run_seed

    add_seed_parser(sub)
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "serve":
        _serve(args, settings)
    elif args.command == "migrate":
        asyncio.run(_migrate(settings))
    elif args.command == "seed":
        sys.exit(run_seed(args))
    elif args.command == "register-client":
        sys.exit(asyncio.run(_register_client(settings, args.metadata)))
    elif args.command == "token":
        print(asyncio.run(_token(settings, args)))


if __name__ == "__main__":
    main()
