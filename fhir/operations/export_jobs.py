"""The state of bulk export jobs (not FHIR): one row per kick-off, until it is deleted.

`status`: accepted (kicked off), in-progress, complete, error, cancelled. `counts` is the JSON
object {type: resources written}; `opted_out` the patients left out because they opted out of
secondary use (consent/secondary_use.py). The files are in the export directory, under the
job's id.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from fhir.schema import metadata


class _Base(SQLModel, registry=registry(metadata=metadata)):
    pass


class ExportJob(_Base, table=True):
    __tablename__ = "export_job"

    id: str = Field(primary_key=True, max_length=64)
    client: str = Field(max_length=256, index=True)  # the client that kicked it off
    request: str = Field(max_length=4096)  # the kick-off URL
    status: str = Field(max_length=16)
    created: float
    transaction_time: float | None = None
    counts: str = Field(default="{}", max_length=100_000)
    opted_out: int = 0
    progress: str | None = Field(default=None, max_length=256)
    heartbeat: float | None = None  # when the running task last reported (any worker)
    error: str | None = Field(default=None, max_length=4096)


job = ExportJob.__table__  # type: ignore[attr-defined]


async def create(conn: AsyncConnection, *, client: str, request: str) -> str:
    id_ = uuid.uuid4().hex
    await conn.execute(sa.insert(job).values(id=id_, client=client, request=request,
                                             status="accepted", created=time.time(),
                                             counts="{}", opted_out=0))
    return id_


async def get(conn: AsyncConnection, id_: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(job).where(job.c.id == id_))).mappings().first()
    if row is None:
        return None
    found = dict(row)
    found["counts"] = orjson.loads(found["counts"] or "{}")
    return found


async def update(conn: AsyncConnection, id_: str, **values: Any) -> bool:
    """Change the job; False when it is gone (cancelled, perhaps by another worker)."""
    if "counts" in values:
        values["counts"] = orjson.dumps(values["counts"]).decode()
    values["heartbeat"] = time.time()
    result = await conn.execute(sa.update(job).where(job.c.id == id_).values(**values))
    return bool(result.rowcount)


async def delete(conn: AsyncConnection, id_: str) -> None:
    await conn.execute(sa.delete(job).where(job.c.id == id_))
