"""The eFI-style frailty index: each deficit fires on its codes and not on near misses."""

from __future__ import annotations

import pytest

from careplans.codes import DEFICITS, deficit_codes, deficits_by_code, value_rules
from careplans.risk import frailty as fr
from careplans.risk.frailty import band, frailty
from tests.careplans.factories import AS_OF, condition, medicine, observation, person

VALUE_CODES = {r.code for r in value_rules()}
CODED = [d for d in DEFICITS if d != "polypharmacy"]


def unique_code(deficit: str) -> str:
    """A code of `deficit`'s list that counts for it alone."""
    return next(c for c, _ in deficit_codes()[deficit]
                if deficits_by_code()[c] == {deficit} and c not in VALUE_CODES)


def found(*entries, **kw) -> set[str]:
    return set(frailty(person(*entries, **kw), AS_OF).deficits)


@pytest.mark.parametrize("deficit", CODED)
def test_each_deficit_fires_on_its_code(deficit: str) -> None:
    assert found(condition(unique_code(deficit))) == {deficit}


def test_every_listed_code_fires_exactly_its_deficits() -> None:
    for code, deficits in deficits_by_code().items():
        if code in VALUE_CODES:
            continue
        assert found(condition(code)) == set(deficits), code


@pytest.mark.parametrize("deficit", CODED)
@pytest.mark.parametrize(("status", "verification"), [
    ("inactive", "confirmed"), ("resolved", "confirmed"), ("remission", "confirmed"),
    ("active", "refuted"), ("active", "entered-in-error"), ("active", "provisional"),
    ("active", "unconfirmed")])
def test_not_on_a_condition_that_does_not_stand(deficit: str, status: str,
                                                verification: str) -> None:
    code = unique_code(deficit)
    assert found(condition(code, status=status, verification=verification)) == set()


@pytest.mark.parametrize("deficit", CODED)
def test_a_code_of_another_deficit_fires_that_one_only(deficit: str) -> None:
    other = next(d for d in CODED if d != deficit)
    assert deficit not in found(condition(unique_code(other)))


def test_a_recurrence_and_a_condition_without_statuses_count() -> None:
    code = unique_code("heart-failure")
    assert found(condition(code, status="recurrence")) == {"heart-failure"}
    assert found(condition(code, status=None, verification=None)) == {"heart-failure"}


def test_an_entry_dated_after_the_as_of_date_does_not_count() -> None:
    assert found(condition(unique_code("diabetes"), days=-1)) == set()


def test_falls_count_only_in_the_last_year() -> None:
    fall = unique_code("falls")
    assert found(condition(fall, days=364)) == {"falls"}
    assert found(condition(fall, days=365)) == set()
    assert found(condition(fall, days=None)) == set()  # undated: not known to be recent
    # a long-term condition has no window
    assert found(condition(unique_code("diabetes"), days=365 * 20)) == {"diabetes"}


def test_a_coded_observation_or_procedure_counts_when_final_or_completed() -> None:
    code = unique_code("housebound")
    assert found(observation(code)) == {"housebound"}
    assert found(observation(code, status="entered-in-error")) == set()
    assert found(observation(code, status="preliminary")) == set()


@pytest.mark.parametrize(("code", "value", "gender", "deficit"), [
    ("1011481000000105", 59.9, "female", "chronic-kidney-disease"),
    ("1022431000000105", 114, "female", "anaemia"),
    ("1022431000000105", 11.4, "female", "anaemia"),
    ("1022431000000105", 129, "male", "anaemia"),
    ("1027151000000105", 0.35, "female", "thyroid-disease"),
    ("1027151000000105", 5.6, "female", "thyroid-disease"),
    ("314449000", 136, "female", "hypertension"),
    ("314462001", 86, "female", "hypertension"),
    ("1023491000000104", 3.1, "female", "chronic-kidney-disease"),
    ("391068001", -2.5, "female", "osteoporosis"),
    ("725594005", 18, "female", "activity-limitation"),
    ("444297006", 1, "female", "weight-loss-anorexia"),
])
def test_values_beyond_the_rule_fire(code: str, value: float, gender: str,
                                     deficit: str) -> None:
    assert found(observation(code, value), gender=gender) == {deficit}


