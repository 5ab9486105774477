"""Security labels: the pure rule, and its SQL form agreeing with it row by row."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from consent import labels
from consent.principals import Kind, Principal, Role
from fhir.schema import metadata, resource, sp_uri
from tests.consent.support import LABELS, principal

PSY, SDV, NOPAT, R, V = (LABELS[k] for k in ("PSY", "SDV", "NOPAT", "R", "V"))
NORMAL = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|N"


def test_labels_are_read_and_normalised() -> None:
    body = {"meta": {"security": [
        {"system": "http://hl7.org/fhir/v3/ActCode", "code": "NOPAT"},
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"},
        "junk"]}}
    assert labels.of_resource(body) == {NOPAT, R}
    assert labels.of_resource({}) == frozenset()
    assert labels.of_column(f"http://hl7.org/fhir/v3/ActCode|PSY {SDV}") == {PSY, SDV}
    assert labels.of_column(None) == frozenset()


def test_author_organisation() -> None:
    assert labels.author_organisation("Organization/abc") == "Organization/abc"
    for source in (None, "", "Patient/p", "Organization/a/_history/1", "https://x/y#z"):
        assert labels.author_organisation(source) is None, source


@pytest.mark.parametrize(("who", "found", "source", "expected"), [
    ("gp", {PSY}, None, True),
    ("gp", {V}, None, False),  # very restricted: the author's organisation only
    ("gp", {V}, "Organization/prac-a", True),
    ("ph", {PSY}, "Organization/hospital", False),
    ("ph", {PSY}, "Organization/pharmacy", True),  # the author's organisation
    ("ph", {NOPAT}, None, True),  # not for patients, but staff see it
    ("ph", {NORMAL}, None, True),  # labels not in the table restrict nothing
    ("sw", {SDV}, None, True),  # safeguarding is social care's business
    ("sw", {SDV, PSY}, None, False),  # each label must pass
    ("pn", {LABELS["SEX"], LABELS["STD"]}, None, True),
    ("pat", {PSY}, None, True),
    ("pat", {SDV}, None, False),
    ("pat", {NOPAT}, None, False),
    ("pat", {SDV}, "Organization/prac-a", False),  # no author exception for patients
    ("carer", {R}, None, False),
    ("carer", {NORMAL}, None, True),
    ("po", {PSY}, None, False),
    ("sys-net", {PSY}, None, True),  # backend services carry sealed entries
    ("sys-net", {NOPAT}, None, True),
])
def test_visible(who: str, found: set[str], source: str | None, expected: bool) -> None:
    assert labels.visible(principal(who), found, source=source) is expected


def test_break_glass_opens_all_but_safeguarding_and_very_restricted() -> None:
    ph = principal("ph")
    assert labels.visible(ph, {PSY, LABELS["HIV"], R}, break_glass=True)
    assert not labels.visible(ph, {SDV}, break_glass=True)
    assert not labels.visible(ph, {V}, break_glass=True)
    assert labels.blocked("gp", break_glass=True) == {V, SDV}
    # A GP sees SDV through a relationship; emergency access does not open it, not even to
    # a GP, nor to the author's organisation (README: break-glass never opens SDV or V).
    gp = principal("gp")
    assert labels.visible(gp, {SDV}) and not labels.visible(gp, {SDV}, break_glass=True)
    assert not labels.visible(gp, {SDV}, source=gp.organizations[0], break_glass=True)


def test_no_role_sees_no_label() -> None:
    nobody = Principal(Kind.STAFF, "Practitioner/x", ("Organization/o",))
    assert not labels.visible(nobody, {NOPAT})
    assert labels.visible(nobody, {NOPAT}, source="Organization/o")
    assert labels.visible(Principal(Kind.STAFF, "Practitioner/x", role=Role.GP), set())


ROWS = [  # (security column as stored, meta.source)
    (None, None), (PSY, None), (PSY, "Organization/pharmacy"), (SDV, None),
    (f"{PSY} {SDV}", "Organization/social-care"), (NOPAT, None), (V, "Organization/prac-a"),
    ("http://hl7.org/fhir/v3/ActCode|PSY", None), (NORMAL, None), (f"{NORMAL} {R}", None),
    (LABELS["SEX"], None), ("urn:x|PSYX", None), ("urn:x|a%_b", None),
]


@pytest.fixture(scope="module")
def engine() -> sa.Engine:
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        for n, (security, source) in enumerate(ROWS, 1):
            conn.execute(resource.insert().values(
                rid=n, type="Condition", id=f"c{n}", version=1, last_updated=0.0,
                deleted=False, patient_id="p", security=security, content="{}"))
            if source:
                conn.execute(sp_uri.insert().values(rid=n, param="_source", value=source))
    return engine


@pytest.mark.parametrize(("who", "break_glass"), list(itertools.product(
    ["gp", "pn", "cn", "ph", "sw", "cm", "adm", "po", "sys-net", "pat", "carer"],
    [False, True])))
def test_sql_agrees_with_the_rule(engine: sa.Engine, who: str, break_glass: bool) -> None:
    p = principal(who)
    with engine.connect() as conn:
        got = set(conn.execute(sa.select(resource.c.rid).where(
            labels.sql_visible(p, resource, break_glass=break_glass))).scalars())
    expected = {n for n, (security, source) in enumerate(ROWS, 1)
                if labels.visible(p, labels.of_column(security), source=source,
                                  break_glass=break_glass)}
    assert got == expected
    assert 1 in got  # unlabelled rows always pass
