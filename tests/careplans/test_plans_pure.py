"""The care plan logic without a database: lifecycle, validation, narrative, draft, additions."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from datetime import date
from typing import Any

import pytest

from careplans.plans import contribute, draft, model, validation
from careplans.plans.narrative import XHTML, narrative
from careplans.plans.record import Record
from careplans.plans.rules import PATIENT_REFUSED, RULE
from fhir.errors import BadRequest, Forbidden, Unprocessable
from fhir.validation import check_resource
from tests.careplans.support import plan, ref

STATUSES = ("draft", "active", "on-hold", "completed", "revoked", "entered-in-error")
ALLOWED = {
    ("draft", "draft"), ("draft", "active"), ("draft", "revoked"),
    ("draft", "entered-in-error"), ("active", "active"), ("active", "on-hold"),
    ("active", "completed"), ("active", "revoked"), ("active", "entered-in-error"),
    ("on-hold", "on-hold"), ("on-hold", "active"), ("on-hold", "completed"),
    ("on-hold", "revoked"), ("on-hold", "entered-in-error"),
    ("completed", "entered-in-error"), ("revoked", "entered-in-error"),
}


@pytest.mark.parametrize("old", STATUSES)
@pytest.mark.parametrize("new", STATUSES)
def test_the_lifecycle_allows_exactly_its_transitions(old: str, new: str) -> None:
    before, after = plan("p", status=old), plan("p", status=new)
    if (old, new) in ALLOWED:
        validation.check(before, after)
    else:
        with pytest.raises(Unprocessable):
            validation.check(before, after)


def test_a_live_plan_needs_a_named_coordinator_and_a_review_date() -> None:
    validation.check(None, plan("p"))
    for status in ("active", "on-hold"):
        with pytest.raises(Unprocessable) as caught:
            validation.check(None, plan("p", status=status, coordinator=None, review=None))
        words = str(caught.value)
        assert "no named care coordinator" in words and "no review date" in words
        assert f"cannot be {status}" in words
    validation.check(None, plan("p", status="draft", coordinator=None, review=None))
    for who in ("Patient/p", "Organization/o", "RelatedPerson/r"):
        with pytest.raises(Unprocessable, match="care coordinator"):
            validation.check(None, plan("p", coordinator=who))
    cancelled = plan("p")
    cancelled["activity"][-1]["detail"]["status"] = "cancelled"
    with pytest.raises(Unprocessable, match="no review date"):
        validation.check(None, cancelled)


def test_a_contingency_needs_a_trigger_and_an_action() -> None:
    body = plan("p")
    body["activity"][0]["detail"].pop("description")
    with pytest.raises(Unprocessable, match="what to do"):
        validation.check(None, body)


def test_a_revision_keeps_what_the_person_wrote() -> None:
    old = plan("p", note=[{"text": "I want to stay home", "authorReference": ref("Patient", "p")},
                          {"text": "clinic note"}])
    validation.check(old, {**old, "note": old["note"][:1]})  # a clinician's note may go
    with pytest.raises(Unprocessable, match="Patient/p"):
        validation.check(old, {**old, "note": old["note"][1:]})
    rewritten = copy.deepcopy(old)
    rewritten["note"][0]["text"] = "I want to go to a home"
    with pytest.raises(Unprocessable):
        validation.check(old, rewritten)


def _tags(div: str) -> list[str]:
    root = ET.fromstring(div)
    assert root.tag == f"{{{XHTML}}}div"
    return [el.text or "" for el in root.iter(f"{{{XHTML}}}h3")]


def test_the_narrative_puts_what_to_do_and_preferences_before_contacts() -> None:
    body = plan("p", note=[{"text": "<script>alert(1)</script>",
                            "authorReference": ref("Patient", "p", "Ann")}])
    text = narrative(body)
    assert text["status"] == "generated"
    headings = _tags(text["div"])
    assert headings[:3] == ["If things change (contingency and escalation plan)",
                            "Treatment preferences (ReSPECT)", "Contacts"]
    assert "<script>" not in text["div"] and "&lt;script&gt;" in text["div"]
    div = text["div"]
    assert "If breathless at rest or chest pain:" in div
    assert "Out of hours:</b> Call 999" in div
    assert "CPR: Not for attempted cardiopulmonary resuscitation" in div
    assert "Preferred place of death: Home, with her daughter" in div
    assert "Cath Coord, 01632 960002" in div
    check_resource({**body, "text": text})  # what is stored is valid FHIR


def test_the_narrative_says_when_there_is_no_cpr_decision_or_contingency() -> None:
    body = plan("p")
    body["extension"] = []
    body["activity"] = body["activity"][1:]
    div = narrative(body)["div"]
    assert "CPR: no recommendation recorded" in div
    assert "No contingency plan recorded." in div


def test_the_write_rule_regenerates_the_text_and_refuses_patients() -> None:
    body = plan("p", text={"status": "generated",
                           "div": f'<div xmlns="{XHTML}">stale</div>'})
    RULE.prepare(body)
    assert "stale" not in body["text"]["div"] and "If things change" in body["text"]["div"]
    other = {"resourceType": "CarePlan", "status": "active", "intent": "plan",
             "subject": ref("Patient", "p"), "text": {"status": "generated", "div": "x"}}
    RULE.prepare(other)
    assert other["text"]["div"] == "x"  # not an anticipatory plan: left alone
    for source in ("Patient/p", "RelatedPerson/r"):
        with pytest.raises(Forbidden) as caught:
            RULE.prepare(plan("p", meta={"source": source}))
        assert str(caught.value) == PATIENT_REFUSED
    RULE.prepare(plan("p", meta={"source": "Organization/o"}))


def _record(**kw: Any) -> Record:
    return Record(patient={"resourceType": "Patient", "id": "p",
                           "name": [{"given": ["Ann"], "family": "Able"}]}, **kw)


def _cond(id_: str, code: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": id_,
            "code": {"coding": [{"system": model.SNOMED, "code": code}], "text": id_}}


def _med(id_: str, name: str) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": id_,
            "medicationCodeableConcept": {"text": name}}


def test_the_draft_proposes_a_medication_review_from_five_distinct_medicines() -> None:
    four = [_med(str(i), n) for i, n in enumerate(("a", "b", "c", "d", "d"))]
    five = [*four, _med("9", "e")]
    assert "medication review" not in str(draft.build(_record(medicines=four), date(2026, 12, 1)))
    built = draft.build(_record(medicines=five), date(2026, 12, 1))
    assert "Structured medication review: 5 current medicines" in str(built["activity"])


def test_the_draft_proposes_falls_and_home_visits_only_from_their_own_codes() -> None:
    falls = draft.build(_record(conditions=[_cond("f", "161898004")]), date(2026, 12, 1))
    assert "falls risk assessment" in str(falls["activity"])
    near = draft.build(_record(conditions=[_cond("h", "84114007")]), date(2026, 12, 1))
    assert "falls" not in str(near["activity"]) and "Home visit" not in str(near["activity"])
    home = draft.build(_record(conditions=[_cond("b", "160689007")]), date(2026, 12, 1))
    assert "Home visit: housebound" in str(home["activity"])


def test_the_draft_review_date_and_subject() -> None:
    built = draft.build(_record(), date(2026, 12, 1))
    assert model.review_date(built) == "2027-06-01"
    assert built["subject"] == {"reference": "Patient/p", "display": "Ann Able"}
    assert "author" not in built  # nobody to name: the clinician must, before it is active
    with pytest.raises(Unprocessable, match="care coordinator"):
        validation.check(None, {**built, "status": "active"})


def test_the_latest_final_risk_assessment_counts() -> None:
    risks = [{"id": "a", "status": "final", "occurrenceDateTime": "2026-01-01"},
             {"id": "b", "status": "final", "occurrenceDateTime": "2026-06-01"},
             {"id": "c", "status": "preliminary", "occurrenceDateTime": "2026-09-01"},
             {"id": "d", "status": "final", "occurrenceDateTime": "2026-03-01",
              "meta": {"lastUpdated": "2026-12-01T00:00:00Z"}}]
    assert draft.latest_risk(risks)["id"] == "b"
    assert draft.latest_risk(risks[2:3]) is None


def test_the_previous_plan_is_the_live_one_else_the_latest() -> None:
    plans = [{"id": "old", "status": "completed", "meta": {"lastUpdated": "2026-05-01"}},
             {"id": "live", "status": "active", "meta": {"lastUpdated": "2026-01-01"}},
             {"id": "err", "status": "entered-in-error", "meta": {"lastUpdated": "2026-09-01"}}]
    assert draft.previous_plan(plans)["id"] == "live"
    assert draft.previous_plan([plans[0], plans[2]])["id"] == "old"
    assert draft.previous_plan([plans[2]]) is None


def test_an_addition_keeps_the_clinical_content_and_names_its_author() -> None:
    before = plan("p", goal=[ref("Goal", "clinical", "Fewer admissions")])
    addition = contribute.parse({"resourceType": "Parameters", "parameter": [
        {"name": "whatMatters", "valueString": "My dog"},
        {"name": "comment", "valueString": "Please ring my daughter first"}]})
    after = contribute.apply(before, addition, author="Patient/p", goal_ids=["g1"],
                             now="2026-12-04T10:00:00+00:00")
    assert validation.clinical_changes(before, after) == []
    assert after["goal"][0] == before["goal"][0]
    assert after["goal"][1]["reference"] == "Goal/g1"
    assert {n["text"] for n in after["note"]} == {"Please ring my daughter first",
                                                  "What matters to me: My dog"}
    assert after["contributor"] == [{"reference": "Patient/p"}]
    assert before.get("note") is None  # the version it came from is untouched


def test_clinical_changes_names_what_an_addition_must_not_touch() -> None:
    before = plan("p", goal=[ref("Goal", "clinical")])
    changed = copy.deepcopy(before)
    changed["activity"].pop()
    changed["goal"] = []
    assert validation.clinical_changes(before, changed) == ["activity", "goal"]
    assert validation.clinical_changes(before, {**before, "author": ref("Patient", "p")}) == [
        "author"]


def test_nothing_is_added_to_a_closed_plan_and_bad_parameters_are_named() -> None:
    addition = contribute.Addition(comments=("hello",))
    for status in ("completed", "revoked", "entered-in-error"):
        with pytest.raises(Unprocessable, match="closed"):
            contribute.apply(plan("p", status=status), addition, author="Patient/p",
                             goal_ids=[], now="2026-12-04")
    for body, words in (({"resourceType": "Patient"}, "Parameters"),
                        ({"resourceType": "Parameters"}, "Nothing to add"),
                        ({"resourceType": "Parameters", "parameter": [
                            {"name": "comment", "valueString": "  "}]}, "needs some text")):
        with pytest.raises(BadRequest, match=words):
            contribute.parse(body)


def test_whom_to_call_is_described_from_the_record() -> None:
    rec = _record(people={
        "PractitionerRole/r": {"resourceType": "PractitionerRole", "id": "r",
                               "practitioner": ref("Practitioner", "x"),
                               "organization": ref("Organization", "o"),
                               "code": [{"text": "Community nurse"}]},
        "Practitioner/x": {"resourceType": "Practitioner", "id": "x",
                           "name": [{"given": ["Jo"], "family": "Bloggs"}]},
        "Organization/o": {"resourceType": "Organization", "id": "o", "name": "Riverside",
                           "telecom": [{"system": "email", "value": "a@b"},
                                       {"system": "phone", "value": "01632 960111"}]},
        "RelatedPerson/c": {"resourceType": "RelatedPerson", "id": "c",
                            "name": [{"text": "Mary Able"}], "relationship": [
                                {"text": "Daughter"}],
                            "telecom": [{"system": "phone", "value": "07700 900001"}]}})
    assert draft.describe(ref("PractitionerRole", "r", "old"), rec)["display"] == (
        "Jo Bloggs (Community nurse), Riverside, tel 01632 960111")
    assert draft.describe(ref("RelatedPerson", "c"), rec)["display"] == (
        "Mary Able (Daughter), tel 07700 900001")
    assert draft.describe(ref("Practitioner", "unknown", "kept"), rec) == ref(
        "Practitioner", "unknown", "kept")


def test_the_draft_carries_the_latest_assessment_of_each_method_with_its_evidence() -> None:
    def risk(id_: str, method: str, when: str, note: str, status: str = "final",
             basis: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {"resourceType": "RiskAssessment", "id": id_, "status": status,
                "method": {"text": method}, "occurrenceDateTime": when,
                "note": [{"text": note}], "basis": basis or []}

    risks = [risk("f1", "frailty", "2026-01-01", "mild frailty (0.17)"),
             risk("f2", "frailty", "2026-10-01", "moderate frailty (0.28)",
                  basis=[ref("Condition", "fall1", "Fall 2026-03")]),
             risk("a1", "admission risk", "2026-09-01", "priority 7: 2 A&E attendances",
                  basis=[ref("Encounter", "ae1", "A&E 2026-08")]),
             risk("a2", "admission risk", "2026-11-01", "draft", status="preliminary")]
    assert [r["id"] for r in draft.latest_risks(risks)] == ["f2", "a1"]
    built = draft.build(_record(risks=risks), date(2026, 12, 1))
    support = [s["reference"] for s in built["supportingInfo"]]
    assert support == ["RiskAssessment/f2", "Condition/fall1", "RiskAssessment/a1",
                       "Encounter/ae1"]
    assert "moderate frailty (0.28)" in built["description"]
    assert "priority 7: 2 A&E attendances" in built["description"]
    assert "mild frailty" not in str(built)  # superseded by a later one of its method
