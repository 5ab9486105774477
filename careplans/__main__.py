"""Command line: `python -m careplans stratify [--practice ODS] [--as-of DATE] [--full]`.

Stratifies the registered population (or one practice's) on the database of
CARENET_DATABASE_URL, incrementally unless `--full`, with a progress bar on stderr, and
prints the run's counts. Runs the migrations first, as `python -m api migrate` would.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime
from pathlib import Path

# Run from the checkout: the project's `fhir` package must precede fhir.resources' (DESIGN.md).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date (YYYY-MM-DD)") from None


async def _stratify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from api.settings import Settings
    from careplans.risk.flows import stratify
    from fhir.db import Database
    from fhir.migrate import upgrade

    settings = Settings()
    db = Database(settings.database_url)
    bar = tqdm(total=0, unit="patients", file=sys.stderr, disable=args.quiet)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done)

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m careplans")
    commands = parser.add_subparsers(dest="command", required=True)
    strat = commands.add_parser("stratify", help="risk-stratify the registered population")
    strat.add_argument("--practice", metavar="ODS", help="only this practice's patients")
    strat.add_argument("--as-of", type=_date, metavar="DATE",
                       help="the day to assess on (default: today, UTC)")
    strat.add_argument("--full", action="store_true",
                       help="everyone, not only patients whose record changed")
    strat.add_argument("--batch", type=int, default=2000, help="patients per batch")
    strat.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    return asyncio.run(_stratify(args))


if __name__ == "__main__":
    sys.exit(main())
