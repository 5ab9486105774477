"""Relational state of the worklists (not FHIR): the item keys and the event outbox.

- `WorklistItem`: one row per (rule, patient, period), the primary key. The database's
  unique key, not a check-then-insert, decides which of several concurrent builds creates the
  item (INSERT ... ON CONFLICT DO NOTHING: only the winner gets its row back and writes the
  Task, in the same transaction). A closed item keeps its row, so the same rule never comes
  back for the same patient and period. It mirrors what the views sort and filter on (owner,
  team, status, priority, due), kept in step with the Task on every write of it
  (careplans/worklist/sync.py).
- `WorklistOutbox`: events staged in the transaction of the write that causes them (an
  emergency Encounter), handled by the worker behind the request (events.py). A crash
  between the write and the item loses nothing: the row is committed with the write, and
  deleted in the transaction that acts on it.
"""

from __future__ import annotations

from sqlalchemy import Index
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from fhir.schema import metadata


class _Base(SQLModel, registry=registry(metadata=metadata)):
    pass


class WorklistItem(_Base, table=True):
    __tablename__ = "worklist_item"
    __table_args__ = (
        Index("ix_worklist_item_owner", "owner", "open"),
        Index("ix_worklist_item_team", "team", "open"),
        Index("ix_worklist_item_task", "task_id", unique=True),
    )

    rule: str = Field(primary_key=True, max_length=32)
    patient_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=128)
    task_id: str = Field(max_length=64)
    status: str = Field(max_length=16)  # the Task's status
    open: bool = True  # status not completed, cancelled, failed, rejected, entered-in-error
    owner: str | None = Field(default=None, max_length=128)  # PractitionerRole/x, CareTeam/y
    team: str | None = Field(default=None, max_length=64)  # the practice Organization id
    priority_rank: int = 3  # rules.rank: 0 stat ... 3 routine
    due: str = Field(max_length=10)
    created: float
    closed: float | None = None
    done_on: str | None = Field(default=None, max_length=10)  # the day it was completed


class WorklistOutbox(_Base, table=True):
    __tablename__ = "worklist_outbox"

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(max_length=64)
    reason: str = Field(max_length=160)  # what happened, e.g. Encounter/123 (A&E)
    created: float
