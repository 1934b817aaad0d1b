"""``/api/v1/jobs``: schedules. Anyone logged in reads; operators and admins change them.

Edits by id carry the ``version`` the client read: a job changed since is a 409 naming
``version`` (with the current one), never a silent overwrite. Application code that owns a
job by name (seed 004) uses ``PUT``/``DELETE /jobs/by-name/{name}`` and needs no version.
Every change is audited with the caller's name and address.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response

from mainspring.api.audit import AuditActor
from mainspring.api.auth import Operator, current_user
from mainspring.api.deps import Db, get_settings
from mainspring.api.job_schemas import (
    NO_CONTROL,
    ConflictOut,
    FireTime,
    JobCreate,
    JobFields,
    JobOut,
    JobPage,
    JobPatch,
    JobReplace,
    JobUpsert,
    PreviewIn,
    PreviewOut,
    RunNowIn,
    RunNowOut,
)
from mainspring.api.schemas import API_ERRORS, ErrorOut, RunOut, RunPage
from mainspring.core.triggers import zone
from mainspring.errors import ValidationError
from mainspring.services import jobs as job_service
from mainspring.services.job_preview import preview_fires
from mainspring.services.job_queries import JobFilter, StaleVersionError, lock_job
from mainspring.services.runs import RunCursor, RunFilter, list_runs
from mainspring.settings import Settings

router = APIRouter(
    prefix="/jobs",
    tags=["jobs"],
    dependencies=[Depends(current_user)],
    # 400: a body that is not JSON at all; 429: too many wrong Basic passwords.
    responses=API_ERRORS,
)

ServerSettings = Annotated[Settings, Depends(get_settings)]
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
JobNamePath = Annotated[str, Path(min_length=1, max_length=200, pattern=NO_CONTROL)]
FilterText = Query(max_length=200, pattern=NO_CONTROL)
Responses = dict[int | str, dict[str, Any]]
_WRITE: Responses = {403: {"model": ErrorOut}}
_ONE: Responses = {404: {"model": ErrorOut}}
_EDIT: Responses = {**_WRITE, **_ONE, 409: {"model": ConflictOut}}


@contextmanager
def _version_checked() -> Iterator[None]:
    """A stale version as a 409 whose detail names the field and gives the current one."""
    try:
        yield
    except StaleVersionError as exc:
        detail = {"field": exc.field, "message": exc.message, "current_version": exc.current}
        raise HTTPException(status_code=409, detail=detail) from None


def _spec(body: JobFields, name: str, settings: Settings) -> job_service.JobSpec:
    """A ``JobSpec`` from a full definition; omitted zone and queue come from the settings."""
    values = body.model_dump(mode="json", exclude_none=True, exclude={"name", "version"})
    values.setdefault("timezone", settings.timezone)
    values.setdefault("queue", settings.default_queue)
    return job_service.JobSpec(name=name, **values)


@router.get("", response_model=JobPage)
def jobs_page(
    db: Db,
    tag: Annotated[str | None, FilterText] = None,
    state: Literal["enabled", "paused"] | None = None,
    last_state: Annotated[str | None, FilterText] = None,
    queue: Annotated[str | None, FilterText] = None,
    task: Annotated[str | None, FilterText] = None,
    text: Annotated[str | None, FilterText] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JobPage:
    """Jobs by name, filtered: ``state`` is enabled or paused, ``last_state`` the state of
    the last run (SUCCESS, FAILURE…), ``text`` a part of the name or description."""
    enabled = None if state is None else state == "enabled"
    flt = JobFilter(tag, enabled, last_state, queue, task, text)
    rows = job_service.list_jobs(db, limit=limit, offset=offset, flt=flt)
    items = [JobOut.model_validate(row) for row in rows]
    total = job_service.count_jobs(db, flt)
    return JobPage(items=items, total=total, limit=limit, offset=offset)


@router.post(
    "", response_model=JobOut, status_code=201, responses={**_WRITE, 409: {"model": ErrorOut}}
)
def job_create(
    db: Db, body: JobCreate, settings: ServerSettings, who: Operator, actor: AuditActor
) -> JobOut:
    """Create a job; its name must be new (409 otherwise)."""
    spec = _spec(body, body.name, settings)
    return JobOut.model_validate(job_service.create_job(db, spec, who.username, audit=actor))


@router.post("/preview", response_model=PreviewOut)
def job_preview(body: PreviewIn, settings: ServerSettings) -> PreviewOut:
    """The next ``n`` fire times of a trigger, as the scheduler will compute them."""
    tz_name = body.timezone or settings.timezone
    fires = preview_fires(
        body.trigger.model_dump(mode="json", exclude_none=True),
        tz_name,
        body.n,
        after=body.after,
        start_at=body.start_at,
        end_at=body.end_at,
        max_runs=body.max_runs,
        name=body.name or "",
    )
    tz = zone(tz_name)
    return PreviewOut(
        timezone=tz_name, fire_times=[FireTime(local=f.astimezone(tz), utc=f) for f in fires]
    )


@router.get("/by-name/{name}", response_model=JobOut, responses=_ONE)
def job_by_name(db: Db, name: JobNamePath) -> JobOut:
    return JobOut.model_validate(job_service.get_job_by_name(db, name))


@router.put(
    "/by-name/{name}",
    response_model=JobOut,
    responses={**_WRITE, 201: {"model": JobOut, "description": "Created"}},
)
def job_upsert(
    db: Db,
    name: JobNamePath,
    body: JobUpsert,
    response: Response,
    settings: ServerSettings,
    who: Operator,
    actor: AuditActor,
) -> JobOut:
    """Create the job ``name`` (201) or replace its whole definition (200); no version."""
    if body.name is not None and body.name != name:
        raise ValidationError("name", "must be the name in the path (or left out)")
    spec = _spec(body, name, settings)
    job, created = job_service.upsert_job(db, spec, who.username, audit=actor)
    response.status_code = 201 if created else 200
    return JobOut.model_validate(job)


@router.delete(
    "/by-name/{name}", status_code=204, response_class=Response, responses={**_WRITE, **_ONE}
)
def job_delete_by_name(db: Db, name: JobNamePath, _who: Operator, actor: AuditActor) -> Response:
    """Delete the job ``name``; its run history is kept."""
    job_service.delete_job(db, lock_job(db, name=name), audit=actor)
    return Response(status_code=204)


@router.get("/{job_id}", response_model=JobOut, responses=_ONE)
def job_detail(db: Db, job_id: JobId) -> JobOut:
    return JobOut.model_validate(job_service.get_job(db, job_id))


@router.put("/{job_id}", response_model=JobOut, responses=_EDIT)
def job_replace(
    db: Db,
    job_id: JobId,
    body: JobReplace,
    settings: ServerSettings,
    _who: Operator,
    actor: AuditActor,
) -> JobOut:
    """Replace the whole definition (omitted fields take their defaults)."""
    with _version_checked():
        job = lock_job(db, job_id, version=body.version)
    spec = _spec(body, body.name, settings)
    return JobOut.model_validate(job_service.update_job(db, job, spec, audit=actor))


@router.patch("/{job_id}", response_model=JobOut, responses=_EDIT)
def job_patch(db: Db, job_id: JobId, body: JobPatch, _who: Operator, actor: AuditActor) -> JobOut:
    """Change only the fields sent (each replaced whole, ``options`` included)."""
    with _version_checked():
        job = lock_job(db, job_id, version=body.version)
    changes = body.model_dump(mode="json", exclude_unset=True, exclude={"version"})
    for key in ("trigger", "options"):
        if isinstance(changes.get(key), dict):
            changes[key] = _without_none(changes[key])
    return JobOut.model_validate(job_service.patch_job(db, job, changes, audit=actor))


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@router.delete("/{job_id}", status_code=204, response_class=Response, responses=_EDIT)
def job_delete(
    db: Db,
    job_id: JobId,
    _who: Operator,
    actor: AuditActor,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """Delete the job (its run history is kept); with ``version``, only if still current."""
    with _version_checked():
        job = lock_job(db, job_id, version=version)
    job_service.delete_job(db, job, audit=actor)
    return Response(status_code=204)


@router.post("/{job_id}/pause", response_model=JobOut, responses={**_WRITE, **_ONE})
def job_pause(db: Db, job_id: JobId, _who: Operator, actor: AuditActor) -> JobOut:
    """Stop firing (a fire already claimed is cancelled); pausing a paused job is a no-op."""
    job = job_service.set_enabled(db, lock_job(db, job_id), False, audit=actor)
    return JobOut.model_validate(job)


@router.post("/{job_id}/resume", response_model=JobOut, responses={**_WRITE, **_ONE})
def job_resume(db: Db, job_id: JobId, _who: Operator, actor: AuditActor) -> JobOut:
    """Fire again; fires missed while paused go through the job's misfire policy."""
    job = job_service.set_enabled(db, lock_job(db, job_id), True, audit=actor)
    return JobOut.model_validate(job)


