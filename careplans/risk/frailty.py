"""An eFI-style frailty index: the 36 deficits of the electronic Frailty Index.

Clegg A, Bates C, Young J, et al. Development and validation of an electronic frailty index
using routine primary care electronic health record data. Age Ageing 2016;45(3):353-360
(https://doi.org/10.1093/ageing/afw039). score = deficits present / 36; bands
fit <= 0.12 < mild <= 0.24 < moderate <= 0.36 < severe (the paper's cut-offs).

This is an eFI-STYLE index, not the licensed eFI: the deficits and cut-offs are the
published ones, but the code lists are public SNOMED CT maps of the original Read codes
(careplans/data/codes/PROVENANCE.md), and the rules below about status and time are ours.

How a deficit is found (each choice with its reason):
- a coded entry (Condition, Observation, Procedure, Encounter type) whose SNOMED CT code is
  in the deficit's list (`careplans/codes.py`), that stands by its statuses (evidence.py:
  active and confirmed Conditions only) and is dated on or before the as-of date. As in the
  eFI (gm-sde `subquery-efi-common.sql`) a coded deficit has no look-back limit, except
  those in WINDOW_DAYS;
- falls: only in the 12 months before the as-of date (NICE CG161 1.1.1.1 asks about falls
  "in the past year"; the issue's rule);
- a measured value (`efi-value-rules.csv`): the most recent result of that observable in
  the last two years decides (a later normal result clears an earlier abnormal one; an older
  result no longer describes the person: our choice, the eFI has no window);
- polypharmacy: 5 or more distinct medicines (by code) issued in the 12 months before the
  as-of date ("the Andy Clegg algorithm" as gm-sde implements it, PROVENANCE.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

from careplans.codes import DEFICITS, SNOMED, deficits_by_code, value_rules
from careplans.risk.evidence import Entry, Facts

N_DEFICITS = 36
assert len(DEFICITS) == N_DEFICITS
CODED_TYPES = frozenset({"Condition", "Observation", "Procedure", "Encounter"})
WINDOW_DAYS: dict[str, int] = {"falls": 365}
VALUE_WINDOW_DAYS = 730
POLYPHARMACY_DAYS = 365
POLYPHARMACY_MIN = 5
# (upper bound, band): a score at a bound is in the lower band (Clegg 2016, Methods).
BANDS: tuple[tuple[float, str], ...] = ((0.12, "fit"), (0.24, "mild"), (0.36, "moderate"))

LABELS: dict[str, str] = {
    "activity-limitation": "activity limitation", "anaemia": "anaemia",
    "arthritis": "arthritis", "atrial-fibrillation": "atrial fibrillation",
    "cerebrovascular-disease": "cerebrovascular disease",
    "chronic-kidney-disease": "chronic kidney disease", "diabetes": "diabetes",
    "dizziness": "dizziness", "dyspnoea": "dyspnoea", "falls": "falls",
    "foot-problems": "foot problems", "fragility-fracture": "fragility fracture",
    "hearing-impairment": "hearing impairment", "heart-failure": "heart failure",
    "heart-valve-disease": "heart valve disease", "housebound": "housebound",
    "hypertension": "hypertension", "hypotension-syncope": "hypotension/syncope",
    "ischaemic-heart-disease": "ischaemic heart disease",
    "memory-cognitive-problems": "memory and cognitive problems",
    "mobility-transfer-problems": "mobility and transfer problems",
    "osteoporosis": "osteoporosis", "parkinsonism-tremor": "parkinsonism/tremor",
    "peptic-ulcer": "peptic ulcer", "peripheral-vascular-disease": "peripheral vascular disease",
    "polypharmacy": "polypharmacy", "requirement-for-care": "requirement for care",
    "respiratory-disease": "respiratory disease", "skin-ulcer": "skin ulcer",
    "sleep-disturbance": "sleep disturbance", "social-vulnerability": "social vulnerability",
    "thyroid-disease": "thyroid disease", "urinary-incontinence": "urinary incontinence",
    "urinary-system-disease": "urinary system disease",
    "visual-impairment": "visual impairment", "weight-loss-anorexia": "weight loss/anorexia",
}
assert set(LABELS) == set(DEFICITS)


def band(score: float) -> str:
    """The frailty band of a score: fit <= 0.12 < mild <= 0.24 < moderate <= 0.36 < severe.
    Compared on the exact fraction (deficits/36), rounded to 9 places so that, say, a
    binary 0.12 and 0.12 from a sum land the same side."""
    score = round(score, 9)
    for bound, name in BANDS:
        if score <= bound:
            return name
    return "severe"


# ---- measured values (efi-value-rules.csv; the `rule` column, as code) ------------------

Predicate = Callable[[float, str | None], bool]


def _haemoglobin(value: float, gender: str | None) -> bool:
    # g/dL below 25 or g/L between 25 and the cut-off, as gm-sde's rule ("from Andy Clegg").
    low_dl, low_l = (11.5, 115) if gender == "female" else (13, 130)
    return 0 < value < low_dl or 25 < value < low_l


PREDICATES: dict[str, tuple[str, Predicate]] = {}  # code -> (observable group, rule)


def _rule(group: str, predicate: Predicate, *codes: str) -> None:
    for code in codes:
        PREDICATES[code] = (group, predicate)


_rule("24h systolic BP", lambda v, g: v > 135, "314449000")
_rule("24h diastolic BP", lambda v, g: v > 85, "314462001")
_rule("haemoglobin", _haemoglobin, "1022431000000105", "271026005", "1107511000000100")
_rule("TSH", lambda v, g: v < 0.36 or v > 5.5, "1027151000000105", "1022791000000101",
      "313440008")
_rule("eGFR", lambda v, g: 0 < v < 60, "1020291000000106", "1011481000000105",
      "1107411000000104", "80274001")
_rule("urine ACR", lambda v, g: v > 3, "1023491000000104", "271075006")
_rule("urine PCR", lambda v, g: v > 50, "1030991000000102", "401095009", "1028731000000100",
      "313500004")
_rule("urine microalbumin", lambda v, g: v > 3, "1010251000000109", "46716003")
_rule("24h urine protein", lambda v, g: v > 150, "1016051000000101")
_rule("hip DXA T-score", lambda v, g: v <= -2.5, "391068001")
# Barthel: <= 18 on the 0-20 scale; 21-90 on the 0-100 scale (eFI2's rule, the CSV says).
_rule("Barthel", lambda v, g: 0 <= v <= 18 or 21 <= v <= 90, "725594005", "443653008")
_rule("MUST", lambda v, g: v >= 1, "444297006")



def _value_deficits() -> dict[str, str]:
    """Value-rule code -> its deficit, from efi-value-rules.csv (checked against PREDICATES
    by the tests: every rule row has its predicate here)."""
    return {rule.code: rule.deficit for rule in value_rules()}


_VALUE_DEFICIT = _value_deficits()


@dataclass(slots=True)
class Frailty:
    """The index of one patient: the deficits present, each with the entries that made it."""

    deficits: dict[str, list[Entry]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.deficits)

    @property
    def score(self) -> float:
        return self.count / N_DEFICITS

    @property
    def band(self) -> str:
        return band(self.score)

    def evidence(self) -> list[Entry]:
        """Every entry that counted, once, in deficit order."""
        seen: dict[str, Entry] = {}
        for deficit in DEFICITS:
            for entry in self.deficits.get(deficit, ()):
                seen.setdefault(entry.ref, entry)
        return list(seen.values())


def _coded(entries: Iterable[Entry], as_of: date) -> dict[str, list[Entry]]:
    by_code = deficits_by_code()
    found: dict[str, list[Entry]] = {}
    for entry in entries:
        if entry.type not in CODED_TYPES or entry.system not in (SNOMED, None):
            continue
        if entry.code in _VALUE_DEFICIT:  # a measurement counts by its value, not its code
            continue
        for deficit in by_code.get(entry.code, ()):
            if entry.stands() and entry.within(as_of, WINDOW_DAYS.get(deficit)):
                found.setdefault(deficit, []).append(entry)
    return found


def _measured(entries: Iterable[Entry], as_of: date, gender: str | None) -> dict[str, Entry]:
    latest: dict[tuple[str, str], Entry] = {}  # (deficit, observable) -> its latest result
    for entry in entries:
        if (entry.type != "Observation" or entry.value is None or entry.code not in PREDICATES
                or entry.system not in (SNOMED, None)):
            continue
        if not (entry.stands() and entry.within(as_of, VALUE_WINDOW_DAYS)):
            continue
        key = (_VALUE_DEFICIT[entry.code], PREDICATES[entry.code][0])
        held = latest.get(key)
        if held is None or (entry.day, entry.ref) > (held.day, held.ref):  # type: ignore[operator]
            latest[key] = entry
    out: dict[str, Entry] = {}
    for (deficit, _), entry in sorted(latest.items()):
        if PREDICATES[entry.code][1](entry.value, gender):  # type: ignore[arg-type]
            out.setdefault(deficit, entry)
    return out


def medicines_issued(entries: Iterable[Entry], as_of: date,
                     days: int = POLYPHARMACY_DAYS) -> list[Entry]:
    """The latest issue of each distinct medicine (system|code) in the `days` before as_of."""
    latest: dict[tuple[str | None, str], Entry] = {}
    for entry in entries:
        if entry.type != "MedicationRequest" or not entry.stands():
            continue
        if not entry.within(as_of, days):
            continue
        key = (entry.system, entry.code)
        held = latest.get(key)
        if held is None or (entry.day, entry.ref) > (held.day, held.ref):  # type: ignore[operator]
            latest[key] = entry
    return sorted(latest.values(), key=lambda e: (e.code, e.ref))


def frailty(facts: Facts, as_of: date) -> Frailty:
    """The eFI-style index of `facts` on `as_of`."""
    found = _coded(facts.entries, as_of)
    for deficit, entry in _measured(facts.entries, as_of, facts.gender).items():
        found.setdefault(deficit, []).append(entry)
    medicines = medicines_issued(facts.entries, as_of)
    if len(medicines) >= POLYPHARMACY_MIN:
        found["polypharmacy"] = medicines
    for entries in found.values():
        entries.sort(key=lambda e: (e.day or date.min, e.ref))
    return Frailty({d: found[d] for d in DEFICITS if d in found})
