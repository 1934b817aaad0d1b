"""``/api/v1/jobs`` as code and history: export, apply (with a diff and ``dry_run``), the
document's JSON Schema, and each job's versions with their diffs and rollback.

Anyone logged in reads (export, schema, versions); operators and admins apply and roll back.
Every change goes through ``services.jobs``, so it is audited and versioned like any edit.
Include this router *before* ``api.jobs``: ``GET /jobs/export`` would otherwise be taken for
``GET /jobs/{job_id}``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from mainspring.api.audit import AuditActor
from mainspring.api.auth import Operator, current_user
from mainspring.api.deps import Db, get_settings
from mainspring.api.job_schemas import NO_CONTROL, JobOut
from mainspring.api.schemas import API_ERRORS, ErrorOut
from mainspring.services import job_versions, jobs_code
from mainspring.services.job_queries import get_job, lock_job
from mainspring.services.jobs_document import (
    Selector,
    document_schema,
    entry,
    load_document,
)
from mainspring.settings import Settings

router = APIRouter(
    prefix="/jobs",
    tags=["jobs"],
    dependencies=[Depends(current_user)],
    responses=API_ERRORS,
)

ServerSettings = Annotated[Settings, Depends(get_settings)]
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
VersionNo = Annotated[int, Path(ge=1, le=2**31 - 1)]
FilterText = Query(max_length=200, pattern=NO_CONTROL)
YAML_TYPE = "application/yaml"
_ONE: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}


class ApplyIn(BaseModel):
    """A jobs document (as an object, or as YAML/JSON text), and how to apply it."""

    model_config = ConfigDict(extra="forbid")

    document: dict[str, Any] | str = Field(description="the document, or its YAML text")
    dry_run: bool = Field(default=False, description="only compute the plan")
    prune: bool = Field(default=False, description="delete managed jobs it leaves out")


class ChangeOut(BaseModel):
    action: Literal["create", "update", "adopt", "delete", "unchanged"]
    name: str
    job_id: int | None
    fields: list[str] = Field(description="the fields that change")
    before: dict[str, Any] | None = Field(description="document entry before (None: new)")
    after: dict[str, Any] | None = Field(description="document entry after (None: deleted)")


class ApplyOut(BaseModel):
    dry_run: bool
    applied: bool
    counts: dict[str, int]
    changes: list[ChangeOut]
    kept: list[str] = Field(description="managed jobs not in the document, kept (no prune)")
    diff: str = Field(description="the plan as text, as `mainspring apply` shows it")


class VersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    action: str
    changed_by: str | None
    changed_at: datetime
    summary: str


class VersionPage(BaseModel):
    items: list[VersionOut]
    total: int
    limit: int
    offset: int


class VersionDetail(VersionOut):
    definition: dict[str, Any]
    previous_version: int | None
    diff: dict[str, Any] = Field(description="{before, after}: what this version changed")


@router.get(
    "/export",
    responses={200: {"content": {"application/json": {}, YAML_TYPE: {}}}},
    response_class=Response,
)
def jobs_export(
    db: Db,
    tag: Annotated[str | None, FilterText] = None,
    queue: Annotated[str | None, FilterText] = None,
    task: Annotated[str | None, FilterText] = None,
    text: Annotated[str | None, FilterText] = None,
    state: Literal["enabled", "paused"] | None = None,
    fmt: Annotated[Literal["json", "yaml"], Query(alias="format")] = "json",
) -> Response:
    """The jobs (filtered) as a document ``POST /jobs/apply`` takes back; ``format=yaml`` gives
    the text ``mainspring export`` writes."""
    enabled = None if state is None else state == "enabled"
    selector = Selector(tag=tag, queue=queue, task=task, text=text, enabled=enabled)
    doc = jobs_code.export_document(db, selector)
    if fmt == "yaml":
        return Response(jobs_code.export_yaml(doc), media_type=YAML_TYPE)
    return Response(json.dumps(doc, ensure_ascii=False), media_type="application/json")


@router.get("/export/schema", response_model=dict[str, Any])
def jobs_export_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the jobs document."""
    return document_schema()


@router.post("/apply", response_model=ApplyOut, responses={403: {"model": ErrorOut}})
def jobs_apply(
    db: Db, body: ApplyIn, settings: ServerSettings, _who: Operator, actor: AuditActor
) -> ApplyOut:
    """Create and update jobs to match the document (and with ``prune``, delete the managed
    jobs it leaves out); ``dry_run`` only answers the plan. All or nothing."""
    doc = load_document(body.document, settings.timezone, settings.default_queue)
    planned = jobs_code.plan(db, doc.specs, prune=body.prune, selector=doc.selector)
    applied = not body.dry_run and bool(planned.writes)
    if applied:
        jobs_code.execute(db, planned, actor)
    return ApplyOut(
        dry_run=body.dry_run,
        applied=applied,
        counts={a: planned.count(a) for a in ("create", "update", "adopt", "delete", "unchanged")},
        changes=[_change_out(c) for c in planned.changes],
        kept=planned.kept,
        diff=jobs_code.render(planned),
    )


def _change_out(change: jobs_code.Change) -> ChangeOut:
    return ChangeOut(
        action=change.action,
        name=change.name,
        job_id=change.job_id,
        fields=change.fields,
        before=entry(change.before) if change.before else None,
        after=entry(change.after) if change.after else None,
    )


@router.get("/{job_id}/versions", response_model=VersionPage, responses=_ONE)
def job_versions_page(
    db: Db,
    job_id: JobId,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> VersionPage:
    """The job's versions, newest first: who changed it, when, and a summary."""
    get_job(db, job_id)
    rows, total = job_versions.list_versions(db, job_id, limit, offset)
    items = [VersionOut.model_validate(row) for row in rows]
    return VersionPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{job_id}/versions/{version}", response_model=VersionDetail, responses=_ONE)
def job_version_detail(db: Db, job_id: JobId, version: VersionNo) -> VersionDetail:
    """One version's whole definition and what it changed from the one before."""
    get_job(db, job_id)
    row = job_versions.get_version(db, job_id, version)
    previous = job_versions.previous_version(db, row)
    return VersionDetail(
        **VersionOut.model_validate(row).model_dump(),
        definition={k: v for k, v in row.definition.items() if k != "v"},
        previous_version=previous.version if previous else None,
        diff=job_versions.version_diff(previous, row),
    )


@router.post(
    "/{job_id}/versions/{version}/rollback",
    response_model=JobOut,
    responses={**_ONE, 403: {"model": ErrorOut}, 409: {"model": ErrorOut}},
)
def job_rollback(
    db: Db,
    job_id: JobId,
    version: VersionNo,
    _who: Operator,
    actor: AuditActor,
    current_version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> JobOut:
    """Make ``version``'s definition current again, as a new version (history is kept).
    With ``current_version`` (the job's version you read), a job changed since is a 409."""
    job = lock_job(db, job_id, version=current_version)
    return JobOut.model_validate(job_versions.rollback(db, job, version, actor))
