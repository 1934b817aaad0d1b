"""Runs: the history (filters, keyset pages that stay fast at millions of rows, live refresh
of the newest page) and one run (timeline, outcome, its log followed live, its broadcast
copies), with revoke, terminate and re-run for operators.

The actions call ``services.runs`` like ``/api/v1/runs`` does; they publish to the broker and
open their own short transactions, so they run after the request's own one is committed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from mainspring.api.celery_dep import get_celery
from mainspring.api.deps import Db, get_ctx
from mainspring.api.task_schemas import SIGNALS
from mainspring.console.deps import (
    MAX_ID,
    CheckedForm,
    CurrentReader,
    Reader,
    ReleasedOperator,
    form_text,
    json_field,
)
from mainspring.console.i18n import N_
from mainspring.console.prefs import flash
from mainspring.console.render import render
from mainspring.console.workflow_tree import workflow_steps
from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Run
from mainspring.errors import ConflictError, NotFoundError, ValidationError
from mainspring.services import runs as run_service
from mainspring.services.job_queries import job_names as names_of_jobs
from mainspring.services.jobs import get_job_by_name
from mainspring.services.runs import RunCursor, RunFilter, get_run, list_runs, run_log_text

router = APIRouter(include_in_schema=False)

RUNS_PER_PAGE = 50
CHILDREN_SHOWN = 500
FilterText = Annotated[str, Query(max_length=255)]
FILTER_NAMES = ("job", "task", "state", "worker", "queue", "trigger", "after", "before")


def job_names(db: Session, runs: list[Run]) -> dict[int, str]:
    """The names of the runs' jobs (one query; a deleted job has none)."""
    return names_of_jobs(db, (run.job_id for run in runs if run.job_id is not None))


def _local_instant(raw: str, tz: ZoneInfo) -> datetime:
    """A ``datetime-local`` value (or ISO 8601) read in the reader's zone."""
    parsed = datetime.fromisoformat(raw)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def _run_filter(
    db: Session, reader: Reader, given: dict[str, str]
) -> tuple[RunFilter, dict[str, str]]:
    """The filter the form asks for, and messages for the inputs that are wrong."""
    errors: dict[str, str] = {}
    job_id = None
    if given["job"]:
        if given["job"].isdigit() and int(given["job"]) <= MAX_ID:
            job_id = int(given["job"])
        else:
            try:
                job_id = get_job_by_name(db, given["job"]).id
            except NotFoundError:
                errors["job"] = reader.gettext("no job has this name")
    bounds: dict[str, datetime | None] = {"after": None, "before": None}
    tz = ZoneInfo(reader.prefs.timezone)
    for name in bounds:
        if given[name]:
            try:
                bounds[name] = _local_instant(given[name], tz)
            except ValueError:
                errors[name] = reader.gettext("must be a date and time")
    flt = RunFilter(
        job_id=job_id,
        task=given["task"] or None,
        state=given["state"] or None,
        worker=given["worker"] or None,
        queue=given["queue"] or None,
        trigger=given["trigger"] or None,
        created_after=bounds["after"],
        created_before=bounds["before"],
    )
    return flt, errors


@router.get("/runs")
def runs_page(
    request: Request,
    db: Db,
    reader: CurrentReader,
    job: FilterText = "",
    task: FilterText = "",
    state: FilterText = "",
    worker: FilterText = "",
    queue: FilterText = "",
    trigger: FilterText = "",
    after: FilterText = "",
    before: FilterText = "",
    cursor: Annotated[str, Query(max_length=400)] = "",
    job_id: FilterText = "",
) -> HTMLResponse:
    """Newest runs first; "next page" carries the keyset cursor and the filters. A filter
    that cannot apply is shown next to its input (status 422) with no runs."""
    values = (job or job_id, task, state, worker, queue, trigger, after, before)
    given = {name: value.strip() for name, value in zip(FILTER_NAMES, values, strict=True)}
    flt, errors = _run_filter(db, reader, given)
    rows: list[Run] = []
    next_cursor = None
    if not errors:
        after_cursor = RunCursor.decode(cursor) if cursor else None
        try:
            rows, next_cursor = list_runs(db, flt, limit=RUNS_PER_PAGE, cursor=after_cursor)
        except ValidationError as exc:
            errors[_filter_input(exc.field)] = reader.gettext(exc.message)
    filters = {k: v for k, v in given.items() if v}
    context = {
        "runs": rows,
        "job_names": job_names(db, rows),
        "filters": given,
        "errors": errors,
        "next_url": "/runs?" + urlencode({**filters, "cursor": next_cursor.encode()})
        if next_cursor
        else None,
        "first_url": "/runs" + ("?" + urlencode(filters) if filters else ""),
        "is_first_page": not cursor,
        "states": [s.value for s in RunState],
        "triggers": [t.value for t in TriggerSource],
    }
    return render(request, "runs.html", context, reader.principal, 422 if errors else 200)


def _filter_input(field: str) -> str:
    return {"created_after": "after", "created_before": "before", "job_id": "job"}.get(field, field)


