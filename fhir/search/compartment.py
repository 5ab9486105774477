"""The Patient compartment as SQL (https://hl7.org/fhir/R4/search.html#compartments).

A resource is in the compartment of Patient/[id] when any of its type's parameters named by
the Patient CompartmentDefinition (`registry().compartment`) references Patient/[id], so one
resource may be in several patients' compartments (an Observation about one patient performed
by another is in both). A Patient is also in its own compartment.

Membership is always tested through the reference index. `resource.patient_id` holds only the
*first* compartment patient of a resource, so it cannot answer "is this in Patient/x's
compartment" for a resource in several; it is used here only where its own meaning is wanted:
`patient_id IS NULL` is "in no patient's compartment" (see `everything.py`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from fhir.errors import BadRequest
from fhir.registry import registry
from fhir.schema import INDEX_TABLES, resource


def types() -> list[str]:
    """The resource types that can be in a Patient compartment."""
    return sorted(registry().compartment)


def params_of(type_: str) -> tuple[str, ...]:
    """The reference parameters of `type_` that place it in a Patient compartment (400 if none)."""
    reg = registry()
    params = tuple(sp.key for p in reg.compartment.get(type_, ())
                   if (sp := reg.get(type_, p)) is not None and sp.type == "reference")
    if not params:
        raise BadRequest(f"{type_} is not in the Patient compartment, so "
                         f"Patient/[id]/{type_} cannot be searched; search /{type_} instead "
                         f"(compartment types include: {', '.join(types()[:12])}, ...).")
    return params


def condition(type_: str, patient_id: str, row: Any = resource) -> Any:
    """`row` (a resource of `type_`) is in the compartment of Patient/`patient_id`.

    A semi-join on the reference index: some index row of `row` for one of the compartment
    parameters points at the patient. Written `rid IN (uncorrelated select)` rather than a
    correlated EXISTS: PostgreSQL plans the two alike (from the (param, target) index), but
    SQLite runs a correlated EXISTS once per row of `type_` in the whole database."""
    ref = INDEX_TABLES["reference"].alias()
    member = row.c.rid.in_(
        sa.select(ref.c.rid).where(ref.c.param.in_(params_of(type_)),
                                   ref.c.target_type == "Patient",
                                   ref.c.target_id == patient_id))
    if type_ == "Patient":
        return sa.or_(row.c.id == patient_id, member)
    return member


def _groups() -> list[tuple[tuple[str, ...], list[str]]]:
    """(compartment params, types having exactly those params), for a compact SQL test."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for type_ in types():
        try:
            groups.setdefault(params_of(type_), []).append(type_)
        except BadRequest:
            continue
    return sorted(groups.items())


def members(patient_id: str, extra: Any = None) -> sa.CompoundSelect:
    """The row ids of every current resource in the compartment of Patient/`patient_id`,
    the Patient itself included. `extra(row)` may add conditions on each member's row, the
    Patient's too (a clinical date window, what the caller may see). Driven by the reference
    index's (param, target) lookup, so its cost follows the size of this patient's record,
    not of the database."""
    ref = INDEX_TABLES["reference"].alias()
    row = resource.alias()
    groups = _groups()
    all_params = sorted({p for params, _ in groups for p in params})
    by_type = sa.or_(*(sa.and_(row.c.type.in_(ts), ref.c.param.in_(params))
                       for params, ts in groups))
    linked = (sa.select(row.c.rid)
              .select_from(ref.join(row, row.c.rid == ref.c.rid))
              .where(ref.c.target_type == "Patient", ref.c.target_id == patient_id,
                     ref.c.param.in_(all_params), by_type, row.c.deleted.is_(False),
                     *([extra(row)] if extra is not None else [])))
    me = resource.alias()
    itself = sa.select(me.c.rid).where(me.c.type == "Patient", me.c.id == patient_id,
                                       me.c.deleted.is_(False),
                                       *([extra(me)] if extra is not None else []))
    return sa.union(itself, linked)
