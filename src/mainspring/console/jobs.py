"""Jobs: the list (search, filters, sorting, bulk pause/resume), one job's page, and what an
operator does to it (pause, resume, run now, delete).

Changes go through ``services.jobs`` with the user as audit actor, so the console's changes
are in the audit log like the API's; every change is a CSRF-checked POST refused (403) to
viewers, whatever the page showed them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from mainspring.api.auth import safe_next
from mainspring.api.deps import Db
from mainspring.console.charts import duration_chart, run_stats
from mainspring.console.deps import (
    MAX_ID,
    CheckedForm,
    CurrentReader,
    JobId,
    Operator,
    Reader,
    form_text,
    json_field,
)
from mainspring.console.i18n import N_
from mainspring.console.job_history import recent_versions
from mainspring.console.prefs import flash
from mainspring.console.render import render
from mainspring.core.states import RunState
from mainspring.db.models import Job
from mainspring.errors import ConflictError, NotFoundError, ValidationError
from mainspring.services import jobs as job_service
from mainspring.services.audit import AuditFilter, list_entries
from mainspring.services.job_preview import preview_fires
from mainspring.services.job_queries import JobFilter, lock_job
from mainspring.services.runs import RunFilter, list_runs

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100
HISTORY_SHOWN = 20
STATS_RUNS = 100
AUDIT_SHOWN = 20
MAX_BULK = 500
FilterText = Annotated[str, Query(max_length=200)]
SORT_KEYS = ("name", "next_fire_at", "last_fire_at", "last_state", "task", "queue")


@dataclass(frozen=True)
class JobQuery:
    """The list's filters and order as the URL carries them."""

    q: str = ""
    tag: str = ""
    state: str = ""
    last_state: str = ""
    queue: str = ""
    task: str = ""
    sort: str = "name"

    def to_filter(self) -> JobFilter:
        enabled = {"enabled": True, "paused": False}.get(self.state)
        return JobFilter(
            tag=self.tag or None,
            enabled=enabled,
            last_state=self.last_state or None,
            queue=self.queue or None,
            task=self.task or None,
            text=self.q or None,
        )

    def params(self, **changes: str) -> str:
        values = {**self.__dict__, **changes}
        return urlencode(
            {k: v for k, v in values.items() if v and not (k == "sort" and v == "name")}
        )


def _page_of_jobs(db: Session, query: JobQuery, page: int) -> tuple[list[Job], int, bool]:
    """One page of matching jobs in the order asked for (sorted by the database, so it stays
    fast with many jobs), the total, and whether that order was known (else: by name)."""
    flt = query.to_filter()
    total = job_service.count_jobs(db, flt)
    known = query.sort.removeprefix("-") in SORT_KEYS
    order = query.sort if known else "name"
    rows = job_service.list_jobs(db, PAGE_SIZE, (page - 1) * PAGE_SIZE, flt, order=order)
    return rows, total, known