def _children_summary(children: list[Run]) -> dict[str, int]:
    succeeded = sum(1 for c in children if c.state == RunState.SUCCESS.value)
    ended = sum(1 for c in children if _is_final(c.state))
    return {"total": len(children), "succeeded": succeeded, "ended": ended}


def _is_final(state: str) -> bool:
    try:
        return RunState(state).is_final
    except ValueError:
        return False


def _ms_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds() * 1000)


STEPS = (
    ("created_at", N_("created")),
    ("scheduled_for", N_("scheduled for")),
    ("sent_at", N_("sent")),
    ("received_at", N_("received")),
    ("started_at", N_("started")),
    ("finished_at", N_("finished")),
)


def timeline(run: Run) -> list[tuple[str, datetime | None, float | None]]:
    """(label, instant, ms since the step before that happened) along the run's life."""
    steps: list[tuple[str, datetime | None, float | None]] = []
    previous: datetime | None = None
    for attribute, label in STEPS:
        at: datetime | None = getattr(run, attribute)
        steps.append((label, at, _ms_between(previous, at) if previous else None))
        previous = at or previous
    return steps


def run_page(
    request: Request,
    db: Session,
    reader: Reader,
    run_id: str,
    rerun_input: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    run = get_run(db, run_id)
    log_text, last_seq = run_log_text(db, run_id)
    children: list[Run] = []
    if (run.options or {}).get("broadcast"):
        children, _cursor = list_runs(db, RunFilter(parent_id=run.id), limit=CHILDREN_SHOWN)
        children.sort(key=lambda child: child.worker or child.queue or "")
    steps, steps_error = workflow_steps(db, run)
    context: dict[str, Any] = {
        "run": run,
        "workflow_steps": steps,
        "workflow_error": steps_error,
        "log_text": log_text,
        "last_seq": last_seq,
        "is_final": _is_final(run.state),
        "job_names": job_names(db, [run]),
        "children": children,
        "children_summary": _children_summary(children),
        "timeline": timeline(run),
        "queue_wait_ms": _ms_between(run.sent_at, run.started_at or run.received_at),
        "signals": SIGNALS,
        "rerun_input": rerun_input
        or {"args": json.dumps(run.args or [], ensure_ascii=False),
            "kwargs": json.dumps(run.kwargs or {}, ensure_ascii=False)},
        "errors": errors or {},
    }  # fmt: skip
    return render(request, "run.html", context, reader.principal, status_code)


@router.get("/runs/{run_id}")
def run_detail(request: Request, db: Db, reader: CurrentReader, run_id: str) -> HTMLResponse:
    return run_page(request, db, reader, run_id)


def _done(request: Request, run_id: str, message: str, level: str = "ok") -> Response:
    flash(request, message, "error" if level == "error" else "ok")
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.post("/runs/{run_id}/revoke")
def run_revoke(
    request: Request, reader: ReleasedOperator, form: CheckedForm, run_id: str
) -> Response:
    """Make sure a run that has not started never does."""
    try:
        action = run_service.revoke(get_ctx(request), get_celery(request), reader.actor, run_id)
    except ConflictError as exc:
        return _done(request, run_id, str(exc), "error")
    return _done(request, run_id, reader.gettext("Revoked: %(detail)s") % {"detail": action.detail})


@router.post("/runs/{run_id}/terminate")
def run_terminate(
    request: Request, reader: ReleasedOperator, form: CheckedForm, run_id: str
) -> Response:
    """Stop a running run with the chosen signal (a run not started yet is revoked)."""
    signal = form_text(form, "signal", "SIGTERM")
    if signal not in SIGNALS:
        raise ValidationError("signal", f"must be one of {', '.join(SIGNALS)}")
    ctx, app = get_ctx(request), get_celery(request)
    try:
        action = run_service.terminate(ctx, app, reader.actor, run_id, signal)
    except ConflictError as exc:
        return _done(request, run_id, str(exc), "error")
    message = reader.gettext("Terminate sent: %(detail)s") % {"detail": action.detail}
    return _done(request, run_id, message)


@router.post("/runs/{run_id}/rerun")
def run_rerun(
    request: Request, reader: ReleasedOperator, form: CheckedForm, run_id: str
) -> Response:
    """A new run of the same task now, with the arguments as (possibly) edited."""
    ctx = get_ctx(request)
    given = {"args": form_text(form, "args"), "kwargs": form_text(form, "kwargs")}
    args, args_error = json_field(given["args"], list, reader)
    kwargs, kwargs_error = json_field(given["kwargs"], dict, reader)
    errors = {k: v for k, v in (("args", args_error), ("kwargs", kwargs_error)) if v}
    if not errors:
        try:
            done = run_service.rerun(ctx, get_celery(request), reader.actor, run_id, args, kwargs)
        except (ValidationError, ConflictError) as exc:
            errors = {getattr(exc, "field", "rerun"): getattr(exc, "message", str(exc))}
        else:
            flash(request, reader.gettext("Run sent again as a new run."))
            return RedirectResponse(f"/runs/{done.run.id}", status_code=303)
    with ctx.session() as session:
        return run_page(request, session, reader, run_id, given, errors, 422)
