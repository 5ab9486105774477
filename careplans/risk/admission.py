"""Admission-risk flags and a transparent priority score: every point has its reason.

Not a predictive model and not a probability: a short table of points over facts a clinician
can check in the record, so that a worklist can be sorted and every position explained. The
factors are the ones the issue names, each a known predictor of emergency admission; the
points are this project's choice (simple, monotone, small integers), not fitted weights.

Points (the table with its sources is in careplans/risk/README.md, "Admission-risk score"):
- emergency admissions in 12 months: 1 -> 2, 2+ -> 4 (PARR: Billings J et al., BMJ
  2006;333:327: prior emergency admission is the strongest single predictor);
- A&E attendances in 12 months: 1 -> 1, 2 -> 2, 3+ -> 3 (LACE's "E", a point per visit:
  van Walraven C et al., CMAJ 2010;182:551);
- long-term conditions: 2-3 -> 1, 4+ -> 2 (Barnett K et al., Lancet 2012;380:37);
- medicines issued in 12 months: 5-9 -> 1, 10+ -> 2 (Payne RA et al., Br J Clin Pharmacol
  2014;77:1073);
- age: 75-84 -> 1, 85+ -> 2 (NHS Digital, Hospital Admitted Patient Care Activity 2022-23);
- lives alone -> 1; housebound -> 1 (social vulnerability and housebound: eFI deficits,
  Clegg 2016).

Tiers: high >= 6, moderate 3-5, low 0-2 (our cut-offs: one emergency admission with one more
factor is at least moderate; repeated emergency use with frailty markers is high).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from careplans.codes import SNOMED, deficit_codes
from careplans.risk.evidence import Entry, Facts
from careplans.risk.frailty import medicines_issued

WINDOW_DAYS = 365
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# snomed-common.csv: 4525004 Emergency department patient visit; 183452005 Emergency hospital
# admission. An Encounter of class EMER (v3 ActCode) is an A&E attendance too.
AE_CODES = frozenset({"4525004"})
ADMISSION_CODES = frozenset({"183452005"})
# From efi-social-vulnerability.csv: the three concepts that say the person lives alone.
LIVES_ALONE = frozenset({"105529008", "160726006", "419371000000105"})
HOUSEBOUND = frozenset(code for code, _ in deficit_codes()["housebound"])
# Long-term conditions: the disease deficits of the eFI (one each, whatever the code).
LONG_TERM = ("arthritis", "atrial-fibrillation", "cerebrovascular-disease",
             "chronic-kidney-disease", "diabetes", "heart-failure", "heart-valve-disease",
             "hypertension", "ischaemic-heart-disease", "memory-cognitive-problems",
             "osteoporosis", "parkinsonism-tremor", "peripheral-vascular-disease",
             "respiratory-disease", "thyroid-disease")
_LTC_BY_CODE = {code: ltc for ltc in LONG_TERM for code, _ in deficit_codes()[ltc]}
TIERS = ((6, "high"), (3, "moderate"), (0, "low"))


@dataclass(frozen=True, slots=True)
class Factor:
    """One line of the score: what was found, its points, and the entries behind it."""

    name: str
    points: int
    detail: str
    evidence: tuple[Entry, ...] = ()


@dataclass(slots=True)
class AdmissionRisk:
    factors: list[Factor] = field(default_factory=list)
    admissions: int = 0
    ae: int = 0
    long_term: int = 0
    medicines: int = 0

    @property
    def points(self) -> int:
        return sum(f.points for f in self.factors)

    @property
    def tier(self) -> str:
        return next(name for bound, name in TIERS if self.points >= bound)

    def evidence(self) -> list[Entry]:
        seen: dict[str, Entry] = {}
        for factor in self.factors:
            for entry in factor.evidence:
                seen.setdefault(entry.ref, entry)
        return list(seen.values())


def _steps(count: int, steps: tuple[tuple[int, int], ...]) -> int:
    """Points for `count`: the points of the highest (threshold, points) step it reaches."""
    return max((points for threshold, points in steps if count >= threshold), default=0)


def _months(entries: list[Entry]) -> str:
    return ", ".join(e.day.strftime("%Y-%m") for e in entries if e.day)


def admission_risk(facts: Facts, as_of: date) -> AdmissionRisk:
    """The flags and priority score of `facts` on `as_of`."""
    out = AdmissionRisk()
    recent = [e for e in facts.entries if e.stands() and e.within(as_of, WINDOW_DAYS)]
    admissions = sorted((e for e in recent if e.type == "Encounter"
                         and e.system in (SNOMED, None) and e.code in ADMISSION_CODES),
                        key=lambda e: (e.day, e.ref))
    admitted = {e.ref for e in admissions}
    ae = sorted({e.ref: e for e in recent if e.type == "Encounter" and e.ref not in admitted
                 and ((e.code in AE_CODES and e.system in (SNOMED, None))
                      or e.klass == "EMER")}.values(), key=lambda e: (e.day, e.ref))
    out.admissions, out.ae = len(admissions), len(ae)
    if points := _steps(len(admissions), ((1, 2), (2, 4))):
        out.factors.append(Factor("emergency admissions", points,
                                  f"{len(admissions)} ({_months(admissions)})",
                                  tuple(admissions)))
    if points := _steps(len(ae), ((1, 1), (2, 2), (3, 3))):
        out.factors.append(Factor("A&E attendances", points, f"{len(ae)} ({_months(ae)})",
                                  tuple(ae)))
    standing = [e for e in facts.entries if e.type == "Condition" and e.stands()
                and e.within(as_of, None) and e.system in (SNOMED, None)]
    ltcs: dict[str, Entry] = {}
    for entry in sorted(standing, key=lambda e: (e.day or date.min, e.ref)):
        if (ltc := _LTC_BY_CODE.get(entry.code)) is not None:
            ltcs.setdefault(ltc, entry)
    out.long_term = len(ltcs)
    if points := _steps(len(ltcs), ((2, 1), (4, 2))):
        names = ", ".join(ltc.replace("-", " ") for ltc in LONG_TERM if ltc in ltcs)
        out.factors.append(Factor("long-term conditions", points, f"{len(ltcs)}: {names}",
                                  tuple(ltcs[k] for k in LONG_TERM if k in ltcs)))
    medicines = medicines_issued(facts.entries, as_of, WINDOW_DAYS)
    out.medicines = len(medicines)
    if points := _steps(len(medicines), ((5, 1), (10, 2))):
        out.factors.append(Factor("medicines issued", points, str(len(medicines)),
                                  tuple(medicines)))
    age = facts.age(as_of)
    if age is not None and (points := _steps(age, ((75, 1), (85, 2)))):
        out.factors.append(Factor("age", points, str(age)))
    coded = [e for e in facts.entries if e.type in ("Condition", "Observation", "Procedure")
             and e.stands() and e.within(as_of, None) and e.system in (SNOMED, None)]
    alone = [e for e in coded if e.code in LIVES_ALONE]
    if alone:
        out.factors.append(Factor("lives alone", 1, "yes", (alone[-1],)))
    housebound = [e for e in coded if e.code in HOUSEBOUND]
    if housebound:
        out.factors.append(Factor("housebound", 1, "yes", (housebound[-1],)))
    return out
