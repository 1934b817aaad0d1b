"""Retention: old runs and their logs are deleted in small batches.

Why batches: one ``DELETE`` of a month of history would hold locks on the runs table (and
bloat a transaction) while the scheduler and recorder write to it. Each batch is its own short
transaction of at most ``batch_size`` runs, logs first, so readers and writers barely notice.

Rules: a run older than the job's ``retention_days`` (else the policy's ``days``) goes; so do
the finished runs of a job beyond its newest ``retention_max_runs`` (else the policy's
``max_runs_per_job``, unlimited when None). Runs of no job follow the global age rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from mainspring.context import AppContext
from mainspring.core.states import FINAL_STATES
from mainspring.db.models import Job, Run, RunLog


@dataclass(frozen=True)
class RetentionPolicy:
    days: int | None = 30
    max_runs_per_job: int | None = None
    batch_size: int = 500


def purge(ctx: AppContext, policy: RetentionPolicy, now: datetime) -> int:
    """Apply the policy once; return how many runs were deleted."""
    with ctx.session() as session:
        overrides = session.execute(
            select(Job.id, Job.retention_days, Job.retention_max_runs).where(
                (Job.retention_days.is_not(None)) | (Job.retention_max_runs.is_not(None))
            )
        ).all()
    days_override = {job_id: days for job_id, days, _ in overrides if days is not None}
    deleted = 0
    if policy.days is not None:
        cutoff = now - timedelta(days=policy.days)
        stmt = select(Run.id).where(Run.created_at < cutoff)
        if days_override:
            stmt = stmt.where(Run.job_id.is_(None) | Run.job_id.not_in(list(days_override)))
        deleted += _delete_all(ctx, stmt, policy.batch_size)
    for job_id, days in days_override.items():
        stmt = select(Run.id).where(
            Run.job_id == job_id, Run.created_at < now - timedelta(days=days)
        )
        deleted += _delete_all(ctx, stmt, policy.batch_size)
    deleted += _purge_counts(ctx, policy, {job_id: n for job_id, _, n in overrides if n})
    return deleted


def _purge_counts(ctx: AppContext, policy: RetentionPolicy, max_override: dict[int, int]) -> int:
    """Keep each job's newest N runs (finished runs beyond them are deleted)."""
    if policy.max_runs_per_job is None:
        limits = max_override
    else:
        with ctx.session() as session:
            job_ids = list(session.scalars(select(Job.id)))
        limits = {job_id: max_override.get(job_id, policy.max_runs_per_job) for job_id in job_ids}
    deleted = 0
    final = [state.value for state in FINAL_STATES]
    for job_id, keep in limits.items():
        newest = (
            select(Run.id)
            .where(Run.job_id == job_id)
            .order_by(Run.created_at.desc(), Run.id.desc())
            .limit(keep)
        )
        with ctx.session() as session:
            kept = set(session.scalars(newest))
        stmt = select(Run.id).where(
            Run.job_id == job_id, Run.state.in_(final), Run.id.not_in(kept or {""})
        )
        deleted += _delete_all(ctx, stmt, policy.batch_size)
    return deleted


def _delete_all(ctx: AppContext, ids: Select[tuple[str]] | Select[str], batch_size: int) -> int:
    """Delete the selected runs batch by batch, each batch in its own transaction."""
    deleted = 0
    while True:
        with ctx.session() as session:
            batch = [str(run_id) for run_id in session.scalars(ids.limit(batch_size))]
            if batch:
                _delete_runs(session, batch)
        deleted += len(batch)
        if len(batch) < batch_size:
            return deleted


def _delete_runs(session: Session, run_ids: list[str]) -> None:
    session.execute(delete(RunLog).where(RunLog.run_id.in_(run_ids)))
    session.execute(delete(Run).where(Run.id.in_(run_ids)))
