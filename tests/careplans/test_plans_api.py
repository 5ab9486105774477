"""Anticipatory care plans over HTTP, on SQLite and PostgreSQL: lifecycle and validation,
one active plan per patient, every version readable, patient and carer additions that leave
the clinical content alone, and access (another practice's GP sees nothing)."""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from careplans.plans import model
from tests.api.support import outcome
from tests.careplans.support import CLINICAL, SCT, make, network, new_patient, plan, ref

Body = dict[str, Any]


@pytest.fixture(scope="module")
async def net(client: httpx.AsyncClient, app: Any) -> SimpleNamespace:
    return await network(client, app)


def coordinated(n: SimpleNamespace, patient: str, **kw: Any) -> Body:
    return plan(patient, coordinator=f"PractitionerRole/{n.coord_role}", **kw)


async def put(client: httpx.AsyncClient, body: Body, who: dict[str, str]) -> httpx.Response:
    return await client.put(f"/CarePlan/{body['id']}", json=body, headers=who)


async def test_a_plan_goes_from_draft_to_active_to_revised_to_completed_and_every_version_reads(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    patient = await new_patient(client, net, "Life")
    gp = net.as_gp_a
    draft = plan(patient, status="draft", coordinator=None, review=None)
    r = await client.post("/CarePlan", json=draft, headers=gp)
    assert r.status_code == 201, r.text  # a draft may be incomplete
    body = r.json()
    div = body["text"]["div"]
    assert body["text"]["status"] == "generated" and 'xmlns="http://www.w3.org/1999/xhtml"' in div
    assert div.index("If things change") < div.index("Treatment preferences") \
        < div.index("Contacts") < div.index("Planned activities")

    # Active without a coordinator or a review date: refused, saying what to add.
    r = await put(client, {**body, "status": "active"}, gp)
    outcome(r, 422, "no named care coordinator", "CarePlan.author", "no review date",
            "Review of care plan")
    r = await put(client, {**body, "status": "active",
                           "author": ref("PractitionerRole", net.coord_role)}, gp)
    outcome(r, 422, "no review date")
    assert (await client.get(f"/CarePlan/{body['id']}", headers=gp)).json()["status"] == "draft"

    active = {**coordinated(net, patient), "id": body["id"]}
    r = await put(client, active, gp)
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "2"
    assert "Review by: 2027-06-01" in r.json()["text"]["div"]

    # A revision: the active plan gets a new version; the text follows the structure.
    revised = copy.deepcopy(active)
    revised["activity"].append({"detail": {"status": "scheduled",
                                           "description": "Falls assessment at home"}})
    r = await put(client, revised, gp)
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "3"
    assert "Falls assessment at home" in r.json()["text"]["div"]

    r = await put(client, {**revised, "status": "draft"}, gp)
    outcome(r, 422, "cannot go back to draft")

    r = await put(client, {**revised, "status": "completed"}, gp)
    assert r.status_code == 200, r.text
    r = await put(client, {**revised, "status": "active"}, gp)
    outcome(r, 422, "completed", "closed", "$draft-care-plan")

    # Every version stays readable, as it was.
    seen = {}
    for version in ("1", "2", "3", "4"):
        r = await client.get(f"/CarePlan/{body['id']}/_history/{version}", headers=gp)
        assert r.status_code == 200, r.text
        seen[version] = r.json()
    assert [seen[v]["status"] for v in "1234"] == ["draft", "active", "active", "completed"]
    assert "Falls assessment at home" not in seen["2"]["text"]["div"]
    assert "Falls assessment at home" in seen["3"]["text"]["div"]
    r = await client.get(f"/CarePlan/{body['id']}/_history", headers=gp)
    assert r.status_code == 200, r.text
    assert len(r.json()["entry"]) == 4


async def test_a_patient_has_one_active_plan_at_a_time(client: httpx.AsyncClient,
                                                       net: SimpleNamespace) -> None:
    patient = await new_patient(client, net, "One")
    first = await make(client, coordinated(net, patient), **net.as_gp_a)
    r = await client.post("/CarePlan", json=coordinated(net, patient), headers=net.as_gp_a)
    outcome(r, 409, "already has an active anticipatory care plan", f"CarePlan/{first}")
    second = await make(client, coordinated(net, patient, status="draft"), **net.as_gp_a)
    r = await client.put(f"/CarePlan/{second}", headers=net.as_gp_a,
                         json={**coordinated(net, patient), "id": second})
    outcome(r, 409, f"CarePlan/{first}")
    # Once the first is completed, the second may become active.
    r = await client.put(f"/CarePlan/{first}", headers=net.as_gp_a,
                         json={**coordinated(net, patient, status="completed"), "id": first})
    assert r.status_code == 200, r.text
    r = await client.put(f"/CarePlan/{second}", headers=net.as_gp_a,
                         json={**coordinated(net, patient), "id": second})
    assert r.status_code == 200, r.text
    # Another kind of care plan is not counted.
    other = coordinated(net, patient, category=[{"text": "Diabetes plan"}])
    assert (await client.post("/CarePlan", json=other, headers=net.as_gp_a)).status_code == 201


async def test_two_concurrent_activations_for_one_patient_leave_one_active_plan(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    patient = await new_patient(client, net, "Race")
    for round_ in range(3):
        answers = await asyncio.gather(*(
            client.post("/CarePlan", json=coordinated(net, patient), headers=net.as_gp_a)
            for _ in range(4)))
        codes = sorted(r.status_code for r in answers)
        assert codes == ([201, 409, 409, 409] if round_ == 0 else [409] * 4), codes
    found = await client.get("/CarePlan", headers=net.as_gp_a,
                             params={"patient": patient, "status": "active"})
    assert len(found.json().get("entry", ())) == 1


async def test_the_patient_reads_and_adds_to_the_plan_without_touching_its_clinical_content(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    plan_id = await make(client, coordinated(net, net.patient), **net.as_gp_a)
    before = (await client.get(f"/CarePlan/{plan_id}", headers=net.as_gp_a)).json()
    r = await client.get(f"/CarePlan/{plan_id}", headers=net.as_patient)
    assert r.status_code == 200, r.text

    r = await client.post(f"/CarePlan/{plan_id}/$contribute", headers=net.as_patient, json={
        "resourceType": "Parameters", "parameter": [
            {"name": "whatMatters", "valueString": "Being at home with my cat"},
            {"name": "comment", "valueString": "I don't want to go back to hospital."}]})
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["meta"]["versionId"] == "2"
    for key in ("activity", "author", "extension", "status", "subject", "category"):
        assert after[key] == before[key], key
    mine = model.what_matters_goals(after)
    assert [g["display"] for g in mine] == ["Being at home with my cat"]
    notes = {n["text"]: n["authorReference"]["reference"] for n in after["note"]}
    assert notes["I don't want to go back to hospital."] == f"Patient/{net.patient}"
    assert {"reference": f"Patient/{net.patient}"} in after["contributor"]
    div = after["text"]["div"]
    assert div.index("What matters to me") < div.index("Being at home with my cat")

    goal = (await client.get(f"/{mine[0]['reference']}", headers=net.as_patient)).json()
    assert goal["expressedBy"] == {"reference": f"Patient/{net.patient}"}
    assert goal["meta"]["source"] == f"Patient/{net.patient}"  # theirs to change
    goal["description"]["text"] = "Being at home with my cat and my garden"
    r = await client.put(f"/Goal/{goal['id']}", json=goal, headers=net.as_patient)
    assert r.status_code == 200, r.text
    provenance = await client.get("/Provenance", headers=net.as_gp_a,
                                  params={"target": f"CarePlan/{plan_id}"})
    agents = [a["who"]["reference"] for e in provenance.json().get("entry", ())
              for a in e["resource"]["agent"]
              if {"reference": f"CarePlan/{plan_id}/_history/2"} in e["resource"]["target"]]
    assert agents == [f"Patient/{net.patient}"]  # version 2 names its author
    first = await client.get(f"/CarePlan/{plan_id}/_history/1", headers=net.as_patient)
    assert first.status_code == 200 and "note" not in first.json()  # version 1 as it was

    # Changing the clinical content directly is refused, with words that say what to do.
    changed = copy.deepcopy(after)
    changed["activity"] = changed["activity"][:1]
    r = await client.put(f"/CarePlan/{plan_id}", json=changed, headers=net.as_patient)
    outcome(r, 403, "cannot change a care plan's clinical content", "$contribute")
    r = await client.patch(f"/CarePlan/{plan_id}", headers={
        **net.as_patient, "Content-Type": "application/json-patch+json"},
        content=b'[{"op": "remove", "path": "/activity/0"}]')
    outcome(r, 403, "clinical content")
    now = (await client.get(f"/CarePlan/{plan_id}", headers=net.as_gp_a)).json()
    assert now["meta"]["versionId"] == "2" and now["activity"] == before["activity"]

    # A clinician's revision keeps what the patient wrote.
    dropped = {k: v for k, v in copy.deepcopy(now).items() if k != "note"}
    r = await client.put(f"/CarePlan/{plan_id}", json=dropped, headers=net.as_gp_a)
    outcome(r, 422, f"Patient/{net.patient}", "stays in every version")
    kept = copy.deepcopy(now)
    kept["note"].append({"text": "Discussed with Ann: agreed."})
    r = await client.put(f"/CarePlan/{plan_id}", json=kept, headers=net.as_gp_a)
    assert r.status_code == 200, r.text

    # The carer with a proxy grant adds too; a carer without one does not see the plan.
    r = await client.post(f"/CarePlan/{plan_id}/$contribute", headers=net.as_carer, json={
        "resourceType": "Parameters",
        "parameter": [{"name": "comment", "valueString": "Mum sleeps badly since June."}]})
    assert r.status_code == 200, r.text
    assert r.json()["note"][-1]["authorReference"] == {"reference": f"RelatedPerson/{net.carer}"}
    version = r.json()["meta"]["versionId"]
    provenance = await client.get("/Provenance", headers=net.as_gp_a,
                                  params={"target": f"CarePlan/{plan_id}"})
    assert [a["who"]["reference"] for e in provenance.json()["entry"]
            for a in e["resource"]["agent"]
            if {"reference": f"CarePlan/{plan_id}/_history/{version}"}
            in e["resource"]["target"]] == [f"RelatedPerson/{net.carer}"]
    r = await client.post(f"/CarePlan/{plan_id}/$contribute", headers=net.as_stranger_carer,
                          json={"resourceType": "Parameters", "parameter": [
                              {"name": "comment", "valueString": "hello"}]})
    outcome(r, 404)
    # Staff revise the plan itself.
    r = await client.post(f"/CarePlan/{plan_id}/$contribute", headers=net.as_gp_a, json={
        "resourceType": "Parameters", "parameter": [{"name": "comment", "valueString": "x"}]})
    outcome(r, 403, "PUT or PATCH")
    r = await client.post(f"/CarePlan/{plan_id}/$contribute", headers=net.as_patient, json={
        "resourceType": "Parameters", "parameter": [{"name": "activity", "valueString": "x"}]})
    outcome(r, 400, "'activity' is not known")
    # Close the plan so the next test's plan may be active.
    r = await client.put(f"/CarePlan/{plan_id}", headers=net.as_gp_a, json={
        **(await client.get(f"/CarePlan/{plan_id}", headers=net.as_gp_a)).json(),
        "status": "completed"})
    assert r.status_code == 200, r.text


async def test_another_practice_gp_finds_no_plan_and_no_draft(client: httpx.AsyncClient,
                                                              net: SimpleNamespace) -> None:
    patient = await new_patient(client, net, "Hidden")
    plan_id = await make(client, coordinated(net, patient), **net.as_gp_a)
    for path in (f"/CarePlan/{plan_id}", f"/CarePlan/{plan_id}/_history/1",
                 f"/Patient/{patient}/$draft-care-plan"):
        hidden = await client.get(path, headers=net.as_gp_b)
        unknown = await client.get(path.replace(plan_id, "no-such-id").replace(
            patient, "no-such-id"), headers=net.as_gp_b)
        outcome(hidden, 404)
        assert unknown.status_code == 404
    found = await client.get("/CarePlan", headers=net.as_gp_b, params={"patient": patient})
    assert found.json().get("entry", []) == []
    r = await client.put(f"/CarePlan/{plan_id}", headers=net.as_gp_b,
                         json={**coordinated(net, patient, status="revoked"), "id": plan_id})
    outcome(r, 404)


def condition(patient: str, code: str, text: str, status: str = "active") -> Body:
    return {"resourceType": "Condition", "subject": ref("Patient", patient),
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": status}]},
            "code": {"coding": [{"system": SCT, "code": code}], "text": text}}


def medicine(patient: str, name: str, status: str = "active") -> Body:
    return {"resourceType": "MedicationRequest", "status": status, "intent": "order",
            "subject": ref("Patient", patient), "medicationCodeableConcept": {"text": name}}


def risk(patient: str, when: str, note: str, status: str = "final",
         basis: list[Body] | None = None) -> Body:
    return {"resourceType": "RiskAssessment", "status": status,
            "subject": ref("Patient", patient), "occurrenceDateTime": when,
            "method": {"text": "eFI-style frailty index"}, "note": [{"text": note}],
            **({"basis": basis} if basis else {})}


async def test_the_draft_is_filled_from_what_the_record_holds_now(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    p = await new_patient(client, net, "Draft")
    heart = await make(client, condition(p, "84114007", "Heart failure"))
    falls = await make(client, condition(p, "161898004", "Falls"))
    gone = await make(client, condition(p, "195967001", "Asthma", status="resolved"))
    meds = [await make(client, medicine(p, name)) for name in
            ("Ramipril", "Furosemide", "Apixaban", "Paracetamol", "Sertraline")]
    stopped = await make(client, medicine(p, "Amlodipine", status="stopped"))
    await make(client, risk(p, "2026-01-10", "mild frailty (0.17)"))
    latest = await make(client, risk(p, "2026-11-02", "moderate frailty (0.28): falls x2",
                                     basis=[ref("Condition", falls, "Falls 2026-03"),
                                            ref("MedicationRequest", meds[0], "Ramipril")]))
    await make(client, risk(p, "2026-12-01", "unchecked", status="preliminary"))
    team = await make(client, {
        "resourceType": "CareTeam", "status": "active", "subject": ref("Patient", p),
        "name": "Anticipatory care team", "participant": [
            {"role": [{"text": "Care coordinator"}],
             "member": ref("PractitionerRole", net.coord_role, "Cath Coord")},
            {"role": [{"text": "Named GP"}], "member": ref("PractitionerRole", net.gp_a_role)}]})
    old_team = await make(client, {"resourceType": "CareTeam", "status": "inactive",
                                   "subject": ref("Patient", p)})
    goals = {}
    for key, text, status, by in (
            ("walk", "Walk to the shops", "active", None),
            ("home", "Stay in my own home", "active", f"Patient/{p}"),
            ("done", "Get through the winter", "completed", None)):
        body = {"resourceType": "Goal", "lifecycleStatus": status,
                "description": {"text": text}, "subject": ref("Patient", p)}
        if by:
            body["expressedBy"] = {"reference": by}
        goals[key] = await make(client, body)
    previous = coordinated(net, p, status="completed", goal=[
        ref("Goal", goals["walk"], "Walk to the shops"),
        model.goal_ref(goals["home"], "Stay in my own home", what_matters=True),
        ref("Goal", goals["done"], "Get through the winter")])
    previous_id = await make(client, previous, **net.as_gp_a)
    own_id = await make(client, {
        "resourceType": "Goal", "lifecycleStatus": "active", "subject": ref("Patient", p),
        "description": {"text": "Garden again"}, "expressedBy": ref("Patient", p)})

    r = await client.get(f"/Patient/{p}/$draft-care-plan", headers=net.as_gp_a)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["resourceType"] == "CarePlan" and d["status"] == "draft" and "id" not in d
    assert model.is_anticipatory(d)
    assert {a["reference"] for a in d["addresses"]} == {f"Condition/{heart}",
                                                        f"Condition/{falls}"}
    support = {s["reference"] for s in d["supportingInfo"]}
    assert {f"MedicationRequest/{m}" for m in meds} | {f"RiskAssessment/{latest}"} <= support
    assert f"MedicationRequest/{stopped}" not in support and f"Condition/{gone}" not in str(d)
    assert "moderate frailty (0.28): falls x2" in d["description"]
    assert f"Condition/{falls}" in support  # the evidence the assessment lists
    assert [t["reference"] for t in d["careTeam"]] == [f"CareTeam/{team}"]
    assert f"CareTeam/{old_team}" not in str(d)
    assert d["author"]["reference"] == f"PractitionerRole/{net.coord_role}"
    # Whom to call, as the record names them (for the narrative read at 3 a.m.).
    assert d["author"]["display"] == f"Coord{net.tag} (R0600), Oak {net.tag}"
    assert f"Named GP: GpA{net.tag} (R0260), Oak {net.tag}" in d["careTeam"][0]["display"]
    assert f"Care coordinator: Coord{net.tag} (R0600), Oak {net.tag}" in d["text"]["div"]
    assert d["replaces"] == [{"reference": f"CarePlan/{previous_id}",
                              "display": "Anticipatory care plan"}]
    carried = {g["reference"] for g in d["goal"]}
    assert carried == {f"Goal/{goals['walk']}", f"Goal/{goals['home']}", f"Goal/{own_id}"}
    assert {g["reference"] for g in model.what_matters_goals(d)} == {
        f"Goal/{goals['home']}", f"Goal/{own_id}"}
    assert model.respect(d) == model.respect(previous)
    carried = [a for a in d["activity"] if model.is_contingency(a)]
    before = [a for a in previous["activity"] if model.is_contingency(a)]
    assert [(a["extension"], a["detail"]["description"]) for a in carried] == [
        (a["extension"], a["detail"]["description"]) for a in before]
    assert carried[0]["detail"]["performer"] == [{  # who to call, as the record has them now
        "reference": f"PractitionerRole/{net.coord_role}",
        "display": f"Coord{net.tag} (R0600), Oak {net.tag}"}]
    proposed = " ".join(a["detail"].get("description", "") for a in d["activity"])
    assert "Structured medication review: 5 current medicines" in proposed
    assert "falls risk assessment" in proposed
    assert model.review_date(d) is not None
    assert "Stay in my own home" in d["text"]["div"]

    # Nothing was stored; the clinician stores what they agree, and can make it active.
    plans = await client.get("/CarePlan", headers=net.as_gp_a, params={"patient": p})
    assert [e["resource"]["id"] for e in plans.json()["entry"]] == [previous_id]
    made = await client.post("/CarePlan", json={**d, "status": "active"}, headers=net.as_gp_a)
    assert made.status_code == 201, made.text


async def test_the_capability_statement_lists_the_care_plan_operations(
        client: httpx.AsyncClient) -> None:
    r = await client.get("/metadata")
    ops = {(res["type"], op["name"]) for res in r.json()["rest"][0]["resource"]
           for op in res.get("operation", ())}
    assert {("Patient", "everything"), ("Patient", "draft-care-plan"),
            ("CarePlan", "contribute")} <= ops


async def test_a_transaction_keeps_the_rules_and_is_all_or_nothing(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    family = f"Bundle{net.tag}"

    def bundle(*plans: Body) -> Body:
        entries = [{"fullUrl": "urn:uuid:7f0b3a52-0d6c-4d0e-9a54-2f1f3f2b7c11",
                    "resource": {"resourceType": "Patient", "name": [{"family": family}]},
                    "request": {"method": "POST", "url": "Patient"}}]
        for body in plans:
            body = {**body, "subject": {"reference": "urn:uuid:7f0b3a52-0d6c-4d0e-9a54-"
                                                     "2f1f3f2b7c11"}}
            entries.append({"resource": body, "request": {"method": "POST", "url": "CarePlan"}})
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    r = await client.post("", json=bundle(coordinated(net, "x", review=None)))
    outcome(r, 422, "no review date")
    r = await client.post("", json=bundle(coordinated(net, "x"), coordinated(net, "x")))
    outcome(r, 409, "already has an active anticipatory care plan")
    found = await client.get("/Patient", params={"family": family})
    assert found.json().get("entry", []) == []  # nothing of either was kept
    r = await client.post("", json=bundle(coordinated(net, "x")))
    assert r.status_code == 200, r.text
    stored = r.json()["entry"][1]["resource"]
    assert "If things change" in stored["text"]["div"]  # the rule ran on the entry too


async def test_only_the_persons_own_goals_may_be_marked_as_what_matters(
        client: httpx.AsyncClient, net: SimpleNamespace) -> None:
    p = await new_patient(client, net, "Matters")
    theirs = await make(client, {"resourceType": "Goal", "lifecycleStatus": "active",
                                 "subject": ref("Patient", p), "expressedBy": ref("Patient", p),
                                 "description": {"text": "See the sea again"}})
    ours = await make(client, {"resourceType": "Goal", "lifecycleStatus": "active",
                               "subject": ref("Patient", p),
                               "expressedBy": ref("PractitionerRole", net.gp_a_role),
                               "description": {"text": "HbA1c below 58"}})
    bad = coordinated(net, p, status="draft",
                      goal=[model.goal_ref(ours, "HbA1c below 58", what_matters=True)])
    r = await client.post("/CarePlan", json=bad, headers=net.as_gp_a)
    outcome(r, 422, f"Goal/{ours} is marked as what matters", "did not express it")
    good = coordinated(net, p, status="draft", goal=[
        model.goal_ref(theirs, "See the sea again", what_matters=True),
        ref("Goal", ours, "HbA1c below 58")])
    made = await client.post("/CarePlan", json=good, headers=net.as_gp_a)
    assert made.status_code == 201, made.text
    div = made.json()["text"]["div"]
    assert div.index("What matters to me") < div.index("See the sea again") \
        < div.index("Goals") < div.index("HbA1c below 58")
