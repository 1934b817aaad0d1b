"""``/api/v1/jobs``: the schedules, by name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from mainspring.api.auth import current_user
from mainspring.api.deps import Db
from mainspring.api.schemas import ErrorOut, JobOut, JobPage
from mainspring.services.jobs import count_jobs, list_jobs

router = APIRouter(
    prefix="/jobs",
    tags=["jobs"],
    dependencies=[Depends(current_user)],
    responses={401: {"model": ErrorOut}},
)


@router.get("", response_model=JobPage)
def jobs_page(
    db: Db,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobPage:
    """Jobs ordered by name, with the total count for paging."""
    rows = list_jobs(db, limit=limit, offset=offset)
    return JobPage(items=[JobOut.model_validate(row) for row in rows], total=count_jobs(db))
