"""Relational state of risk stratification (not FHIR): the runs and each patient's last result.

SQLModel tables (the design card's package for relational tables) in the same metadata as
the FHIR store (fhir/schema.py), so the Alembic migrations build and check them with the
rest (fhir/migrations/versions/0006_risk_stratification.py).

- `RiskRun`: one stratification run: its scope, as-of date, whether it was full, the
  watermark (the newest `resource.last_updated` when it started: the next incremental run
  looks at patients changed after it), its counts and the code-list version it used.
- `RiskState`: per patient and method, the fingerprint and summary of the current
  RiskAssessment (so a run tells "unchanged" without reading it, and says what changed when
  it is not) and `recheck_on`, the day time alone may change it (a fall leaves the 12-month
  window, a birthday crosses an age step): incremental runs take those patients too.
"""

from __future__ import annotations

from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from fhir.schema import metadata


class _Base(SQLModel, registry=registry(metadata=metadata)):
    pass


class RiskRun(_Base, table=True):
    __tablename__ = "risk_run"

    id: int | None = Field(default=None, primary_key=True)
    started: float
    finished: float | None = None
    as_of: str = Field(max_length=10)
    practice: str | None = Field(default=None, max_length=64)  # ODS code; None: everyone
    full: bool = False
    status: str = Field(default="running", max_length=16)  # running / completed / failed
    watermark: float = 0.0
    considered: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    code_version: str = Field(max_length=64)


class RiskState(_Base, table=True):
    __tablename__ = "risk_state"

    patient_id: str = Field(primary_key=True, max_length=64)
    method: str = Field(primary_key=True, max_length=64)
    fingerprint: str = Field(max_length=64)
    summary: str  # JSON: band, score, items, basis, narrative (assessment.Outcome.summary)
    as_of: str = Field(max_length=10)
    recheck_on: str | None = Field(default=None, max_length=10, index=True)
    version: int = 1
