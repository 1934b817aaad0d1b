"""Claiming due fires: one transaction creates the runs and advances the jobs.

Each fire becomes exactly one ``runs`` row (unique on job and due instant) in the same
transaction that moves ``jobs.next_fire_at`` forward. Rows are locked with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MySQL, so several schedulers share the work
without waiting on each other. SQLite has no row locks: the engine opens every transaction
with ``BEGIN IMMEDIATE``, which serialises writers across processes, so a second scheduler
sees the first one's committed advance and the same guarantee holds (no lease table needed).

Besides job fires, a scheduler takes stored SCHEDULED runs nobody holds: delayed runs
(``submit_delayed``), manual runs, runs released by a stopping scheduler or by the end of the
run a ``queue_one`` fire waited for, and runs whose claiming scheduler died (lease expired).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Table, and_, bindparam, case, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from mainspring.core.states import FINAL_STATES, OverlapPolicy, RunState
from mainspring.db.models import Job, Run
from mainspring.scheduler.firing import (
    DUE_JOB_COLUMNS,
    LEASE,
    ActiveRun,
    BroadcastPlan,
    DueJob,
    DueRun,
    RunRow,
    due_run_of,
    fire_job,
)

BATCH = 500
_ACTIVE = [RunState.SCHEDULED, RunState.SENT, RunState.RECEIVED, RunState.STARTED, RunState.RETRY]


@dataclass
class Claim:
    runs: list[DueRun] = field(default_factory=list)
    revoke: list[str] = field(default_factory=list)
    full: bool = False  # a batch was full: more may be due


def claim_due_jobs(
    session: Session,
    horizon: datetime,
    now: datetime,
    holder: str,
    limit: int = BATCH,
    live: dict[str, set[str]] | None = None,
) -> Claim:
    """Create the runs of every fire due by ``horizon`` for up to ``limit`` jobs, advance them.
    ``live`` (worker → queues it consumes) plans broadcast jobs' fires."""
    stmt = (
        select(*DUE_JOB_COLUMNS)
        .where(Job.enabled.is_(True), Job.next_fire_at <= horizon)
        .order_by(Job.next_fire_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    _prefer_due_index(session)
    jobs = [DueJob(*row) for row in session.execute(stmt)]
    active = _active_runs(session, [j.id for j in jobs if j.overlap_policy != OverlapPolicy.ALLOW])
    claim = Claim(full=len(jobs) == limit)
    rows: list[RunRow] = []
    advances = []
    for job in jobs:
        plan = _broadcast_plan(session, job.queue, live or {}) if job.broadcast else None
        outcome = fire_job(job, horizon, now, holder, active.get(job.id, []), plan)
        rows += outcome.rows
        advances.append(outcome.advance)
        claim.runs += outcome.publish
        claim.revoke += outcome.revoke
    _store(session, rows, advances)
    if claim.revoke:
        _mark_replaced(session, claim.revoke, now)
    return claim


def _prefer_due_index(session: Session) -> None:
    """Walk ``ix_jobs_due`` in order on PostgreSQL, whatever the statistics say. Right after
    many jobs were created or advanced, the planner underestimates the due rows and picks a
    bitmap scan that sorts every due job for each batch of ``limit``: a 100,000-job burst
    then costs O(N²) (110 ms a batch at 60,000 due, against 6 ms on the index)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_INDEX_ONLY)


_INDEX_ONLY = text(
    "SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)"
)


def _store(session: Session, rows: list[RunRow], advances: list[dict[str, object]]) -> None:
    """Insert the runs and advance the jobs, each as one executemany (batched by the driver)."""
    connection = session.connection()
    if rows:
        connection.execute(insert(_RUNS), rows)
    if advances:
        connection.execute(_ADVANCE, advances)


_RUNS = cast(Table, Run.__table__)
_JOBS = cast(Table, Job.__table__)
_ADVANCE = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("b_id"))
    .values(
        fire_count=bindparam("b_count"),
        last_fire_at=bindparam("b_last"),
        next_fire_at=bindparam("b_next"),
    )
)


def _broadcast_plan(session: Session, queue: str, live: dict[str, set[str]]) -> BroadcastPlan:
    from mainspring.services.tasks import broadcast_plan

    return BroadcastPlan(*broadcast_plan(session, queue, live))


def broadcast_due(session: Session, horizon: datetime) -> bool:
    """Whether a broadcast job fires by ``horizon`` (then the claim needs the live workers)."""
    return (
        session.scalar(
            select(Job.id)
            .where(Job.enabled.is_(True), Job.next_fire_at <= horizon, Job.broadcast.is_(True))
            .limit(1)
        )
        is not None
    )


def release_dead_holders(session: Session, hostname: str, me: str) -> int:
    """Release runs claimed by an earlier scheduler process of this host that is gone (killed),
    so that a restarted scheduler publishes them at once instead of after their lease."""
    import psutil

    prefix = f"{hostname}:"
    holders = session.scalars(
        select(Run.claimed_by)
        .where(Run.state == RunState.SCHEDULED.value, Run.claimed_by.startswith(prefix))
        .distinct()
    ).all()
    dead = []
    for holder in holders:
        pid = (holder or "").removeprefix(prefix).partition(":")[0]
        if holder != me and pid.isdigit() and not psutil.pid_exists(int(pid)):
            dead.append(holder)
    if not dead:
        return 0
    result = session.execute(
        update(Run)
        .where(Run.state == RunState.SCHEDULED.value, Run.claimed_by.in_(dead))
        .values(claimed_by=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _active_runs(session: Session, job_ids: list[int]) -> dict[int, list[ActiveRun]]:
    found: dict[int, list[ActiveRun]] = defaultdict(list)
    if not job_ids:
        return found
    rows = session.execute(
        select(Run.job_id, Run.id, Run.state, Run.waits_for)
        .where(Run.job_id.in_(job_ids), Run.state.in_([s.value for s in _ACTIVE]))
        .order_by(Run.created_at)
    )
    for job_id, run_id, state, waits_for in rows:
        if job_id is not None:
            found[job_id].append(ActiveRun(run_id, RunState(state), waits_for is not None))
    return found


def _mark_replaced(session: Session, run_ids: list[str], now: datetime) -> None:
    session.execute(
        update(Run)
        .where(Run.id.in_(run_ids), Run.state.not_in([s.value for s in FINAL_STATES]))
        .values(state=RunState.REVOKED.value, reason="replaced by a newer fire", updated_at=now)
        .execution_options(synchronize_session=False)
    )


def claim_held_runs(
    session: Session, horizon: datetime, now: datetime, holder: str, limit: int = BATCH
) -> list[DueRun]:
    """Take stored SCHEDULED runs that are due and unheld, or whose holder's lease expired."""
    stmt = (
        select(Run)
        .where(
            Run.state == RunState.SCHEDULED.value,
            or_(
                and_(
                    Run.claimed_by.is_(None),
                    Run.waits_for.is_(None),
                    Run.scheduled_for <= horizon,
                ),
                Run.lease_expires_at < now,
            ),
        )
        .order_by(Run.scheduled_for)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    taken: list[DueRun] = []
    for run in session.scalars(stmt):
        due = run.scheduled_for or now
        run.claimed_by = holder
        run.lease_expires_at = max(due, now) + LEASE
        taken.append(due_run_of(run, now))
    session.flush()
    return taken


def release_waiting(session: Session, now: datetime) -> int:
    """Let ``queue_one`` fires go once the run they wait for has finished."""
    waiting = session.execute(
        select(Run.id, Run.waits_for).where(
            Run.state == RunState.SCHEDULED.value, Run.waits_for.is_not(None)
        )
    ).all()
    if not waiting:
        return 0
    awaited = {w for _, w in waiting}
    finished = set(
        session.scalars(
            select(Run.id).where(
                Run.id.in_(awaited), Run.state.in_([s.value for s in FINAL_STATES])
            )
        )
    ) | (awaited - set(session.scalars(select(Run.id).where(Run.id.in_(awaited)))))
    ready = [run_id for run_id, w in waiting if w in finished]
    if ready:
        session.execute(
            update(Run)
            .where(Run.id.in_(ready), Run.state == RunState.SCHEDULED.value)
            .values(waits_for=None, reason=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return len(ready)


def release_claims(session: Session, run_ids: list[str]) -> None:
    """Give claimed, unpublished runs back (a stopping scheduler), for any scheduler to take."""
    if run_ids:
        session.execute(
            update(Run)
            .where(Run.id.in_(run_ids), Run.state == RunState.SCHEDULED.value)
            .values(claimed_by=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


def not_scheduled(session: Session, run_ids: list[str]) -> set[str]:
    """Which of these claimed runs were cancelled (or otherwise moved on) meanwhile."""
    gone: set[str] = set()
    for i in range(0, len(run_ids), BATCH):
        chunk = run_ids[i : i + BATCH]
        still = set(
            session.scalars(
                select(Run.id).where(Run.id.in_(chunk), Run.state == RunState.SCHEDULED.value)
            )
        )
        gone |= set(chunk) - still
    return gone


def mark_sent(session: Session, sent: list[tuple[DueRun, datetime]]) -> None:
    """Record publish times and lateness in batched statements; move runs to SENT unless the
    recorder already moved them on.

    Lock order is jobs, then runs (each by key), as in a claim and in a job edit (which locks
    its job, then cancels its claimed runs): the other order deadlocked with edits."""
    if not sent:
        return
    last: dict[int, str] = {r.job_id: r.run_id for r, _ in sent if r.job_id is not None}
    if last:
        jobs = cast(Table, Job.__table__)
        session.connection().execute(
            update(jobs)
            .where(jobs.c.id == bindparam("b_id"))
            .values(last_run_id=bindparam("b_run")),
            [{"b_id": job_id, "b_run": last[job_id]} for job_id in sorted(last)],
        )
    table = cast(Table, Run.__table__)
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            sent_at=bindparam("b_at"),
            updated_at=bindparam("b_at"),
            lateness_ms=bindparam("b_late"),
            state=case(
                (table.c.state == RunState.SCHEDULED.value, RunState.SENT.value),
                else_=table.c.state,
            ),
        )
    )
    params = [
        {"b_id": r.run_id, "b_at": at, "b_late": (at - r.due).total_seconds() * 1000}
        for r, at in sorted(sent, key=lambda pair: pair[0].run_id)
    ]
    session.connection().execute(stmt, params)


def count_due(session: Session, horizon: datetime) -> int:
    """How many enabled jobs fall due by ``horizon`` (an index range count)."""
    stmt = (
        select(func.count())
        .select_from(Job)
        .where(Job.enabled.is_(True), Job.next_fire_at <= horizon)
    )
    return int(session.scalar(stmt) or 0)


def next_due_at(session: Session) -> datetime | None:
    """The earliest pending job fire or unheld stored run, to know how long to sleep."""
    job_due = session.scalar(
        select(Job.next_fire_at)
        .where(Job.enabled.is_(True), Job.next_fire_at.is_not(None))
        .order_by(Job.next_fire_at)
        .limit(1)
    )
    run_due = session.scalar(
        select(Run.scheduled_for)
        .where(
            Run.state == RunState.SCHEDULED.value,
            Run.claimed_by.is_(None),
            Run.waits_for.is_(None),
        )
        .order_by(Run.scheduled_for)
        .limit(1)
    )
    candidates = [d for d in (job_due, run_due) if d is not None]
    return min(candidates) if candidates else None