@router.get("/jobs")
def jobs_page(
    request: Request,
    db: Db,
    reader: CurrentReader,
    q: FilterText = "",
    tag: FilterText = "",
    state: FilterText = "",
    last_state: FilterText = "",
    queue: FilterText = "",
    task: FilterText = "",
    sort: FilterText = "name",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    query = JobQuery(q.strip(), tag.strip(), state, last_state, queue.strip(), task.strip(), sort)
    rows, total, sorted_as_asked = _page_of_jobs(db, query, page)
    pages = max(1, -(-total // PAGE_SIZE))
    context = {
        "jobs": rows,
        "total": total,
        "query": query,
        "page": page,
        "pages": pages,
        "sorted_as_asked": sorted_as_asked,
        "sort_keys": SORT_KEYS,
        "run_states": [s.value for s in RunState],
        "back": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }
    return render(request, "jobs.html", context, reader.principal)


@router.post("/jobs/bulk")
def jobs_bulk(request: Request, db: Db, reader: Operator, form: CheckedForm) -> Response:
    """Pause or resume the ticked jobs, then back to the list as it was."""
    action = form_text(form, "action")
    back = safe_next(form_text(form, "next"), "/jobs")
    given = [v for v in form.getlist("job") if isinstance(v, str) and v.isdigit()]
    ids = [int(v) for v in given if 0 < int(v) <= MAX_ID][:MAX_BULK]
    if action not in ("pause", "resume"):
        raise ValidationError("action", "must be pause or resume")
    changed = 0
    for job_id in ids:
        try:
            job = lock_job(db, job_id)
        except NotFoundError:
            continue
        if job.enabled != (action == "resume"):
            job_service.set_enabled(db, job, action == "resume", audit=reader.actor)
            changed += 1
    message = N_("%(count)s jobs paused.") if action == "pause" else N_("%(count)s jobs resumed.")
    flash(request, reader.gettext(message) % {"count": changed})
    return RedirectResponse(back, status_code=303)


def _next_fires(job: Job) -> list[Any]:
    if not job.enabled:
        return []
    left = None if job.max_runs is None else job.max_runs - job.fire_count
    if left is not None and left < 1:
        return []
    try:
        return preview_fires(
            job.trigger, job.timezone, 5,
            start_at=job.start_at, end_at=job.end_at, max_runs=left, name=job.name,
        )  # fmt: skip
    except ValidationError:
        return []


def detail_page(
    request: Request,
    db: Session,
    reader: Reader,
    job: Job,
    run_input: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The job's page; ``run_input``/``errors`` re-show a "run now" form that was refused."""
    recent, _cursor = list_runs(db, RunFilter(job_id=job.id), limit=STATS_RUNS)
    audit, _more = list_entries(
        db, AuditFilter(object_type="job", object_id=str(job.id)), limit=AUDIT_SHOWN
    )
    context = {
        "job": job,
        "runs": recent[:HISTORY_SHOWN],
        "stats": run_stats(recent),
        "chart": duration_chart(recent[:50]),
        "next_fires": _next_fires(job),
        "audit": audit,
        **recent_versions(db, job.id),
        "run_input": run_input
        or {"args": json.dumps(job.args, ensure_ascii=False),
            "kwargs": json.dumps(job.kwargs, ensure_ascii=False)},
        "errors": errors or {},
    }  # fmt: skip
    return render(request, "job.html", context, reader.principal, status_code)


@router.get("/jobs/{job_id:int}")
def job_page(request: Request, db: Db, reader: CurrentReader, job_id: JobId) -> HTMLResponse:
    return detail_page(request, db, reader, job_service.get_job(db, job_id))


@router.post("/jobs/{job_id:int}/pause")
def job_pause(
    request: Request, db: Db, reader: Operator, form: CheckedForm, job_id: JobId
) -> Response:
    job_service.set_enabled(db, lock_job(db, job_id), False, audit=reader.actor)
    flash(request, reader.gettext("Job paused: it will not fire until resumed."))
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id:int}/resume")
def job_resume(
    request: Request, db: Db, reader: Operator, form: CheckedForm, job_id: JobId
) -> Response:
    job_service.set_enabled(db, lock_job(db, job_id), True, audit=reader.actor)
    flash(request, reader.gettext("Job resumed."))
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id:int}/run")
def job_run_now(
    request: Request, db: Db, reader: Operator, form: CheckedForm, job_id: JobId
) -> Response:
    """Fire once now with the (possibly edited) arguments; the schedule does not move."""
    job = job_service.get_job(db, job_id)
    run_input = {"args": form_text(form, "args"), "kwargs": form_text(form, "kwargs")}
    args, args_error = json_field(run_input["args"], list, reader)
    kwargs, kwargs_error = json_field(run_input["kwargs"], dict, reader)
    errors = {k: v for k, v in (("args", args_error), ("kwargs", kwargs_error)) if v}
    if errors:
        return detail_page(request, db, reader, job, run_input, errors, 422)
    try:
        run = job_service.run_job_now(db, job, args, kwargs, audit=reader.actor)
    except ConflictError as exc:
        return detail_page(request, db, reader, job, run_input, {"run": str(exc)}, 409)
    flash(request, reader.gettext("Run sent: it starts as soon as a worker takes it."))
    return RedirectResponse(f"/runs/{run.id}", status_code=303)


@router.get("/jobs/{job_id:int}/delete")
def job_delete_confirm(request: Request, db: Db, reader: Operator, job_id: JobId) -> HTMLResponse:
    job = job_service.get_job(db, job_id)
    return render(request, "job_delete.html", {"job": job}, reader.principal)


@router.post("/jobs/{job_id:int}/delete")
def job_delete(
    request: Request, db: Db, reader: Operator, form: CheckedForm, job_id: JobId
) -> Response:
    """Delete the job (its runs are kept); the version read guards against a lost race."""
    raw_version = form_text(form, "version")
    version = int(raw_version) if raw_version.isdigit() else None
    job = lock_job(db, job_id, version=version)
    name = job.name
    job_service.delete_job(db, job, audit=reader.actor)
    flash(request, reader.gettext("Job %(name)s deleted; its runs are kept.") % {"name": name})
    return RedirectResponse("/jobs", status_code=303)
