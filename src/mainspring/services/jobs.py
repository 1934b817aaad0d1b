"""Creating, changing and listing jobs. Every check happens before anything is stored.

Each change wakes the schedulers when it commits and cancels the runs a scheduler already
claimed for the job (state SCHEDULED), so the change applies to the very next fire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mainspring.core.policies import Bounds, WindowSpec, next_bounded, parse_policy
from mainspring.core.states import MisfirePolicy, OverlapPolicy, RunState, TriggerSource
from mainspring.core.triggers import (
    Trigger,
    parse_instant,
    parse_trigger,
    trigger_kind,
    trigger_to_spec,
    zone,
)
from mainspring.db.models import Job, Run
from mainspring.errors import ConflictError, NotFoundError, ValidationError
from mainspring.scheduler.wakeup import request_wakeup
from mainspring.services.clock import utcnow

NAME_RE = re.compile(r"^[\w.\-: ]{1,200}$")
QUEUE_RE = re.compile(r"^[A-Za-z0-9_.\-:@]{1,200}$")
TASK_RE = re.compile(r"^[A-Za-z_][\w.\-:]{0,254}$")
MAX_GRACE_S = 7 * 86_400


@dataclass
class JobSpec:
    """What a user gives to create or replace a job; validated before anything is stored."""

    name: str
    task: str
    trigger: dict[str, Any]
    timezone: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    description: str = ""
    enabled: bool = True
    tags: list[str] = field(default_factory=list)
    start_at: datetime | str | None = None
    end_at: datetime | str | None = None
    max_runs: int | None = None
    jitter_ms: int = 0
    misfire_policy: str = MisfirePolicy.RUN_ONCE.value
    misfire_grace_s: int = 60
    overlap_policy: str = OverlapPolicy.ALLOW.value
    data_window: dict[str, Any] | None = None
    target_worker: str | None = None  # run on this worker only (its host queue)
    broadcast: bool = False  # one run per live worker of ``queue``
    options: dict[str, Any] = field(default_factory=dict)  # retry, limits, expires, priority


def validate_queue(queue: str, field_name: str = "queue") -> str:
    if not isinstance(queue, str) or not QUEUE_RE.match(queue):
        raise ValidationError(
            field_name, f"{queue!r} is not a valid queue name (letters, digits, _ . - : @)"
        )
    return queue


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationError(name, f"must be a whole number from {low} to {high}")
    return value


def _validate(spec: JobSpec) -> tuple[Trigger, Bounds]:
    """Check every field, in the order a form shows them; return the parsed trigger and bounds."""
    if (
        not isinstance(spec.name, str)
        or not NAME_RE.match(spec.name)
        or spec.name != spec.name.strip()
    ):
        raise ValidationError(
            "name", "1-200 characters: letters, digits, spaces and _ . - : (no edge spaces)"
        )
    if not isinstance(spec.task, str) or not TASK_RE.match(spec.task):
        raise ValidationError("task", f"{spec.task!r} is not a valid task name")
    if not isinstance(spec.args, list):
        raise ValidationError("args", "must be a JSON array")
    if not isinstance(spec.kwargs, dict):
        raise ValidationError("kwargs", "must be a JSON object")
    validate_queue(spec.queue)
    trigger = parse_trigger(spec.trigger)
    zone(spec.timezone)
    bounds = Bounds(
        start_at=parse_instant(spec.start_at, "start_at") if spec.start_at is not None else None,
        end_at=parse_instant(spec.end_at, "end_at") if spec.end_at is not None else None,
        max_runs=spec.max_runs,
    )
    if spec.max_runs is not None:
        _whole(spec.max_runs, "max_runs", 1, 2**31 - 1)
    bounds.check()
    _whole(spec.jitter_ms, "jitter_ms", 0, 3_600_000)
    _whole(spec.misfire_grace_s, "misfire_grace_s", 0, MAX_GRACE_S)
    parse_policy(spec.misfire_policy, MisfirePolicy, "misfire_policy")
    parse_policy(spec.overlap_policy, OverlapPolicy, "overlap_policy")
    WindowSpec.parse(spec.data_window)
    _validate_routing(spec)
    return trigger, bounds


def _validate_routing(spec: JobSpec) -> dict[str, Any]:
    """Check where the job runs and its execution options; return the options to store."""
    from pydantic import ValidationError as PydanticValidationError

    from mainspring.services.tasks import TaskOptions
    from mainspring.worker.routing import check_hostname
    from mainspring.worker.schemas import describe

    if spec.target_worker is not None:
        try:
            check_hostname(spec.target_worker)
        except (TypeError, ValueError) as exc:
            raise ValidationError("target_worker", str(exc)) from None
        if spec.broadcast:
            raise ValidationError("broadcast", "a broadcast job cannot target one worker")
    if not isinstance(spec.broadcast, bool):
        raise ValidationError("broadcast", "must be true or false")
    if not isinstance(spec.options, dict):
        raise ValidationError("options", "must be a JSON object")
    for key in ("queue", "worker"):
        if key in spec.options:
            raise ValidationError(f"options.{key}", f"use the job's own {key!r} field")
    try:
        options = TaskOptions.model_validate(spec.options)
    except PydanticValidationError as exc:
        raise ValidationError("options", describe(exc)) from None
    return options.model_dump(exclude_none=True, mode="json")


def job_bounds(job: Job) -> Bounds:
    return Bounds(start_at=job.start_at, end_at=job.end_at, max_runs=job.max_runs)


def compute_next_fire(job: Job, after: datetime) -> datetime | None:
    """The job's next fire strictly after ``after``, within its bounds."""
    return next_bounded(
        parse_trigger(job.trigger),
        after,
        zone(job.timezone),
        job.name,
        job_bounds(job),
        job.fire_count,
    )


