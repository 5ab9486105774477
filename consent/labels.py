"""Sealed entries: HL7 security labels in `meta.security` and who may see what they seal.

Labels (https://hl7.org/fhir/R4/security-labels.html): confidentiality codes R (restricted)
and V (very restricted) of http://terminology.hl7.org/CodeSystem/v3-Confidentiality, and the
sensitivity codes PSY, SEX, STD, HIV, SDV, ETH of
http://terminology.hl7.org/CodeSystem/v3-ActCode (_InformationSensitivityPolicy). NOPAT, a
refrain policy code of the same system ("no disclosure to patient, family or caregivers without
attending provider's authorization"), marks third-party entries and anything else not to be
shown to the patient or a carer, as GP Connect uses it.

The rule (pure): a resource carrying a label is visible only to
- the author's organisation: `meta.source` names it (`author_organisation`); the write path
  stamps `meta.source` with the writer's Organization reference, so this is who wrote it;
- the roles the label table allows (`data/label-access.csv`);
- the patient where the label allows it (never SDV, V or NOPAT), a carer never;
- under break-glass, also roles the table does not allow, for the labels whose `break_glass`
  column is y. Break-glass never opens a label whose column is n (SDV, V): not even to a role
  or the author's organisation that would see it through a relationship, since emergency
  access stands in for a relationship the caller does not have (README, "Who may see what").
A resource with several labels must pass each. Labels not in the table restrict nothing.

The resource table keeps the labels as space-separated `system|code` (fhir/store.py), so the
SQL form is a LIKE on that column, tried only for rows that have labels.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlalchemy as sa

from consent.principals import DATA, Kind, Principal
from fhir.schema import INDEX_TABLES

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# The pre-R4 system URLs, still sent by some senders (GP Connect sends NOPAT with the old one).
LEGACY_SYSTEMS = {"http://hl7.org/fhir/v3/Confidentiality": CONFIDENTIALITY,
                  "http://hl7.org/fhir/v3/ActCode": ACT_CODE}


@dataclass(frozen=True, slots=True)
class LabelRule:
    name: str
    key: str  # "system|code"
    allowed: frozenset[str]  # role-table columns that may see it
    break_glass: bool


def normalise(label: str) -> str:
    """`system|code` with a legacy system URL replaced by the current one."""
    system, _, code = label.rpartition("|")
    return f"{LEGACY_SYSTEMS.get(system, system)}|{code}"


@cache
def rules() -> dict[str, LabelRule]:
    """The label table, by `system|code`."""
    with (DATA / "label-access.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    fixed = {"label", "code_system", "code", "display", "break_glass"}
    out = {}
    for r in rows:
        key = f"{r['code_system']}|{r['code']}"
        allowed = frozenset(c for c, v in r.items() if c not in fixed and v == "y")
        out[key] = LabelRule(r["label"], key, allowed, r["break_glass"] == "y")
    return out


def of_resource(resource: dict[str, Any]) -> frozenset[str]:
    """The `system|code` labels in a resource's meta.security."""
    return frozenset(normalise(f"{s.get('system', '')}|{s.get('code', '')}")
                     for s in (resource.get("meta") or {}).get("security") or ()
                     if isinstance(s, dict))


def of_column(security: str | None) -> frozenset[str]:
    """The labels of a `resource.security` value (space-separated `system|code`)."""
    return frozenset(normalise(s) for s in (security or "").split())


def author_organisation(source: str | None) -> str | None:
    """The Organization reference `meta.source` names, if it names one."""
    if isinstance(source, str) and source.startswith("Organization/") and "/" not in source[13:]:
        return source
    return None


def blocked(column: str, *, break_glass: bool = False) -> frozenset[str]:
    """The labels a role-table column may not see; with emergency access (`break_glass`),
    those break-glass never opens, whatever the column (SDV, V)."""
    if break_glass:
        return never_opened()
    return frozenset(key for key, rule in rules().items() if column not in rule.allowed)


@cache
def never_opened() -> frozenset[str]:
    """The labels break-glass never opens (`break_glass` column n: SDV, V)."""
    return frozenset(key for key, rule in rules().items() if not rule.break_glass)


def _may_use_author_exception(principal: Principal) -> bool:
    return principal.kind in (Kind.STAFF, Kind.SYSTEM, Kind.PRIVACY_OFFICER)


def visible(principal: Principal, labels: Iterable[str], *, source: str | None = None,
            break_glass: bool = False) -> bool:
    """The principal may see a resource with these labels, written by `source`; with
    `break_glass`, as emergency access sees it (never what `never_opened` lists)."""
    sealed = {normalise(label) for label in labels} & blocked(principal.access_role,
                                                              break_glass=break_glass)
    if not sealed:
        return True
    if break_glass:  # what emergency access does not open, it opens to no one
        return False
    author = author_organisation(source)
    return (author is not None and _may_use_author_exception(principal)
            and author in principal.organizations)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_has_any_made: dict[tuple[int, frozenset[str]], tuple[Any, Any]] = {}


def has_any(row: Any, keys: Iterable[str]) -> Any:
    """SQL: the row carries one of these labels (either system URL). Made once per row
    object and label set (the rows are the schema's tables and the search's cached aliases),
    since every search's filter asks for the same few."""
    wanted = frozenset(keys)
    key = (id(row), wanted)
    found = _has_any_made.get(key)
    if found is not None and found[0] is row:
        return found[1]
    made = _has_any(row, wanted)
    if len(_has_any_made) >= 4096:
        _has_any_made.clear()
    _has_any_made[key] = (row, made)  # the row is kept, so its id is not reused meanwhile
    return made


def _has_any(row: Any, keys: Iterable[str]) -> Any:
    padded = sa.literal(" ", sa.Text) + row.c.security + sa.literal(" ", sa.Text)
    tests = []
    for key in sorted(keys):
        system, _, code = key.rpartition("|")
        systems = [system, *(old for old, new in LEGACY_SYSTEMS.items() if new == system)]
        tests += [padded.like(f"% {_escape_like(f'{s}|{code}')} %", escape="\\")
                  for s in systems]
    return sa.or_(*tests) if tests else sa.false()


def authored_by(row: Any, organizations: Iterable[str]) -> Any:
    """SQL: the row's meta.source (the `_source` uri index) is one of these organisations."""
    orgs = sorted(organizations)
    if not orgs:
        return sa.false()
    uri = _source_index()
    return sa.exists().where(uri.c.rid == row.c.rid, uri.c.param == "_source",
                             uri.c.value.in_(orgs))


@cache
def _source_index() -> Any:
    """The alias of the uri index `authored_by` reads, made once (an alias copies every
    column; only correlated EXISTS use it, never nested in one another)."""
    return INDEX_TABLES["uri"].alias("sp_uri_source")


def sql_visible(principal: Principal, row: Any, *, break_glass: bool = False) -> Any:
    """SQL form of `visible` on a resource row."""
    keys = blocked(principal.access_role, break_glass=break_glass)
    if not keys:
        return sa.true()
    clauses = [row.c.security.is_(None), sa.not_(has_any(row, keys))]
    if (not break_glass and _may_use_author_exception(principal)
            and principal.organizations):
        clauses.append(authored_by(row, principal.organizations))
    return sa.or_(*clauses)