@router.post(
    "/{job_id}/run",
    response_model=RunNowOut,
    status_code=202,
    responses={**_WRITE, **_ONE, 409: {"model": ErrorOut}},
)
def job_run_now(
    db: Db, job_id: JobId, _who: Operator, actor: AuditActor, body: RunNowIn | None = None
) -> RunNowOut:
    """Fire once now, outside the schedule (the next fire time does not move); ``args`` and
    ``kwargs`` replace the job's for this run. Answers at once with the run id."""
    job = job_service.get_job(db, job_id)
    body = body or RunNowIn()
    run = job_service.run_job_now(db, job, body.args, body.kwargs, audit=actor)
    return RunNowOut(run_id=run.id, job_id=job.id, state=run.state)


@router.get("/{job_id}/runs", response_model=RunPage, responses=_ONE)
def job_runs(
    db: Db,
    job_id: JobId,
    state: Annotated[str | None, FilterText] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=300, pattern=NO_CONTROL)] = None,
) -> RunPage:
    """The job's runs, newest first; follow ``next_cursor`` for older ones."""
    job_service.get_job(db, job_id)
    after = RunCursor.decode(cursor) if cursor else None
    rows, next_cursor = list_runs(db, RunFilter(job_id=job_id, state=state), limit, after)
    return RunPage(
        items=[RunOut.model_validate(row) for row in rows],
        next_cursor=next_cursor.encode() if next_cursor else None,
    )
