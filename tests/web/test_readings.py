"""Form input to FHIR, without a server: home readings, questionnaire answers, narratives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from web.portal import readings
from web.portal.charts import trend
from web.portal.words import narrative

NOW = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)


def test_a_blood_pressure_reading_is_a_vital_signs_panel_with_ucum_units() -> None:
    body = readings.reading({"kind": "blood-pressure", "systolic": "128", "diastolic": "82",
                             "when": "2026-03-04T08:30"}, patient="p1", performer="Patient/p1",
                            now=NOW)
    assert body["category"][0]["coding"][0]["code"] == "vital-signs"
    assert {c["code"] for c in body["code"]["coding"]} == {"85354-9", "75367002"}
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"],
             c["valueQuantity"]["code"]) for c in body["component"]] == [
        ("8480-6", 128, "mm[Hg]"), ("8462-4", 82, "mm[Hg]")]
    assert body["performer"] == [{"reference": "Patient/p1"}]
    assert body["effectiveDateTime"] == "2026-03-04T08:30:00+00:00"


def test_weight_and_glucose_carry_their_units() -> None:
    weight = readings.reading({"kind": "weight", "weight": "71.4"}, patient="p",
                              performer="RelatedPerson/c", now=NOW)
    assert weight["valueQuantity"] == {"value": 71.4, "unit": "kg",
                                       "system": "http://unitsofmeasure.org", "code": "kg"}
    glucose = readings.reading({"kind": "glucose", "glucose": "6.2"}, patient="p",
                               performer="Patient/p", now=NOW)
    assert glucose["valueQuantity"]["code"] == "mmol/L"
    assert glucose["code"]["coding"][0]["code"] == "15074-8"


@pytest.mark.parametrize(("form", "field", "words"), [
    ({"kind": "blood-pressure", "systolic": "", "diastolic": "80"}, "systolic", "Enter"),
    ({"kind": "blood-pressure", "systolic": "abc", "diastolic": "80"}, "systolic", "number"),
    ({"kind": "blood-pressure", "systolic": "80", "diastolic": "120"}, "diastolic", "lower"),
    ({"kind": "blood-pressure", "systolic": "400", "diastolic": "80"}, "systolic", "between"),
    ({"kind": "weight", "weight": "700"}, "weight", "between 2 and 400 kg"),
    ({"kind": "glucose", "glucose": "6", "when": "2027-01-01T00:00"}, "when", "future"),
    ({"kind": "height"}, "kind", "Choose"),
])
def test_a_reading_that_cannot_be_right_is_refused_with_words_to_fix_it(
        form: dict[str, str], field: str, words: str) -> None:
    with pytest.raises(readings.Invalid) as refused:
        readings.reading(form, patient="p", performer="Patient/p", now=NOW)
    assert words in refused.value.errors[field]


QUESTIONNAIRE = {"resourceType": "Questionnaire", "id": "q1", "url": "https://x/q1",
                 "item": [{"linkId": "mood", "text": "Mood?", "type": "choice", "required": True,
                           "answerOption": [{"valueCoding": {"code": "good"}}]},
                          {"linkId": "g", "type": "group", "item": [
                              {"linkId": "sleep", "text": "Hours of sleep", "type": "integer"}]}]}


def test_answers_become_a_questionnaire_response_to_the_questionnaire() -> None:
    body = readings.response(QUESTIONNAIRE, {"q-mood": "good", "q-sleep": "7"}, patient="p",
                             author="Patient/p", now=NOW)
    assert body["questionnaire"] == "https://x/q1" and body["status"] == "completed"
    assert [(i["linkId"], i["answer"][0]) for i in body["item"]] == [
        ("mood", {"valueCoding": {"code": "good"}}), ("sleep", {"valueInteger": 7})]


def test_a_missing_required_answer_or_an_unknown_option_is_refused() -> None:
    with pytest.raises(readings.Invalid) as refused:
        readings.response(QUESTIONNAIRE, {"q-sleep": "x"}, patient="p", author="Patient/p")
    assert set(refused.value.errors) == {"q-mood", "q-sleep"}
    with pytest.raises(readings.Invalid):
        readings.response(QUESTIONNAIRE, {"q-mood": "<script>"}, patient="p", author="Patient/p")


def test_a_narrative_keeps_its_words_and_drops_all_markup() -> None:
    blocks = narrative('<div xmlns="http://www.w3.org/1999/xhtml"><h2>If things change</h2>'
                       '<ul><li>Call <b>111</b></li></ul><p>Less &lt;script&gt; here</p>'
                       '<script>alert(1)</script></div>')
    assert blocks == [("heading", "If things change"), ("item", "Call 111"),
                      ("para", "Less <script> here")]


def test_a_trend_chart_has_a_title_a_description_and_one_line_per_series() -> None:
    svg = trend("Weight over time", "kg", {"Weight": [("2025-01-01", 80.0), ("2025-06-01", 78.5)]})
    assert svg.startswith("<svg") and "<title" in svg and "2 readings" in svg
    assert svg.count("<path") == 1 and svg.count("<circle") == 2
    assert trend("Nothing", "kg", {}) == ""