@pytest.mark.parametrize(("code", "value", "gender"), [
    ("1011481000000105", 60, "female"), ("1022431000000105", 115, "female"),
    ("1022431000000105", 120, "female"), ("1022431000000105", 130, "male"),
    ("1027151000000105", 0.36, "female"), ("1027151000000105", 5.5, "female"),
    ("314449000", 135, "female"), ("391068001", -2.4, "female"), ("725594005", 19, "female"),
    ("444297006", 0, "female"),
])
def test_values_within_the_rule_do_not(code: str, value: float, gender: str) -> None:
    assert found(observation(code, value), gender=gender) == set()


def test_the_latest_result_decides_and_old_results_do_not_count() -> None:
    egfr = "1011481000000105"
    assert found(observation(egfr, 45, days=200), observation(egfr, 75, days=20)) == set()
    assert found(observation(egfr, 75, days=200), observation(egfr, 45, days=20)) == {
        "chronic-kidney-disease"}
    assert found(observation(egfr, 45, days=fr.VALUE_WINDOW_DAYS)) == set()
    assert found(observation(egfr, 45, status="cancelled")) == set()


def test_every_value_rule_has_its_predicate() -> None:
    assert {r.code for r in value_rules()} == set(fr.PREDICATES)


def test_polypharmacy_is_five_distinct_medicines_in_twelve_months() -> None:
    codes = ["318902004", "319283006", "325278007", "317972000", "322236009"]
    assert found(*(medicine(c) for c in codes)) == {"polypharmacy"}
    assert found(*(medicine(c) for c in codes[:4])) == set()
    assert found(*(medicine(c) for c in codes[:4]), medicine(codes[0], days=10)) == set()
    assert found(*(medicine(c) for c in codes[:4]), medicine(codes[4], days=365)) == set()
    assert found(*(medicine(c) for c in codes[:4]),
                 medicine(codes[4], status="entered-in-error")) == set()
    assert found(*(medicine(c) for c in codes[:4]), medicine(codes[4], status="stopped")) == {
        "polypharmacy"}


@pytest.mark.parametrize(("score", "expected"), [
    (0.0, "fit"), (0.12, "fit"), (0.1200001, "mild"), (0.24, "mild"), (0.2400001, "moderate"),
    (0.36, "moderate"), (0.3600001, "severe"), (1.0, "severe")])
def test_bands_at_the_exact_cut_offs(score: float, expected: str) -> None:
    assert band(score) == expected


@pytest.mark.parametrize(("count", "expected"), [
    (0, "fit"), (4, "fit"), (5, "mild"), (8, "mild"), (9, "moderate"), (12, "moderate"),
    (13, "severe")])
def test_bands_by_deficit_count(count: int, expected: str) -> None:
    entries = [condition(unique_code(d)) for d in CODED[:count]]
    result = frailty(person(*entries), AS_OF)
    assert result.count == count
    assert result.score == count / 36
    assert result.band == expected


def test_basis_is_exactly_the_evidence() -> None:
    falls = [condition(unique_code("falls"), days=d) for d in (20, 200)]
    old_fall = condition(unique_code("falls"), days=500)
    hf = condition(unique_code("heart-failure"))
    refuted = condition(unique_code("diabetes"), verification="refuted")
    egfr_old, egfr_new = observation("1011481000000105", 70, days=300), \
        observation("1011481000000105", 44, days=10)
    unrelated = condition("38341003", status="inactive")
    meds = [medicine(c) for c in ("318902004", "319283006", "325278007", "317972000",
                                  "322236009")]
    repeat = medicine("318902004", days=100)
    result = frailty(person(*falls, old_fall, hf, refuted, egfr_old, egfr_new, unrelated,
                            *meds, repeat), AS_OF)
    assert set(result.deficits) == {"falls", "heart-failure", "chronic-kidney-disease",
                                    "polypharmacy"}
    expected = {e.ref for e in [*falls, hf, egfr_new, *meds]}
    assert {e.ref for e in result.evidence()} == expected
