"""What one due job turns into: runs to publish, fires recorded as skipped, runs to revoke.

Pure over a loaded job row (no queries): the claim transaction loads the jobs and their
active runs, calls ``fire_job`` for each, and stores what it returns. Jobs and runs are
plain rows here, not ORM objects: a burst claims thousands per second, and ORM instances
cost more to build and flush than the rest of the claim put together.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any

from mainspring.core.policies import (
    MISFIRE_SCAN,
    Bounds,
    WindowSpec,
    data_window,
    jitter_ms,
    next_bounded,
    plan_misfire,
    window_kwargs,
)
from mainspring.core.states import MisfirePolicy, OverlapPolicy, RunState, TriggerSource
from mainspring.core.triggers import parse_trigger, zone
from mainspring.db.models import Job, Run
from mainspring.worker.routing import host_queue

LEASE = timedelta(seconds=30)
MAX_FIRES_PER_CLAIM = 1_000  # per job and claim: a 10 ms interval fills a 300 ms lead with 30


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
    publish_at: datetime | None = None  # due plus the job's jitter
    options: dict[str, Any] = field(default_factory=dict)  # TaskOptions fields (retry, …)
    parent_id: str | None = None
    send: bool = True  # False for a broadcast's parent: only its children are messages

    @property
    def at(self) -> datetime:
        return self.publish_at or self.due

    def __lt__(self, other: DueRun) -> bool:
        return (self.at, self.run_id) < (other.at, other.run_id)


@dataclass(frozen=True, slots=True)
class DueJob:
    """The columns of a due job that firing reads (``DUE_JOB_COLUMNS`` selects them)."""

    id: int
    name: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    queue: str
    target_worker: str | None
    broadcast: bool
    trigger: dict[str, Any]
    timezone: str
    start_at: datetime | None
    end_at: datetime | None
    max_runs: int | None
    jitter_ms: int
    misfire_policy: str
    misfire_grace_s: int
    overlap_policy: str
    data_window: dict[str, Any] | None
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    fire_count: int


DUE_JOB_COLUMNS = [getattr(Job, f.name) for f in fields(DueJob)]
RunRow = dict[str, Any]  # every column of ``runs``: rows go to one executemany INSERT
_RUN_COLUMNS = [c.key for c in Run.__table__.columns]


@dataclass
class Outcome:
    rows: list[RunRow] = field(default_factory=list)
    publish: list[DueRun] = field(default_factory=list)
    revoke: list[str] = field(default_factory=list)
    advance: dict[str, Any] = field(default_factory=dict)  # the job's new scheduler state


@dataclass(frozen=True)
class ActiveRun:
    """A run of the job not finished yet, for the overlap policy."""

    id: str
    state: RunState
    waiting: bool  # held by queue_one, not published yet


def fire_job(
    job: DueJob,
    horizon: datetime,
    now: datetime,
    holder: str,
    active: list[ActiveRun],
    copies: BroadcastPlan | None = None,
) -> Outcome:
    """Every fire of ``job`` due by ``horizon``: late ones go through the misfire policy, then
    the overlap policy; ``job`` is advanced past them. A broadcast job's fire is a parent run
    with one child per worker of ``copies``."""
    trigger, tz = parse_trigger(job.trigger), zone(job.timezone)
    bounds = _bounds(job)
    due = job.next_fire_at
    assert due is not None
    fires: list[datetime] = []
    skips: list[tuple[datetime, str]] = []
    grace = timedelta(seconds=job.misfire_grace_s)
    if now - due > grace:
        missed, nxt = [due], next_bounded(trigger, due, tz, job.name, bounds, job.fire_count)
        while nxt is not None and now - nxt > grace and len(missed) < MISFIRE_SCAN:
            missed.append(nxt)
            nxt = next_bounded(trigger, nxt, tz, job.name, bounds, job.fire_count)
        more = nxt is not None and now - nxt > grace
        plan = plan_misfire(MisfirePolicy(job.misfire_policy), missed, more, None)
        fires = plan.run
        note = " (and more, not listed)" if more else ""
        skips = [(f, f"misfire: missed by over {job.misfire_grace_s} s{note}") for f in plan.skip]
        cursor = now - grace if more else missed[-1]
    else:
        fires, cursor = [due], due
    # Fires on time up to the horizon (a short interval fills the lead with several).
    nxt = next_bounded(trigger, cursor, tz, job.name, bounds, job.fire_count + len(fires))
    while nxt is not None and nxt <= horizon and len(fires) < MAX_FIRES_PER_CLAIM:
        fires.append(nxt)
        nxt = next_bounded(trigger, nxt, tz, job.name, bounds, job.fire_count + len(fires))
    out = Outcome()
    fires, held_for, overlap_skips = _apply_overlap(job, fires, active, out)
    skips += overlap_skips
    window = WindowSpec.parse(job.data_window)
    last = job.last_fire_at
    for fire in fires:
        start, end = data_window(window, fire, last, trigger, tz, job.name)
        kwargs = window_kwargs(job.kwargs, start, end, fire, tz) if window.as_kwargs else None
        run = _run(job, fire, now, holder, start, kwargs, waits_for=held_for)
        out.rows.append(run)
        if held_for is None:
            jitter = jitter_ms(f"{job.id}:{fire}", job.jitter_ms)
            out.publish.append(_due_run(run, job.id, jitter))
            if job.broadcast:
                _broadcast(run, copies or BroadcastPlan([], []), now, out)
        last = fire
    for fire, reason in skips:
        out.rows.append(_skipped(job, fire, now, holder, reason))
    out.advance = _advance(job, fires, last, nxt)
    return out


@dataclass(frozen=True)
class BroadcastPlan:
    """Workers that get a copy of a broadcast fire, and known ones skipped with a reason."""

    targets: list[str]
    missing: list[tuple[str, str]]


def _broadcast(parent: RunRow, plan: BroadcastPlan, now: datetime, out: Outcome) -> None:
    """Children of a broadcast fire as ``submit_broadcast`` makes them: one per live worker of
    the queue, on its host queue; known absent workers get a SKIPPED child. Children carry no
    ``job_id`` (runs are unique on job and due instant): ``parent_id`` ties them to the fire,
    whose own run is not a message (it is marked SENT with its children)."""
    from mainspring.services.tasks import skipped_child

    options = parent["options"]
    parent["options"] = {**options, "broadcast": True, "targets": len(plan.targets)}
    template = replace(out.publish[-1], send=True, job_id=None, parent_id=parent["id"])
    out.publish[-1] = replace(out.publish[-1], send=False)
    for host in plan.targets:
        child = _child(parent, host_queue(host), options)
        out.rows.append(child)
        out.publish.append(replace(template, run_id=child["id"], queue=host_queue(host)))
    for host, reason in plan.missing:
        skipped = skipped_child(_orm_run(parent), host, reason, now)
        skipped.trigger, skipped.sent_at = parent["trigger"], None
        out.rows.append(_row_of(skipped))


_NOT_COPIED = ("id", "job_id", "queue", "options", "parent_id", "root_id")


def _child(parent: RunRow, queue: str, options: dict[str, Any]) -> RunRow:
    child = {k: (None if k in _NOT_COPIED else v) for k, v in parent.items()}
    child.update(id=str(uuid.uuid4()), queue=queue, options=dict(options))
    child["parent_id"] = child["root_id"] = parent["id"]
    return child


def _orm_run(row: RunRow) -> Run:
    return Run(**{k: v for k, v in row.items() if v is not None})


def _row_of(run: Run) -> RunRow:
    return {key: getattr(run, key) for key in _RUN_COLUMNS}


def _apply_overlap(
    job: DueJob, fires: list[datetime], active: list[ActiveRun], out: Outcome
) -> tuple[list[datetime], str | None, list[tuple[datetime, str]]]:
    """Keep, hold or skip fires per the overlap policy; fill ``out.revoke`` for ``replace``."""
    policy = OverlapPolicy(job.overlap_policy)
    if policy is OverlapPolicy.ALLOW or not fires:
        return fires, None, []
    extra = [(f, "overlap: fires at once, only the first runs") for f in fires[1:]]
    fires = fires[:1]
    if not active:
        return fires, None, extra
    if policy is OverlapPolicy.REPLACE:
        out.revoke.extend(a.id for a in active)
        return fires, None, extra
    if policy is OverlapPolicy.QUEUE_ONE:
        queued = [a for a in active if a.waiting or a.state in (RunState.SCHEDULED, RunState.SENT)]
        if not queued:
            return fires, active[0].id, extra  # held until the running one finishes
        return [], None, [(fires[0], f"overlap: run {queued[0].id} already queued"), *extra]
    return [], None, [(fires[0], f"overlap: run {active[0].id} still active"), *extra]


def _advance(
    job: DueJob,
    fires: list[datetime],
    last: datetime | None,
    nxt: datetime | None,
) -> dict[str, Any]:
    fire_count = job.fire_count + len(fires)
    if job.max_runs is not None and fire_count >= job.max_runs:
        nxt = None
    return {"b_id": job.id, "b_count": fire_count, "b_last": last, "b_next": nxt}


def _bounds(job: DueJob) -> Bounds:
    return Bounds(start_at=job.start_at, end_at=job.end_at, max_runs=job.max_runs)


_EMPTY_RUN: RunRow = dict.fromkeys(_RUN_COLUMNS)


def _run(
    job: DueJob,
    due: datetime,
    now: datetime,
    holder: str,
    window_start: datetime | None,
    kwargs: dict[str, Any] | None,
    waits_for: str | None,
) -> RunRow:
    row = dict(_EMPTY_RUN)
    row.update(
        id=str(uuid.uuid4()),
        job_id=job.id,
        task=job.task,
        args=job.args,
        kwargs=kwargs if kwargs is not None else job.kwargs,
        options=dict(job.options or {}),
        queue=host_queue(job.target_worker) if job.target_worker else job.queue,
        state=RunState.SCHEDULED.value,
        attempt=0,
        trigger=TriggerSource.SCHEDULE.value,
        scheduled_for=due,
        window_start=window_start,
        window_end=due,
        created_at=now,
        updated_at=now,
        claimed_by=None if waits_for else holder,
        lease_expires_at=None if waits_for else due + timedelta(milliseconds=job.jitter_ms) + LEASE,
        waits_for=waits_for,
        reason=f"waiting for run {waits_for}" if waits_for else None,
        log_bytes=0,
        log_truncated=False,
    )
    return row


def _skipped(job: DueJob, due: datetime, now: datetime, holder: str, reason: str) -> RunRow:
    row = _run(job, due, now, holder, None, None, None)
    row.update(
        state=RunState.SKIPPED.value,
        reason=reason[:255],
        finished_at=now,
        window_end=None,
        lease_expires_at=None,
    )
    return row


def _due_run(run: RunRow, job_id: int, jitter: int) -> DueRun:
    due = run["scheduled_for"]
    return DueRun(
        run_id=run["id"],
        job_id=job_id,
        task=run["task"],
        args=list(run["args"] or []),
        kwargs=dict(run["kwargs"] or {}),
        queue=run["queue"] or "default",
        due=due,
        window_start=run["window_start"],
        window_end=run["window_end"],
        publish_at=due + timedelta(milliseconds=jitter),
        options=dict(run["options"] or {}),
    )


def due_run_of(run: Run, now: datetime) -> DueRun:
    """A stored SCHEDULED run (delayed, released or taken over) ready to publish."""
    due = run.scheduled_for or now
    return DueRun(
        run_id=run.id,
        job_id=run.job_id,
        task=run.task,
        args=list(run.args or []),
        kwargs=dict(run.kwargs or {}),
        queue=run.queue or "default",
        due=due,
        window_start=run.window_start,
        window_end=run.window_end,
        publish_at=due,
        options=dict(run.options or {}),
        parent_id=run.parent_id,
        send=not (run.options or {}).get("broadcast"),
    )
