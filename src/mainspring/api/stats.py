"""``/api/v1/stats``: runs by state over time (overall or per job), per job, and scheduler
lateness. Ranges default to the last day (hour buckets) or 30 days (day buckets); bucket
boundaries are local hours or days in ``timezone`` (default: the configured one)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from mainspring.api.auth import current_user
from mainspring.api.deps import Db, get_settings
from mainspring.api.schemas import API_ERRORS
from mainspring.api.task_schemas import JobStats, JobStatsItem, Lateness, RunStats, StateBucket
from mainspring.services import stats as stats_service
from mainspring.services.stats import Bucket
from mainspring.settings import Settings

router = APIRouter(
    prefix="/stats",
    tags=["stats"],
    dependencies=[Depends(current_user)],
    responses=API_ERRORS,
)
JobId = Annotated[int | None, Query(ge=1, le=2**63 - 1)]
Zone = Annotated[str | None, Query(max_length=64, description="IANA name, e.g. Asia/Shanghai")]


@router.get("/runs", response_model=RunStats)
def stats_runs(
    db: Db,
    settings: Annotated[Settings, Depends(get_settings)],
    bucket: Bucket = "hour",
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    job_id: JobId = None,
    timezone: Zone = None,
) -> RunStats:
    """Runs created per hour or day, by state (every bucket of the range, empty ones too)."""
    rng = stats_service.time_range(since, until, bucket)
    tz_name = timezone or settings.timezone
    totals, buckets = stats_service.runs_by_state(db, rng, bucket, tz_name, job_id)
    return RunStats(
        bucket=bucket,
        timezone=tz_name,
        since=rng.since,
        until=rng.until,
        job_id=job_id,
        total=totals.total,
        counts=totals.counts,
        buckets=[StateBucket(start=s, total=c.total, counts=c.counts) for s, c in buckets],
    )


@router.get("/jobs", response_model=JobStats)
def stats_jobs(
    db: Db,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobStats:
    """Runs per job by state over the range (default: the last 30 days), most runs first."""
    rng = stats_service.time_range(since, until)
    rows = stats_service.runs_by_job(db, rng, limit)
    items = [
        JobStatsItem(job_id=job_id, name=name, total=c.total, counts=c.counts)
        for job_id, name, c in rows
    ]
    return JobStats(since=rng.since, until=rng.until, items=items)


@router.get("/lateness", response_model=Lateness)
def stats_lateness(
    db: Db,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    job_id: JobId = None,
) -> Lateness:
    """How late scheduled runs were published: p50, p95 and max of ``lateness_ms``."""
    rng = stats_service.time_range(since, until)
    summary = stats_service.lateness(db, rng, job_id)
    return Lateness(
        since=rng.since,
        until=rng.until,
        job_id=job_id,
        count=summary.count,
        p50_ms=summary.p50_ms,
        p95_ms=summary.p95_ms,
        max_ms=summary.max_ms,
    )
