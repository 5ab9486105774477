"""The generator's data tables (`data/*.csv`, sources in `data/SOURCES.md`), read once."""

from __future__ import annotations

import bisect
import csv
import itertools
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@dataclass(frozen=True, slots=True)
class AgeBand:
    age_from: int
    age_to: int
    weight: float
    female: float  # share of the band that is female, 0..1


@dataclass(frozen=True, slots=True)
class Population:
    """Age and sex of an English GP list, as cumulative weights for sampling."""

    bands: tuple[AgeBand, ...]
    cumulative: tuple[float, ...]

    def sample(self, rng: random.Random) -> tuple[int, str]:
        """(age in whole years, 'female' | 'male')."""
        i = bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])
        band = self.bands[min(i, len(self.bands) - 1)]
        if band.age_to - band.age_from > 5:  # the open top band: numbers fall with age
            age = band.age_from + min(int(rng.expovariate(0.3)), band.age_to - band.age_from)
        else:
            age = rng.randint(band.age_from, band.age_to)
        return age, "female" if rng.random() < band.female else "male"


@cache
def population() -> Population:
    bands = tuple(AgeBand(int(r["age_from"]), int(r["age_to"]), float(r["persons_pct"]),
                          float(r["female_pct"]) / 100) for r in _rows("population.csv"))
    return Population(bands, tuple(itertools.accumulate(b.weight for b in bands)))


@cache
def prevalence() -> dict[str, list[tuple[int, int, float, float]]]:
    """condition → [(age_from, age_to, female 0..1, male 0..1)] from `prevalence.csv`."""
    out: dict[str, list[tuple[int, int, float, float]]] = {}
    for r in _rows("prevalence.csv"):
        out.setdefault(r["condition"], []).append(
            (int(r["age_from"]), int(r["age_to"]), float(r["female_pct"]) / 100,
             float(r["male_pct"]) / 100))
    return out


def rate(condition: str, age: int, sex: str) -> float:
    """The recorded prevalence (0..1) of `condition` at `age` for `sex`; 0 outside its bands."""
    for lo, hi, female, male in prevalence()[condition]:
        if lo <= age <= hi:
            return female if sex == "female" else male
    return 0.0


@dataclass(frozen=True, slots=True)
class Medicine:
    key: str
    code: str
    term: str
    dose: str


@cache
def medicines() -> dict[str, Medicine]:
    return {r["key"]: Medicine(r["key"], r["code"], r["term"], r["dose"])
            for r in _rows("medications.csv")}


@cache
def staff_roles() -> dict[str, tuple[str, str]]:
    """staff role → (SDS job role code, display)."""
    return {r["role"]: (r["sds_code"], r["sds_display"]) for r in _rows("staff-roles.csv")}
