"""Recorded prevalence in 5,000 generated patients looks like an English GP list.

Bounds are deliberately wide (they must hold for a 5,000-patient sample) and come from:
- NHS Digital, Quality and Outcomes Framework 2022-23, national register prevalence for
  England: hypertension 14.4% of all ages; diabetes 7.5% of people 17+ (about 6% of all
  ages); dementia 0.7% of all ages.
- NHS Digital, Health Survey for England 2019: diagnosed hypertension in about 4 in 10 people
  aged 65-79 and more than half of those 80+.
- NHS Digital, National Diabetes Audit: diabetes in about 1 in 6 people 65+.
- NHS Digital, Recorded Dementia Diagnoses, with Dementia UK: Update (2014): recorded dementia
  about 1-5% at 65-79 and about 1 in 8 at 80+ (two thirds of estimated true prevalence).
The generator's own targets and their sources: api/synthetic/data/prevalence.csv, SOURCES.md.
"""

from __future__ import annotations

import pytest

from api.synthetic import Record
from api.synthetic.clinical import efi_band

BANDS = ((0, 39), (40, 64), (65, 79), (80, 120))

# condition → {band or "all": (low %, high %)}
BOUNDS = {
    "hypertension": {"all": (11, 18), (0, 39): (0, 3), (40, 64): (10, 24), (65, 79): (30, 50),
                     (80, 120): (42, 68)},
    "diabetes": {"all": (4.5, 9), (0, 39): (0, 2.5), (40, 64): (5, 14), (65, 79): (12, 25),
                 (80, 120): (11, 27)},
    "dementia": {"all": (0.4, 1.4), (0, 39): (0, 0.1), (40, 64): (0, 0.5), (65, 79): (0.8, 5),
                 (80, 120): (6, 22)},
}


def percent(records: list[Record], condition: str) -> float:
    return 100 * sum(condition in r.conditions for r in records) / len(records)


def in_band(records: list[Record], band: tuple[int, int]) -> list[Record]:
    return [r for r in records if band[0] <= r.age <= band[1]]


@pytest.mark.parametrize("condition", sorted(BOUNDS))
def test_prevalence_by_age_band_is_within_published_bounds(
        population_5000: list[Record], condition: str) -> None:
    for band, (low, high) in BOUNDS[condition].items():
        group = population_5000 if band == "all" else in_band(population_5000, band)
        value = percent(group, condition)
        assert low <= value <= high, f"{condition} {band}: {value:.1f}% not in {low}-{high}%"


@pytest.mark.parametrize("condition", ["hypertension", "diabetes", "dementia", "copd",
                                       "heart-failure", "atrial-fibrillation", "ckd", "falls"])
def test_prevalence_rises_with_age(population_5000: list[Record], condition: str) -> None:
    young, middle, old = (percent(in_band(population_5000, b), condition) for b in BANDS[:3])
    assert young <= middle <= old
    assert old > 0


def test_age_structure_is_an_english_list(population_5000: list[Record]) -> None:
    """ONS mid-2022 (England): about 18% aged 65+, 2.4% 85+, a little over half female."""
    n = len(population_5000)
    assert 15 <= 100 * sum(r.age >= 65 for r in population_5000) / n <= 22
    assert 1.2 <= 100 * sum(r.age >= 85 for r in population_5000) / n <= 3.5
    assert 48 <= 100 * sum(r.sex == "female" for r in population_5000) / n <= 53


def test_efi_bands_of_people_65_and_over_resemble_clegg_2016(
        population_5000: list[Record]) -> None:
    """Clegg et al., Age Ageing 2016: fit ~50%, mild ~35%, moderate ~12%, severe ~3%."""
    old = [r for r in population_5000 if r.age >= 65]
    share = {b: 100 * sum(efi_band(r.efi) == b for r in old) / len(old)
             for b in ("fit", "mild", "moderate", "severe")}
    assert 40 <= share["fit"] <= 65
    assert 25 <= share["mild"] <= 45
    assert 5 <= share["moderate"] <= 20
    assert 0.5 <= share["severe"] <= 8
