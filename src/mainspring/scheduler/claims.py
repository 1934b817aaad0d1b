"""Claiming due fires: one transaction creates the runs and advances the jobs.

Each fire becomes exactly one ``runs`` row (unique on job and due instant) in the same
transaction that moves ``jobs.next_fire_at`` forward. Rows are locked with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MySQL, so several schedulers share the work;
SQLite serialises writers (``BEGIN IMMEDIATE``), which gives the same guarantee.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mainspring.core.states import RunState, TriggerSource
from mainspring.core.triggers import next_fire, parse_trigger, zone
from mainspring.db.models import Job, Run

LEASE = timedelta(seconds=30)


@dataclass(frozen=True)
class DueRun:
    """Everything needed to publish a claimed run without touching the database again."""

    run_id: str
    job_id: int | None
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    due: datetime
    window_start: datetime | None
    window_end: datetime | None


def claim_due_jobs(
    session: Session, horizon: datetime, now: datetime, holder: str, limit: int = 500
) -> list[DueRun]:
    """Create a SCHEDULED run for every job due by ``horizon`` and advance those jobs.

    Fires missed by more than the job's grace period are coalesced into one (``run_once``).
    """
    stmt = (
        select(Job)
        .where(Job.enabled.is_(True), Job.next_fire_at <= horizon)
        .order_by(Job.next_fire_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed: list[DueRun] = []
    for job in session.scalars(stmt):
        due = job.next_fire_at
        assert due is not None
        run = _new_run(job, due, now, holder)
        session.add(run)
        claimed.append(_due_run(run, job))
        _advance(job, due, now)
    return claimed


def _new_run(job: Job, due: datetime, now: datetime, holder: str) -> Run:
    return Run(
        id=str(uuid.uuid4()),
        job_id=job.id,
        task=job.task,
        args=job.args,
        kwargs=job.kwargs,
        options={},
        queue=job.queue,
        state=RunState.SCHEDULED.value,
        attempt=0,
        trigger=TriggerSource.SCHEDULE.value,
        scheduled_for=due,
        window_start=job.last_fire_at,
        window_end=due,
        created_at=now,
        updated_at=now,
        claimed_by=holder,
        lease_expires_at=due + LEASE,
        log_bytes=0,
        log_truncated=False,
    )


def _due_run(run: Run, job: Job) -> DueRun:
    return DueRun(
        run_id=run.id,
        job_id=job.id,
        task=job.task,
        args=list(job.args),
        kwargs=dict(job.kwargs),
        queue=job.queue,
        due=run.scheduled_for or run.created_at,
        window_start=run.window_start,
        window_end=run.window_end,
    )


def _advance(job: Job, due: datetime, now: datetime) -> None:
    trigger = parse_trigger(job.trigger)
    grace = timedelta(seconds=job.misfire_grace_s)
    after = now if now - due > grace else due  # coalesce a backlog into this one fire
    job.last_fire_at = due
    job.fire_count += 1
    job.next_fire_at = next_fire(trigger, after, zone(job.timezone), hash_id=job.name)


def reclaim_orphans(session: Session, now: datetime, holder: str, limit: int = 500) -> list[DueRun]:
    """Take over SCHEDULED runs whose claiming scheduler died before publishing them."""
    stmt = (
        select(Run)
        .where(Run.state == RunState.SCHEDULED.value, Run.lease_expires_at < now)
        .order_by(Run.scheduled_for)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    taken: list[DueRun] = []
    for run in session.scalars(stmt):
        result = session.execute(
            update(Run)
            .where(Run.id == run.id, Run.lease_expires_at == run.lease_expires_at)
            .values(claimed_by=holder, lease_expires_at=now + LEASE)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            taken.append(
                DueRun(
                    run_id=run.id,
                    job_id=run.job_id,
                    task=run.task,
                    args=list(run.args or []),
                    kwargs=dict(run.kwargs or {}),
                    queue=run.queue or "default",
                    due=run.scheduled_for or now,
                    window_start=run.window_start,
                    window_end=run.window_end,
                )
            )
    return taken


def mark_sent(session: Session, sent: list[tuple[DueRun, datetime]]) -> None:
    """Record publish times and lateness; move runs to SENT unless the recorder moved them on."""
    for due_run, sent_at in sent:
        lateness = (sent_at - due_run.due).total_seconds() * 1000
        session.execute(
            update(Run)
            .where(Run.id == due_run.run_id)
            .values(sent_at=sent_at, lateness_ms=lateness, updated_at=sent_at)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(Run)
            .where(Run.id == due_run.run_id, Run.state == RunState.SCHEDULED.value)
            .values(state=RunState.SENT.value)
            .execution_options(synchronize_session=False)
        )
        if due_run.job_id is not None:
            session.execute(
                update(Job)
                .where(Job.id == due_run.job_id)
                .values(last_run_id=due_run.run_id)
                .execution_options(synchronize_session=False)
            )


def next_due_at(session: Session) -> datetime | None:
    """The earliest pending fire, to know how long the scheduler may sleep."""
    return session.scalar(
        select(Job.next_fire_at)
        .where(Job.enabled.is_(True), Job.next_fire_at.is_not(None))
        .order_by(Job.next_fire_at)
        .limit(1)
    )
