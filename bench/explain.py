"""EXPLAIN (ANALYZE, BUFFERS) the SQL a search request runs, on a loaded database.

    uv run python bench/explain.py --db postgresql://postgres@127.0.0.1:5432/carenet_ingest25k \
        '/fhir/Patient?general-practitioner=Organization/X&birthdate=le1950-06-01&_sort=family'

The request goes through the real application (in process, with the operator's token), every
statement `fhir.search.sql` runs is captured with its bound values, and each is explained as a
prepared statement with those values: what the server sends, not a hand-written copy.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg
import httpx

from api.app import create_app
from api.settings import Settings
from fhir.search import sql


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--repeat", type=int, default=3, help="explain each statement N times")
    ap.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--generic", action="store_true",
                    help="explain the generic plan, as PostgreSQL may pick for a prepared "
                         "statement after five runs (plan_cache_mode = force_generic_plan)")
    ap.add_argument("--user", help="sign in as this user (e.g. Practitioner/<id>: the filters "
                                   "of a GP run) instead of the network's backend service")
    ap.add_argument("path", nargs="+")
    args = ap.parse_args()

    captured: list[tuple[str, list[Any]]] = []
    original = sql.render

    def render(stmt: Any, dialect: Any) -> tuple[str, list[Any]]:
        text, values = original(stmt, dialect)
        captured.append((text, values))
        return text, values

    sql.render = render  # type: ignore[assignment]
    base = "http://127.0.0.1:8080"
    settings = Settings(database_url=args.db, migrate_on_start=False, base_url=f"{base}/fhir")
    app = create_app(settings)
    from consent.grants import operator_token

    async with app.router.lifespan_context(app):
        as_user = ({"scope": "user/*.cruds openid fhirUser", "user": args.user}
                   if args.user else {})
        token = await operator_token(app.state.db, fhir_base=f"{base}/fhir",
                                     client_id="carenet-bench", **as_user)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            for path in args.path:
                captured.clear()
                start = time.perf_counter()
                response = await client.get(path)
                ms = 1000 * (time.perf_counter() - start)
                body = response.json()
                if response.status_code != 200:
                    print(body)
                print(f"## {path}\n{response.status_code} in {ms:.1f} ms, "
                      f"{len(body.get('entry', []))} entries\n")
                for text, values in list(captured):
                    await _explain(args, text, values)


async def _explain(args: argparse.Namespace, text: str, values: list[Any]) -> None:
    print(text, "\n", values, "\n")
    conn = await asyncpg.connect(args.db)
    try:
        options = "ANALYZE, BUFFERS" if args.analyze else "COSTS"
        if args.generic:  # EXPLAIN of a statement with parameters plans it with their values
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE searched AS {text}")
            text = f"EXECUTE searched({', '.join(_literal(v) for v in values)})"
            values = []
        for i in range(args.repeat):
            rows = await conn.fetch(f"EXPLAIN ({options}) {text}", *values)
            lines = [r[0] for r in rows]
            if i == args.repeat - 1:
                print("\n".join(lines))
            else:
                print(lines[-1])
        print()
    finally:
        await conn.close()


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


if __name__ == "__main__":
    asyncio.run(main())
