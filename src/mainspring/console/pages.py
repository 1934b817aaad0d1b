"""Console pages for reading: jobs, the run history and one run with its log."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from mainspring.api.auth import ConsoleUser
from mainspring.api.deps import Db
from mainspring.console.render import render
from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.errors import NotFoundError, ValidationError
from mainspring.services.jobs import count_jobs, get_job, list_jobs
from mainspring.services.runs import RunCursor, RunFilter, get_run, list_runs, run_log_text

RUNS_PER_PAGE = 50
JOBS_SHOWN = 500

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/jobs", status_code=303)


@router.get("/jobs")
def jobs(request: Request, db: Db, user: ConsoleUser) -> HTMLResponse:
    rows = list_jobs(db, limit=JOBS_SHOWN)
    context = {"jobs": rows, "total": count_jobs(db), "shown": len(rows)}
    return render(request, "jobs.html", context, user=user)


def _optional_int(field: str, raw: str) -> int | None:
    """Filter forms submit empty strings for "any"; anything else must be a whole number."""
    if not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(field, "must be a whole number") from None


def _job_names(db: Session, runs: list[Run]) -> dict[int, str]:
    names: dict[int, str] = {}
    for job_id in {run.job_id for run in runs if run.job_id is not None}:
        try:
            names[job_id] = get_job(db, job_id).name
        except NotFoundError:
            continue
    return names


@router.get("/runs")
def runs(
    request: Request,
    db: Db,
    user: ConsoleUser,
    job_id: str = "",
    state: str = "",
    cursor: str = "",
) -> HTMLResponse:
    """Newest runs first; the "next page" link carries the keyset cursor and the filters."""
    flt = RunFilter(job_id=_optional_int("job_id", job_id), state=state.strip() or None)
    after = RunCursor.decode(cursor) if cursor else None
    rows, next_cursor = list_runs(db, flt, limit=RUNS_PER_PAGE, cursor=after)
    filters = {k: v for k, v in {"job_id": job_id, "state": state}.items() if v.strip()}
    next_url = None
    if next_cursor is not None:
        next_url = "/runs?" + urlencode({**filters, "cursor": next_cursor.encode()})
    context = {
        "runs": rows,
        "job_names": _job_names(db, rows),
        "next_url": next_url,
        "first_url": "/runs" + ("?" + urlencode(filters) if filters else ""),
        "is_first_page": after is None,
        "job_id": job_id,
        "state": (flt.state or "").upper(),
        "states": [s.value for s in RunState],
    }
    return render(request, "runs.html", context, user=user)


@router.get("/runs/{run_id}")
def run_detail(request: Request, db: Db, user: ConsoleUser, run_id: str) -> HTMLResponse:
    run = get_run(db, run_id)
    log_text, _last_seq = run_log_text(db, run_id)
    context = {"run": run, "log_text": log_text, "job_names": _job_names(db, [run])}
    return render(request, "run.html", context, user=user)
