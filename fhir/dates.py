"""FHIR date, dateTime and instant values as the time ranges they stand for.

A FHIR date has a precision: ``2024`` is the whole year, ``2024-03-05`` the whole day
(https://hl7.org/fhir/R4/search.html#date). Both stored values and search values become
``[low, high)`` in epoch seconds (UTC), so one comparison rule serves both backends.
A time without a zone is taken as UTC.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
# Open ends of a Period, far outside any clinical date but finite for both databases.
MIN_TIME = -62135596800.0  # 0001-01-01
MAX_TIME = 253402300800.0  # 10000-01-01


class BadDate(ValueError):
    """Not a FHIR date, dateTime or instant."""


def date_range(text: str) -> tuple[float, float]:
    """The ``[low, high)`` epoch-second range of a FHIR date/dateTime/instant string."""
    m = _DATE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise BadDate(f"'{text}' is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime)")
    g = m.groupdict()
    try:
        year = int(g["y"])
        if g["m"] is None:
            low = datetime(year, 1, 1, tzinfo=UTC)
            days = 366 if calendar.isleap(year) else 365
            return low.timestamp(), low.timestamp() + days * 86400.0  # 9999 ends past datetime
        month = int(g["m"])
        if g["d"] is None:
            low = datetime(year, month, 1, tzinfo=UTC)
            days = calendar.monthrange(year, month)[1]
            return low.timestamp(), low.timestamp() + days * 86400.0
        day = int(g["d"])
        if g["H"] is None:
            low = datetime(year, month, day, tzinfo=UTC)
            return low.timestamp(), low.timestamp() + 86400.0
        tz = UTC
        if g["tz"] and g["tz"] != "Z":
            sign = 1 if g["tz"][0] == "+" else -1
            hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        second = int(g["S"] or 0)
        frac = float(g["f"]) if g["f"] else 0.0
        low = datetime(year, month, day, int(g["H"]), int(g["M"]), second, tzinfo=tz)
    except (ValueError, OverflowError) as exc:
        raise BadDate(f"'{text}' is not a valid date: {exc}") from None
    if g["S"] is None:
        width = 60.0
    elif g["f"]:
        width = 10.0 ** -(len(g["f"]) - 1)
    else:
        width = 1.0
    start = low.timestamp() + frac
    return start, start + width
