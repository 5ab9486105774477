"""The SNOMED CT code lists of `careplans/data/codes/` (provenance in its PROVENANCE.md).

One loader for everything that needs them: the frailty risk engine counts eFI deficits from
these lists, and the synthetic-data generator (`api/synthetic/`) codes its records from the
same files, so every deficit it writes is one the engine can find.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CODES_DIR = Path(__file__).resolve().parent / "data" / "codes"
EFI_DIR = CODES_DIR / "efi"
SNOMED = "http://snomed.info/sct"

# The 36 deficits of the electronic Frailty Index (Clegg et al., Age Ageing 2016;45:353-360),
# named as the files `efi/efi-<deficit>.csv` name them. Polypharmacy is a rule, not a list.
DEFICITS: tuple[str, ...] = (
    "activity-limitation", "anaemia", "arthritis", "atrial-fibrillation",
    "cerebrovascular-disease", "chronic-kidney-disease", "diabetes", "dizziness", "dyspnoea",
    "falls", "foot-problems", "fragility-fracture", "hearing-impairment", "heart-failure",
    "heart-valve-disease", "housebound", "hypertension", "hypotension-syncope",
    "ischaemic-heart-disease", "memory-cognitive-problems", "mobility-transfer-problems",
    "osteoporosis", "parkinsonism-tremor", "peptic-ulcer", "peripheral-vascular-disease",
    "polypharmacy", "requirement-for-care", "respiratory-disease", "skin-ulcer",
    "sleep-disturbance", "social-vulnerability", "thyroid-disease", "urinary-incontinence",
    "urinary-system-disease", "visual-impairment", "weight-loss-anorexia",
)


@dataclass(frozen=True, slots=True)
class ValueRule:
    """An observable whose value makes a deficit (a row of `efi/efi-value-rules.csv`)."""

    deficit: str
    code: str
    term: str
    rule: str
    source: str


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@cache
def deficit_codes() -> dict[str, list[tuple[str, str]]]:
    """Every eFI deficit → its SNOMED CT (code, term) pairs, in file order."""
    return {d: [(r["code"], r["term"]) for r in _rows(EFI_DIR / f"efi-{d}.csv")]
            for d in DEFICITS}


@cache
def deficits_by_code() -> dict[str, frozenset[str]]:
    """SNOMED CT code → the deficits it counts for (48 codes count for two, as in the source)."""
    out: dict[str, set[str]] = {}
    for deficit, pairs in deficit_codes().items():
        for code, _ in pairs:
            out.setdefault(code, set()).add(deficit)
    return {code: frozenset(ds) for code, ds in out.items()}


@cache
def value_rules() -> tuple[ValueRule, ...]:
    """The observables whose values count as deficits (Hb, TSH, eGFR, ACR, Barthel...)."""
    return tuple(ValueRule(**r) for r in _rows(EFI_DIR / "efi-value-rules.csv"))


@cache
def _common() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for r in _rows(CODES_DIR / "snomed-common.csv"):
        out.setdefault(r["use"], []).append((r["code"], r["term"]))
    return out


def common(use: str) -> tuple[str, str]:
    """The (code, term) of `snomed-common.csv` for `use` (its first row when several share it)."""
    try:
        return _common()[use][0]
    except KeyError:
        raise KeyError(f"snomed-common.csv has no row with use '{use}'") from None


def common_all(use: str) -> list[tuple[str, str]]:
    """Every (code, term) of `snomed-common.csv` for `use`."""
    return list(_common().get(use, ()))


def common_uses() -> list[str]:
    """Every `use` value of `snomed-common.csv`."""
    return list(_common())


@cache
def _terms() -> dict[str, str]:
    out = {c: t for pairs in deficit_codes().values() for c, t in pairs}
    out.update((c, t) for pairs in _common().values() for c, t in pairs)
    out.update((r.code, r.term) for r in value_rules())
    return out


def term(code: str) -> str | None:
    """The term of a code from any list here (snomed-common.csv first), or None."""
    return _terms().get(code)
