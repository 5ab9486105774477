"""Bulk export jobs behind the requests (https://hl7.org/fhir/uv/bulkdata/export.html).

A kick-off checks the caller (a backend service with `system/` scopes: 403 for anyone
else), validates the request (fhir/operations/export.py, 400), records a job
(fhir/operations/export_jobs.py) and starts an asyncio task that writes one NDJSON file per
type into the export directory, `<export_dir>/<job id>/<Type>.ndjson`.

The task reads through the kick-off's own `Repository` (the request's principal and token):
one snapshot, the same SQL filter a search of that caller applies, read in keyset pages and
written a page at a time, so memory stays flat however large the network. Patients who opted
out of secondary use (consent/secondary_use.py) are left out and counted: every export is a
population export, for planning, not direct care.

A job runs in the worker that took its kick-off; any worker answers its status (from the
table) and serves its files (the export directory is shared). A running job reports every few
seconds; one silent for a minute (a restart, a crash) answers as failed, with why. A job
cancelled through another worker stops at its next report and deletes its files.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from api.repository import Repository
from consent import secondary_use
from consent.principals import Kind
from fhir.db import Database
from fhir.errors import Forbidden, NotFound
from fhir.operations import export, export_jobs
from fhir.schema import resource

log = logging.getLogger("carenet.export")
IDS_PER_QUERY = 5000
PROGRESS_SECONDS = 5.0  # between progress reports (the job's heartbeat)
# A running job that has not reported for this long was stopped by a restart or a crash.
STALE_SECONDS = 60.0
INTERRUPTED = "The server stopped while this export ran; kick it off again."


def client_of(repo: Repository) -> str:
    principal = repo.access.principal
    return principal.client_id or principal.user


def check_caller(repo: Repository, request: export.ExportRequest) -> None:
    """403 unless the caller is a backend service whose `system/` scopes read what it asks."""
    access = repo.access
    system_reads = [s for s in access.caller.scopes.resources
                    if s.context == "system" and "r" in s.interactions]
    if access.principal.kind is not Kind.SYSTEM or not system_reads:
        raise Forbidden("$export is for backend services with system/ scopes (e.g. "
                        "system/*.rs); this token has none.")
    for type_ in request.types or []:
        if access.scope_context(type_, "search") != "system":
            raise Forbidden(f"The token's system/ scopes do not grant {type_}.")


async def opted_out_patients(conn: Any, now: float) -> set[str]:
    """The ids of patients with a Consent opting out of secondary use (read in pages)."""
    found: set[str] = set()
    stmt = (sa.select(resource.c.rid, resource.c.patient_id, resource.c.content)
            .where(resource.c.type == "Consent", resource.c.deleted.is_(False),
                   resource.c.patient_id.is_not(None), resource.c.rid > sa.bindparam("after"))
            .order_by(resource.c.rid).limit(export.PAGE))
    after = 0
    while batch := (await conn.execute(stmt, {"after": after})).all():
        for _rid, patient, content in batch:
            if patient not in found and secondary_use.opted_out(orjson.loads(content), now):
                found.add(patient)
        after = batch[-1][0]
    return found


async def _in_population(conn: Any, repo: Repository, request: export.ExportRequest,
                         members: list[str] | None, ids: set[str]) -> int:
    """How many of the patients `ids` the export would otherwise have covered."""
    if not ids:
        return 0
    population = export.ExportRequest(request.level, request.group, types=["Patient"])
    base = export.statement(population, repo.visible, members)
    base = base.with_only_columns(sa.func.count()).limit(None).order_by(None)
    wanted, total = sorted(ids), 0
    for start in range(0, len(wanted), IDS_PER_QUERY):  # bound parameters are limited
        chunk = wanted[start:start + IDS_PER_QUERY]
        stmt = base.where(resource.c.id.in_(chunk))
        total += int((await conn.execute(stmt, {"after": 0})).scalar_one())
    return total


class Exports:
    """The export jobs of this process and their tasks."""

    def __init__(self, db: Database, directory: Path) -> None:
        self.db = db
        self.directory = directory
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def kick_off(self, repo: Repository, request: export.ExportRequest,
                       url: str) -> str:
        check_caller(repo, request)
        members = None
        if request.level == "group":
            assert request.group is not None
            group = await repo.read("Group", request.group)  # 404 unknown or unseen
            members = export.group_members(orjson.loads(group.content))
        async with self.db.write() as conn:
            job_id = await export_jobs.create(conn, client=client_of(repo), request=url)
        task = asyncio.create_task(self._run(job_id, repo, request, members))
        self.tasks[job_id] = task
        task.add_done_callback(lambda _t: self.tasks.pop(job_id, None))
        return job_id

    async def _run(self, job_id: str, repo: Repository, request: export.ExportRequest,
                   members: list[str] | None) -> None:
        folder = self.directory / job_id
        files: dict[str, Any] = {}
        counts: dict[str, int] = {}
        gone = False  # the job was cancelled, perhaps through another worker
        try:
            folder.mkdir(parents=True, exist_ok=True)
            async with self._snapshot(repo) as conn:
                began = time.time()
                opted = await opted_out_patients(conn, began)
                left_out = await _in_population(conn, repo, request, members, opted)
                await self._set(job_id, status="in-progress", transaction_time=began,
                                opted_out=left_out)
                stmt = export.statement(request, repo.visible, members)
                reported = time.monotonic()
                async for batch in export.rows(conn, stmt):
                    lines: dict[str, list[str]] = {}
                    for _rid, type_, id_, patient, content in batch:
                        if patient in opted or (type_ == "Patient" and id_ in opted):
                            continue
                        lines.setdefault(type_, []).append(content)
                    for type_, texts in lines.items():
                        if type_ not in files:
                            files[type_] = (folder / f"{type_}.ndjson").open("w",
                                                                             encoding="utf-8")
                        files[type_].write("\n".join(texts) + "\n")
                        counts[type_] = counts.get(type_, 0) + len(texts)
                    if time.monotonic() - reported > PROGRESS_SECONDS:
                        reported = time.monotonic()
                        gone = not await self._set(job_id, counts=counts, progress=(
                            f"{sum(counts.values())} resources written"))
                        if gone:
                            break
            for f in files.values():
                f.close()
            gone = gone or not await self._set(job_id, status="complete", counts=counts,
                                               progress=None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the job fails, the server goes on: the status says why
            log.exception("export %s failed", job_id)
            await self._set(job_id, status="error", error=f"The export failed: {exc}")
        finally:
            for f in files.values():
                f.close()
            if gone:
                shutil.rmtree(folder, ignore_errors=True)

    @asynccontextmanager
    async def _snapshot(self, repo: Repository) -> AsyncIterator[Any]:
        """One read snapshot for every page (PostgreSQL: repeatable read), under the
        kick-off's guard with its search context resolved."""
        async with self.db.read(snapshot=True) as conn:
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with repo.guarding(conn, search=True):
                yield conn

    async def _set(self, job_id: str, **values: Any) -> bool:
        async with self.db.write() as conn:
            return await export_jobs.update(conn, job_id, **values)

    async def job(self, repo: Repository, job_id: str) -> dict[str, Any]:
        """The caller's own job (404 for another client's, as for one that does not exist)."""
        async with self.db.read() as conn:
            found = await export_jobs.get(conn, job_id)
        if found is None or found["client"] != client_of(repo):
            raise NotFound(f"There is no export job '{job_id}' of this client.")
        beat = found["heartbeat"] or found["created"]
        if (found["status"] in ("accepted", "in-progress") and job_id not in self.tasks
                and time.time() - beat > STALE_SECONDS):
            found["status"], found["error"] = "error", INTERRUPTED
        return found

    async def cancel(self, repo: Repository, job_id: str) -> None:
        """Stop the job if it runs, and delete it and its files."""
        await self.job(repo, job_id)
        task = self.tasks.pop(job_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        shutil.rmtree(self.directory / job_id, ignore_errors=True)
        async with self.db.write() as conn:
            await export_jobs.delete(conn, job_id)

    async def file(self, repo: Repository, job_id: str, name: str) -> Path:
        """The path of one output file of the caller's own, complete job."""
        found = await self.job(repo, job_id)
        type_ = name.removesuffix(".ndjson")
        if found["status"] != "complete" or type_ not in found["counts"]:
            raise NotFound(f"Export job '{job_id}' has no file '{name}'.")
        return self.directory / job_id / f"{type_}.ndjson"

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
