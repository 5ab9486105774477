"""Command line: `python -m careplans stratify [--practice ODS] [--as-of DATE] [--full]` and
`python -m careplans worklist build [--as-of DATE]`.

Stratifies the registered population (or one practice's) on the database of
CARENET_DATABASE_URL, incrementally unless `--full`, with a progress bar on stderr, and
prints the run's counts. Runs the migrations first, as `python -m api migrate` would.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

# Run from the checkout: the project's `fhir` package must precede fhir.resources' (DESIGN.md).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date (YYYY-MM-DD)") from None


async def _stratify(args: argparse.Namespace) -> int:
    from api.settings import Settings
    from careplans.risk.flows import stratify
    from fhir.db import Database
    from fhir.migrate import upgrade

    settings = Settings()
    db = Database(settings.database_url)
    bar, progress = _progress_bar("patients", args.quiet)

    try:
        await upgrade(db.engine)
        as_of = args.as_of or datetime.now(UTC).date()
        run = await stratify(db, as_of=as_of, practice=args.practice, full=args.full,
                             batch=args.batch, progress=progress)
    except LookupError as exc:
        bar.close()
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    finally:
        await db.dispose()
    bar.close()
    seconds = (run.finished or run.started) - run.started
    print(f"run {run.id} ({'full' if run.full else 'incremental'}, as of {run.as_of}"
          f"{', practice ' + run.practice if run.practice else ''}): "
          f"{run.considered} patients considered, {run.created} assessments created, "
          f"{run.updated} updated, {run.unchanged} unchanged, {seconds:.1f} s")
    return 0


def _progress_bar(unit: str, quiet: bool) -> tuple[Any, Callable[[int, int], None]]:
    """A progress bar on standard error, and the (done, total) callback the flows report to."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit=unit, file=sys.stderr, disable=quiet)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done)

    return bar, progress


async def _worklist(args: argparse.Namespace) -> int:
    from api.settings import Settings
    from careplans.worklist import events
    from careplans.worklist.build import build
    from fhir.db import Database
    from fhir.migrate import upgrade

    events.register_rules()
    db = Database(Settings().database_url)
    bar, progress = _progress_bar("items", args.quiet)

    try:
        await upgrade(db.engine)
        as_of = args.as_of or datetime.now(UTC).date()
        handled = await events.drain(db, as_of=as_of)  # events the server left, if any
        started = time.perf_counter()
        built = await build(db, as_of=as_of, progress=progress)
    finally:
        bar.close()
        await db.dispose()
    print(f"worklist build (as of {as_of}): {built.considered} patients considered, "
          f"{built.created} items created, {built.closed} closed, {built.open} open; "
          f"{handled} queued events handled; {time.perf_counter() - started:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m careplans")
    commands = parser.add_subparsers(dest="command", required=True)
    strat = commands.add_parser("stratify", help="risk-stratify the registered population")
    strat.add_argument("--practice", metavar="ODS", help="only this practice's patients")
    strat.add_argument("--as-of", type=_date, metavar="DATE",
                       help="the day to assess on (default: today, UTC)")
    strat.add_argument("--full", action="store_true",
                       help="everyone, not only patients whose record changed")
    strat.add_argument("--batch", type=int, default=1000,
                       help="patients written per transaction (default 1000)")
    strat.add_argument("--quiet", action="store_true", help="no progress bar")
    work = commands.add_parser("worklist", help="case management worklists")
    work_commands = work.add_subparsers(dest="action", required=True)
    build = work_commands.add_parser("build", help="build the worklists from the record")
    build.add_argument("--as-of", type=_date, metavar="DATE",
                       help="the day to build for (default: today, UTC)")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.command == "worklist":
        return asyncio.run(_worklist(args))
    return asyncio.run(_stratify(args))


if __name__ == "__main__":
    sys.exit(main())
