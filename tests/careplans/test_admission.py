"""Admission-risk flags and the priority score: each point traceable to its entries."""

from __future__ import annotations

from careplans.risk.admission import admission_risk
from careplans.risk.assessment import (
    FRAILTY,
    admission_outcome,
    changes,
    frailty_outcome,
    resource,
)
from fhir.validation import check_resource
from tests.careplans.factories import (
    AS_OF,
    condition,
    encounter,
    medicine,
    observation,
    person,
)

MEDS = ["318902004", "319283006", "325278007", "317972000", "322236009", "39733011000001106"]


def test_points_add_up_from_the_table_with_their_evidence() -> None:
    admit = [encounter("183452005", days=d) for d in (40, 200)]
    ae = [encounter("4525004", days=41), encounter(None, klass="EMER", days=100)]
    old_ae = encounter("4525004", days=400)
    cancelled = encounter("4525004", status="cancelled")
    ltcs = [condition(c) for c in ("84114007", "49436004", "44054006", "38341003")]
    inactive_ltc = condition("13645005", status="inactive")
    meds = [medicine(c) for c in MEDS]
    alone = condition("105529008")
    result = admission_risk(person(*admit, *ae, old_ae, cancelled, *ltcs, inactive_ltc, *meds,
                                   alone, age=86), AS_OF)
    points = {f.name: f.points for f in result.factors}
    assert points == {"emergency admissions": 4, "A&E attendances": 2,
                      "long-term conditions": 2, "medicines issued": 1, "age": 2,
                      "lives alone": 1}
    assert result.points == 12 and result.tier == "high"
    assert {e.ref for e in result.evidence()} == {e.ref for e in [*admit, *ae, *ltcs, *meds,
                                                                  alone]}


def test_tiers_and_an_empty_record() -> None:
    assert admission_risk(person(age=40), AS_OF).points == 0
    assert admission_risk(person(age=40), AS_OF).tier == "low"
    one = admission_risk(person(encounter("183452005"), encounter("4525004"), age=50), AS_OF)
    assert (one.points, one.tier) == (3, "moderate")


def test_narrative_reads_in_ten_seconds() -> None:
    falls = [condition("161898004", days=d) for d in (20, 180)]
    hf = condition("84114007")
    meds = [medicine(c) for c in MEDS] + [medicine("42206511000001102")]
    out = frailty_outcome(person(*falls, hf, *meds, age=82), AS_OF)
    assert out is not None
    months = sorted(f.day.strftime("%Y-%m") for f in falls)
    assert out.narrative == (f"fit frailty (0.08, 3 of 36 deficits): falls ×2 ({months[0]}, "
                             f"{months[1]}), heart failure, polypharmacy (7 medicines in 12 "
                             "months)")


def test_under_65_has_no_frailty_assessment_and_children_no_admission_score() -> None:
    assert frailty_outcome(person(age=64), AS_OF) is None
    assert frailty_outcome(person(age=65), AS_OF) is not None
    assert admission_outcome(person(age=17), AS_OF) is None


def test_changes_say_why_the_band_rose() -> None:
    hf, falls = condition("84114007"), condition("161898004", days=10)
    before = frailty_outcome(person(hf, age=80), AS_OF)
    after = frailty_outcome(person(hf, falls, *(condition(c) for c in (
        "15188001", "49049000", "165232002")), age=80), AS_OF)
    assert before and after and before.fingerprint != after.fingerprint
    text = changes(before.summary(), "2026-06-01", after)
    assert text is not None
    assert text.startswith("Since 2026-06-01: fit → mild frailty (0.03 → 0.14)")
    assert "new: falls (" in text


def test_the_assessment_is_valid_fhir_and_points_at_its_evidence() -> None:
    hf = condition("84114007")
    out = frailty_outcome(person(hf, observation("1011481000000105", 40), age=80), AS_OF)
    assert out is not None and out.method == FRAILTY
    body = resource(out, AS_OF, "Since 2026-01-01: x.")
    check_resource(dict(body), expected_type="RiskAssessment")
    assert [b["reference"] for b in body["basis"]] == out.basis
    assert body["prediction"][0]["probabilityDecimal"] == round(2 / 36, 4)
    assert body["subject"] == {"reference": "Patient/p1"} and body["status"] == "final"
    adm = admission_outcome(person(encounter("183452005"), age=80), AS_OF)
    assert adm is not None
    check_resource(dict(resource(adm, AS_OF)), expected_type="RiskAssessment")
