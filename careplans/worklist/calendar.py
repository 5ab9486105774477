"""Working days in England and Wales: weekends and the bank holidays GOV.UK publishes
(careplans/data/worklist/bank-holidays-england-and-wales.csv; source in PROVENANCE.md)."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from functools import cache

from careplans.worklist.rules import DATA


@cache
def bank_holidays() -> frozenset[date]:
    path = DATA / "bank-holidays-england-and-wales.csv"
    with path.open(newline="", encoding="utf-8") as f:
        return frozenset(date.fromisoformat(r["date"]) for r in csv.DictReader(f))


@cache
def covered_years() -> frozenset[int]:
    return frozenset(d.year for d in bank_holidays())


def is_working_day(day: date) -> bool:
    """Monday to Friday and not a bank holiday (outside the years the file covers, only
    weekends are known: see covered_years)."""
    return day.weekday() < 5 and day not in bank_holidays()


def add_working_days(day: date, n: int) -> date:
    """The n-th working day after `day` (n = 0: `day` itself, or the next working day if it
    is not one). "Within 2 working days of Friday" is the following Tuesday."""
    current = day
    while not is_working_day(current):
        current += timedelta(days=1)
    if n == 0:
        return current
    current = day
    left = n
    while left:
        current += timedelta(days=1)
        if is_working_day(current):
            left -= 1
    return current


def working_days_between(start: date, end: date) -> int:
    """Working days after `start` up to and including `end` (0 when end <= start)."""
    count, current = 0, start
    while current < end:
        current += timedelta(days=1)
        count += is_working_day(current)
    return count
