"""A token's SMART scopes as the decision and as SQL (consent/scope_rules.py), on both
backends, against a few rows whose expected sets were worked out by hand.

Rows: patients P1 and P2, a laboratory and a vital-signs Observation of each, an Observation
of no patient, a Condition of P1, an Organization (a directory type).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from consent.scope_rules import ScopeRules, Verdict
from consent.scopes import parse
from fhir.schema import resource

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@pytest.fixture(scope="module")
async def rows(client: httpx.AsyncClient) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:10]
    made: dict[str, Any] = {"tag": tag}

    async def make(key: str, body: dict[str, Any]) -> None:
        body = {**body, "meta": {"tag": [{"system": "urn:rules", "code": tag}]}}
        r = await client.post(f"/{body['resourceType']}", json=body)
        assert r.status_code == 201, r.text
        made[key] = r.json()["id"]

    await make("P1", {"resourceType": "Patient"})
    await make("P2", {"resourceType": "Patient"})
    for p in ("P1", "P2"):
        for cat in ("lab", "vital"):
            code = "laboratory" if cat == "lab" else "vital-signs"
            await make(f"{cat}-{p}", {
                "resourceType": "Observation", "status": "final", "code": {"text": cat},
                "subject": {"reference": f"Patient/{made[p]}"},
                "category": [{"coding": [{"system": CATEGORY, "code": code}]}]})
    await make("lab-none", {"resourceType": "Observation", "status": "final",
                            "code": {"text": "x"},
                            "category": [{"coding": [{"system": CATEGORY,
                                                      "code": "laboratory"}]}]})
    await make("cond-P1", {"resourceType": "Condition",
                           "subject": {"reference": f"Patient/{made['P1']}"}})
    await make("org", {"resourceType": "Organization", "name": "x"})
    return made


ALL = {"P1", "P2", "lab-P1", "vital-P1", "lab-P2", "vital-P2", "lab-none", "cond-P1", "org"}
# (scopes, launch patient key, letter) -> the rows visible, by hand.
CASES = [
    ("user/*.rs", None, "r", ALL),
    ("user/Observation.rs?category=laboratory user/Patient.rs", None, "r",
     {"P1", "P2", "lab-P1", "lab-P2", "lab-none"}),
    ("user/Observation.rs?category=laboratory user/Patient.rs", None, "s",
     {"P1", "P2", "lab-P1", "lab-P2", "lab-none"}),
    ("patient/*.rs", "P1", "r", {"P1", "lab-P1", "vital-P1", "cond-P1", "org"}),
    ("patient/Observation.rs?category=laboratory", "P1", "s", {"lab-P1"}),
    ("patient/Observation.rs", None, "r", set()),  # no patient in context: nothing
    ("user/Observation.r user/Observation.s?category=vital-signs", None, "r",
     {"lab-P1", "vital-P1", "lab-P2", "vital-P2", "lab-none"}),
    ("user/Observation.r user/Observation.s?category=vital-signs", None, "s",
     {"vital-P1", "vital-P2"}),
    ("user/Observation.rs?category=vital-signs&subject=Patient/{P1} "
     "user/Observation.rs?category=laboratory&subject=Patient/{P2}", None, "r",
     {"vital-P1", "lab-P2"}),
    ("patient/Observation.rs user/Condition.rs", "P2", "r",
     {"lab-P2", "vital-P2", "cond-P1"}),
    ("user/Observation.rs?nonsense=1 user/Patient.rs", None, "r", {"P1", "P2"}),
]


def _rules(rows: dict[str, Any], text: str, launch: str | None) -> ScopeRules:
    return ScopeRules.of(parse(text.format(**rows)), rows[launch] if launch else None)


@pytest.mark.parametrize(("scopes", "launch", "letter", "expected"), CASES)
async def test_the_filter_lets_through_what_the_scopes_grant(
        app: Any, rows: dict[str, Any], scopes: str, launch: str | None, letter: str,
        expected: set[str]) -> None:
    rules = _rules(rows, scopes, launch)
    by_id = {rows[k]: k for k in ALL}
    row = resource.alias("r")
    for type_ in (None, "Observation", "Patient"):  # the filter on rows of any / one type
        condition = rules.sql(row, type_, letter)
        stmt = sa.select(row.c.id).where(row.c.id.in_(list(by_id)))
        if type_ is not None:
            stmt = stmt.where(row.c.type == type_)
        if condition is not None:
            stmt = stmt.where(condition)
        async with app.state.db.read() as conn:
            found = {by_id[i] for i in (await conn.execute(stmt)).scalars()}
        want = expected if type_ is None else {
            k for k in expected if k in ALL and _type(k) == type_}
        assert found == want, (type_, found ^ want)


@pytest.mark.parametrize(("scopes", "launch", "letter", "expected"), CASES)
async def test_the_decision_agrees_with_the_filter(
        rows: dict[str, Any], scopes: str, launch: str | None, letter: str,
        expected: set[str]) -> None:
    """YES only for rows the filter lets through, NO only for rows it keeps out; MATCH is
    asked of the row, with the filter's own SQL."""
    rules = _rules(rows, scopes, launch)
    for key in ALL:
        patient = {"P1": "P1", "P2": "P2"}.get(key) or (
            key.rsplit("-", 1)[1] if key.endswith(("-P1", "-P2")) else None)
        verdict = rules.decide(_type(key), letter, rows[patient] if patient else None)
        if verdict is Verdict.YES:
            assert key in expected, key
        elif verdict is Verdict.NO:
            assert key not in expected, key


def _type(key: str) -> str:
    if key in ("P1", "P2"):
        return "Patient"
    return {"cond": "Condition", "org": "Organization"}.get(key.split("-")[0], "Observation")


def test_speaks_for_ignores_conditions_but_not_types_or_letters() -> None:
    rules = ScopeRules.of(parse("user/Observation.r?category=laboratory"), None)
    assert rules.speaks_for("Observation", "r")
    assert not rules.speaks_for("Observation", "s")
    assert not rules.speaks_for("Condition", "r")
    assert rules.conditioned("Observation", "r")
