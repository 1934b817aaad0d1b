"""``/api/v1/runs``: run history with filters and keyset pagination, one run, its log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from mainspring.api.auth import current_user
from mainspring.api.deps import Db
from mainspring.api.schemas import ErrorOut, RunLogOut, RunOut, RunPage, ValidationErrorOut
from mainspring.services.runs import RunCursor, RunFilter, get_run, list_runs, run_log_text

router = APIRouter(
    prefix="/runs",
    tags=["runs"],
    dependencies=[Depends(current_user)],
    responses={401: {"model": ErrorOut}, 422: {"model": ValidationErrorOut}},
)


@router.get("", response_model=RunPage)
def runs_page(
    db: Db,
    job_id: int | None = None,
    task: str | None = None,
    state: str | None = None,
    worker: str | None = None,
    queue: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> RunPage:
    """Runs newest first; follow ``next_cursor`` for the next page (null at the end)."""
    flt = RunFilter(job_id=job_id, task=task, state=state, worker=worker, queue=queue)
    after = RunCursor.decode(cursor) if cursor else None
    rows, next_cursor = list_runs(db, flt, limit=limit, cursor=after)
    return RunPage(
        items=[RunOut.model_validate(row) for row in rows],
        next_cursor=next_cursor.encode() if next_cursor else None,
    )


@router.get("/{run_id}", response_model=RunOut, responses={404: {"model": ErrorOut}})
def run_detail(db: Db, run_id: str) -> RunOut:
    return RunOut.model_validate(get_run(db, run_id))


@router.get("/{run_id}/logs", response_model=RunLogOut, responses={404: {"model": ErrorOut}})
def run_logs(db: Db, run_id: str, after_seq: Annotated[int, Query(ge=-1)] = -1) -> RunLogOut:
    """The run's output after ``after_seq``; poll with the returned ``last_seq``."""
    get_run(db, run_id)
    text, last_seq = run_log_text(db, run_id, after_seq=after_seq)
    return RunLogOut(text=text, last_seq=last_seq)
