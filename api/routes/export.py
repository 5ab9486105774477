"""Bulk Data export routes (https://hl7.org/fhir/uv/bulkdata/export.html): the kick-off at
three levels, the status endpoint (poll, or DELETE to cancel) and the output files.

The jobs themselves run in `api/export.py`; what is exported is `fhir/operations/export.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from api.deps import RepositoryDep
from api.export import Exports
from api.http import base_url, outcome_response, prefer
from fhir import capability, jsontext
from fhir.errors import BadRequest
from fhir.operations import export

router = APIRouter()
BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
capability.add_system_operation("export", BULK + "export")
capability.add_operation("Patient", "export", BULK + "patient-export")
capability.add_operation("Group", "export", BULK + "group-export")
NDJSON = "application/fhir+ndjson"
# The manifest's `extension` (a JSON object the spec reserves for servers): how many patients
# were left out because they opted out of secondary use (consent/secondary_use.py).
OPTED_OUT = "https://carenet.invalid/fhir/bulkdata/opted-out-patients"


def _exports(request: Request) -> Exports:
    return request.app.state.exports  # type: ignore[no-any-return]


async def _kick_off(request: Request, repo: RepositoryDep, level: str,
                    group: str | None = None) -> Response:
    params = parse_qsl(request.url.query, keep_blank_values=True)
    parsed = export.parse(level, group, params)  # 400 before anything else
    if prefer(request, "respond-async") is None:
        raise BadRequest("$export runs asynchronously: send the header "
                         "'Prefer: respond-async'.")
    job_id = await _exports(request).kick_off(repo, parsed, str(request.url))
    return Response(status_code=202, headers={
        "Content-Location": f"{base_url(request)}/$export-poll/{job_id}"})


@router.get("/$export")
async def export_system(request: Request, repo: RepositoryDep) -> Response:
    return await _kick_off(request, repo, "system")


@router.get("/Patient/$export")
async def export_patients(request: Request, repo: RepositoryDep) -> Response:
    return await _kick_off(request, repo, "patient")


@router.get("/Group/{group_id}/$export")
async def export_group(group_id: str, request: Request, repo: RepositoryDep) -> Response:
    return await _kick_off(request, repo, "group", group_id)


def _instant(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def manifest(job: dict[str, Any], base: str) -> dict[str, Any]:
    """The complete job's manifest (https://hl7.org/fhir/uv/bulkdata/export.html#response---complete-status)."""
    return {
        "transactionTime": _instant(job["transaction_time"]),
        "request": job["request"],
        "requiresAccessToken": True,
        "output": [{"type": type_, "url": f"{base}/$export-file/{job['id']}/{type_}.ndjson",
                    "count": count} for type_, count in sorted(job["counts"].items())],
        "error": [],
        "extension": {OPTED_OUT: job["opted_out"]},
    }


@router.get("/$export-poll/{job_id}")
async def status(job_id: str, request: Request, repo: RepositoryDep) -> Response:
    job = await _exports(request).job(repo, job_id)
    if job["status"] == "complete":
        body = manifest(job, base_url(request))
        return Response(jsontext.dumps(body), media_type="application/json")
    if job["status"] == "error":
        return outcome_response(500, job["error"] or "The export failed.", "error",
                                "exception")
    return Response(status_code=202, headers={
        "X-Progress": job["progress"] or job["status"], "Retry-After": "2"})


@router.delete("/$export-poll/{job_id}")
async def cancel(job_id: str, request: Request, repo: RepositoryDep) -> Response:
    await _exports(request).cancel(repo, job_id)
    return outcome_response(202, f"Export job {job_id} is cancelled and its files deleted.")


@router.get("/$export-file/{job_id}/{name}")
async def output_file(job_id: str, name: str, request: Request,
                      repo: RepositoryDep) -> Response:
    path = await _exports(request).file(repo, job_id, name)
    return FileResponse(path, media_type=NDJSON)