def _apply(job: Job, spec: JobSpec, trigger: Trigger, bounds: Bounds) -> None:
    window = WindowSpec.parse(spec.data_window)
    job.name = spec.name
    job.description = spec.description
    job.enabled = spec.enabled
    job.task = spec.task
    job.args = list(spec.args)
    job.kwargs = dict(spec.kwargs)
    job.queue = spec.queue
    job.trigger_kind = trigger_kind(trigger).value
    job.trigger = trigger_to_spec(trigger)
    job.timezone = spec.timezone
    job.start_at, job.end_at, job.max_runs = bounds.start_at, bounds.end_at, bounds.max_runs
    job.jitter_ms = spec.jitter_ms
    job.misfire_policy = MisfirePolicy(spec.misfire_policy).value
    job.misfire_grace_s = spec.misfire_grace_s
    job.overlap_policy = OverlapPolicy(spec.overlap_policy).value
    job.data_window = window.to_json() if spec.data_window is not None else None
    job.tags = list(spec.tags)
    job.target_worker = spec.target_worker
    job.broadcast = spec.broadcast
    job.options = _validate_routing(spec)


def create_job(session: Session, spec: JobSpec, actor: str | None = None) -> Job:
    """Validate and store a new job with its first fire time computed."""
    trigger, bounds = _validate(spec)
    if session.scalar(select(Job.id).where(Job.name == spec.name)) is not None:
        raise ConflictError(f"a job named {spec.name!r} already exists")
    now = utcnow()
    job = Job(
        broadcast=False, options={}, fire_count=0, version=1, created_by=actor,
        created_at=now, updated_at=now,
    )  # fmt: skip
    _apply(job, spec, trigger, bounds)
    job.next_fire_at = compute_next_fire(job, now) if spec.enabled else None
    session.add(job)
    session.flush()
    request_wakeup(session)
    return job


def update_job(session: Session, job: Job, spec: JobSpec) -> Job:
    """Replace a job's definition; a fire already claimed is cancelled, the next one follows
    the new definition."""
    trigger, bounds = _validate(spec)
    if spec.name != job.name and session.scalar(select(Job.id).where(Job.name == spec.name)):
        raise ConflictError(f"a job named {spec.name!r} already exists")
    now = utcnow()
    cancelled = cancel_claimed(session, job.id, RunState.SKIPPED, "job edited", now)
    _apply(job, spec, trigger, bounds)
    after = max(now, cancelled) if cancelled else now
    job.next_fire_at = compute_next_fire(job, after) if job.enabled else None
    job.version += 1
    job.updated_at = now
    request_wakeup(session)
    return job


def upsert_job(session: Session, spec: JobSpec, actor: str | None = None) -> tuple[Job, bool]:
    """Create the job named ``spec.name``, or replace its definition; True when created."""
    existing = session.scalar(select(Job).where(Job.name == spec.name).with_for_update())
    if existing is None:
        return create_job(session, spec, actor), True
    return update_job(session, existing, spec), False


def cancel_claimed(
    session: Session, job_id: int, state: RunState, reason: str, now: datetime
) -> datetime | None:
    """Cancel the job's scheduled fires not yet published; return the latest one's due time."""
    cond = (
        Run.job_id == job_id,
        Run.state == RunState.SCHEDULED.value,
        Run.trigger == TriggerSource.SCHEDULE.value,
    )
    latest = session.scalar(select(func.max(Run.scheduled_for)).where(*cond))
    if latest is not None:
        session.execute(
            update(Run)
            .where(*cond)
            .values(state=state.value, reason=reason, finished_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return latest


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job with id {job_id}")
    return job


def get_job_by_name(session: Session, name: str) -> Job:
    job = session.scalar(select(Job).where(Job.name == name))
    if job is None:
        raise NotFoundError(f"no job named {name!r}")
    return job


def list_jobs(session: Session, limit: int = 100, offset: int = 0) -> list[Job]:
    stmt = select(Job).order_by(Job.name).limit(limit).offset(offset)
    return list(session.scalars(stmt))


def count_jobs(session: Session) -> int:
    return int(session.scalar(select(func.count(Job.id))) or 0)


def set_enabled(session: Session, job: Job, enabled: bool, now: datetime | None = None) -> Job:
    """Pause (cancelling a claimed fire) or resume. A resumed job continues from the moment it
    was paused, so the fires missed meanwhile go through its misfire policy."""
    now = now or utcnow()
    if enabled == job.enabled:
        return job
    if enabled:
        job.next_fire_at = compute_next_fire(job, min(job.updated_at, now))
    else:
        cancel_claimed(session, job.id, RunState.SKIPPED, "job paused", now)
        job.next_fire_at = None
    job.enabled = enabled
    job.version += 1
    job.updated_at = now
    request_wakeup(session)
    return job


def delete_job(session: Session, job: Job) -> None:
    """Delete the job, revoking its claimed fires; its run history is kept."""
    cancel_claimed(session, job.id, RunState.REVOKED, "job deleted", utcnow())
    request_wakeup(session)
    session.delete(job)
