"""The special search parameter `near` (Location.position), by great-circle distance.

https://hl7.org/fhir/R4/location.html#positional and the R4 SearchParameter Location-near:
`near=[latitude]|[longitude]|[distance]|[units]` in WGS84 decimal degrees; "if the units are
omitted, then kms should be assumed; if the distance is omitted, then the server can use its
own discretion". Here: units km, m, mi or the UCUM `[mi_i]` (international mile); without a
distance, DEFAULT_KM. Distances are haversine distances on a sphere of the mean Earth radius
(R1 = 6371.0088 km, IUGG; Moritz, "Geodetic Reference System 1980", J. Geodesy 74, 2000),
within 0.5% of the ellipsoidal distance, which the spec allows ("servers may search using
various techniques that might have differing accuracies").

Order: `_sort=near` sorts by distance from the point of the search's `near` (nearest first;
`-near` farthest first). R4 leaves the order of a search to the server unless `_sort` is
given; a search with `near` and no `_sort` is ordered by distance too, which is what a person
asking "near me" expects.

SQL: the index (sp_position: param, lat, lon) answers a bounding box around the point; the
exact haversine distance is computed only for the rows inside it. SQLite (3.35+, built with
its math functions) and PostgreSQL share one expression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from fhir.errors import BadRequest
from fhir.registry import SearchParam
from fhir.schema import INDEX_TABLES
from fhir.search.aliases import alias

EARTH_RADIUS_KM = 6371.0088
DEFAULT_KM = 50.0
MAX_KM = math.pi * EARTH_RADIUS_KM  # half the circumference: everywhere
UNITS = {"km": 1.0, "m": 0.001, "mi": 1.609344, "[mi_i]": 1.609344}  # 1 mi = 1609.344 m


@dataclass(frozen=True, slots=True)
class Point:
    """A `near` value: where, and how far from it (km)."""

    lat: float
    lon: float
    km: float


def _number(code: str, what: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not text.isascii() or "_" in text or not math.isfinite(value):
        raise BadRequest(f"Parameter '{code}': the {what} '{text}' is not a number; the form "
                         "is latitude|longitude|distance|units, e.g. 51.5074|-0.1278|10|km.")
    return value


def parse(code: str, value: str) -> Point:
    """`lat|lon[|distance[|units]]` as a Point, or a 400 saying what is wrong."""
    parts = value.split("|")
    if len(parts) < 2 or len(parts) > 4:
        raise BadRequest(f"Parameter '{code}' takes latitude|longitude|distance|units "
                         f"(e.g. 51.5074|-0.1278|10|km), not '{value}'.")
    lat = _number(code, "latitude", parts[0])
    lon = _number(code, "longitude", parts[1])
    if not -90 <= lat <= 90:
        raise BadRequest(f"Parameter '{code}': latitude {parts[0]} is outside -90 to 90 "
                         "(the order is latitude|longitude).")
    if not -180 <= lon <= 180:
        raise BadRequest(f"Parameter '{code}': longitude {parts[1]} is outside -180 to 180.")
    units = parts[3] if len(parts) == 4 and parts[3] else "km"
    if units not in UNITS:
        raise BadRequest(f"Parameter '{code}': unknown units '{units}' (use km, m, mi or "
                         "[mi_i]).")
    if len(parts) >= 3 and parts[2]:
        distance = _number(code, "distance", parts[2])
        if distance < 0:
            raise BadRequest(f"Parameter '{code}': the distance must not be negative.")
        km = distance * UNITS[units]
    else:
        km = DEFAULT_KM
    return Point(lat, lon, min(km, MAX_KM))


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two WGS84 points (haversine formula)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def distance_sql(lat: Any, lon: Any, point: Point) -> Any:
    """The haversine distance (km) from `point` to the columns (`lat`, `lon`), in SQL."""
    f = sa.func
    half_dlat = f.sin(f.radians(lat - point.lat) / 2)
    half_dlon = f.sin(f.radians(lon - point.lon) / 2)
    h = half_dlat * half_dlat + math.cos(math.radians(point.lat)) * f.cos(f.radians(lat)) \
        * half_dlon * half_dlon
    root = f.sqrt(h)
    clamped = sa.case((root > 1.0, 1.0), else_=root)  # rounding must not leave asin's domain
    return 2 * EARTH_RADIUS_KM * f.asin(clamped)


def _box(c: Any, point: Point) -> list[Any]:
    """A bounding box holding every position within `point.km` (index-friendly bounds)."""
    dlat = math.degrees(point.km / EARTH_RADIUS_KM)
    out = [c.lat >= point.lat - dlat, c.lat <= point.lat + dlat]
    top = min(90.0, abs(point.lat) + dlat)
    if top < 89.0:
        dlon = dlat / math.cos(math.radians(top))
        if point.lon - dlon >= -180 and point.lon + dlon <= 180:  # no wrap round the antimeridian
            out += [c.lon >= point.lon - dlon, c.lon <= point.lon + dlon]
    return out


def near(rid: Any, sp: SearchParam, modifier: str | None, values: list[str]) -> Any:
    """Some position of the row within the distance of one of the points (OR-values)."""
    if modifier is not None:
        raise BadRequest(f"Parameter '{sp.code}' takes no modifier (':{modifier}').")
    c = alias(INDEX_TABLES["position"]).c
    within = []
    for value in values:
        point = parse(sp.code, value)
        within.append(sa.and_(*_box(c, point), distance_sql(c.lat, c.lon, point) <= point.km))
    return sa.exists().where(c.rid == rid, c.param == sp.code, sa.or_(*within))


def sort_expression(table: Any, row: Any, code: str, point: Point) -> Any:
    """The distance (km) of the row's nearest position from `point` (a sort key)."""
    c = table.c
    return (sa.select(sa.func.min(distance_sql(c.lat, c.lon, point)))
            .where(c.rid == row.c.rid, c.param == code).scalar_subquery())
