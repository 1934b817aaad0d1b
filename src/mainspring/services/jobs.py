"""Creating, changing and listing jobs. Every check happens before anything is stored.

Each change wakes the schedulers when it commits and cancels the runs a scheduler already
claimed for the job (state SCHEDULED), so the change applies to the very next fire.

Changes made with an ``audit`` actor are written to the audit log in the same transaction,
as a diff of ``definition`` before and after. Writers that must not lose a concurrent change
load the job with ``job_queries.lock_job`` first (row lock plus version check).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
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
from mainspring.errors import ConflictError, ValidationError
from mainspring.scheduler.wakeup import request_wakeup
from mainspring.services import job_versions
from mainspring.services.audit import Actor, diff, record_as
from mainspring.services.clock import utcnow

# The read side lives in ``job_queries``; re-exported here for the existing callers.
from mainspring.services.job_queries import JobFilter as JobFilter
from mainspring.services.job_queries import StaleVersionError as StaleVersionError
from mainspring.services.job_queries import count_jobs as count_jobs
from mainspring.services.job_queries import get_job as get_job
from mainspring.services.job_queries import get_job_by_name as get_job_by_name
from mainspring.services.job_queries import list_jobs as list_jobs
from mainspring.services.job_queries import lock_job as lock_job

NAME_RE = re.compile(r"^[\w.\-: ]{1,200}$")
QUEUE_RE = re.compile(r"^[A-Za-z0-9_.\-:@]{1,200}$")
TASK_RE = re.compile(r"^[A-Za-z_][\w.\-:]{0,254}$")
TAG_RE = re.compile(r"^[^\x00-\x1f\x7f,]{1,64}$")
MAX_TAGS = 32
MAX_DESCRIPTION = 10_000
MAX_GRACE_S = 7 * 86_400
NULLABLE = frozenset({"start_at", "end_at", "max_runs", "data_window", "target_worker"})


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
    # A workflow definition (M7): the job then runs the built-in ``mainspring.workflow`` with
    # ``kwargs={"definition": workflow}``, which is how it is stored (so ``definition()``
    # never has this key); ``task`` may be left empty.
    workflow: dict[str, Any] | None = None


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


def _validate(spec: JobSpec, session: Session | None = None) -> tuple[Trigger, Bounds]:
    """Check every field, in the order a form shows them; return the parsed trigger and bounds.
    With a ``session``, a workflow's steps must name tasks that workers registered."""
    if (
        not isinstance(spec.name, str)
        or not NAME_RE.match(spec.name)
        or spec.name != spec.name.strip()
    ):
        raise ValidationError(
            "name", "1-200 characters: letters, digits, spaces and _ . - : (no edge spaces)"
        )
    if spec.task == "" and spec.workflow is None:
        raise ValidationError("task", "give the task to run, or a workflow")
    if spec.workflow is None and (not isinstance(spec.task, str) or not TASK_RE.match(spec.task)):
        raise ValidationError("task", f"{spec.task!r} is not a valid task name")
    _validate_text(spec)
    if not isinstance(spec.enabled, bool):
        raise ValidationError("enabled", "must be true or false")
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
    _validate_workflow(spec, session)
    return trigger, bounds


def _validate_workflow(spec: JobSpec, session: Session | None) -> None:
    """A workflow job's definition is checked when it is saved, not when its run starts:
    given as ``workflow``, or stored form (task ``mainspring.workflow`` with
    ``kwargs.definition``); the job then has no other arguments."""
    from mainspring.workflows.definition import WORKFLOW_TASK, parse_workflow

    definition: Any
    if spec.workflow is not None:
        if spec.task not in ("", WORKFLOW_TASK):
            raise ValidationError("task", f"leave task out (or give {WORKFLOW_TASK}) with workflow")
        if spec.kwargs and spec.kwargs != {"definition": spec.workflow}:
            raise ValidationError("kwargs", "a workflow job takes no kwargs; give them to steps")
        definition, where = spec.workflow, "workflow"
    elif spec.task == WORKFLOW_TASK:
        extra = sorted(set(spec.kwargs) - {"definition"})
        if extra:
            message = "a workflow job's kwargs hold only its definition"
            raise ValidationError(f"kwargs.{extra[0]}", message)
        definition, where = spec.kwargs.get("definition"), "kwargs.definition"
    else:
        return
    if spec.args:
        raise ValidationError("args", "a workflow job takes no args; give them to its steps")
    from mainspring.services.workflows import allowed_tasks

    try:
        parse_workflow(definition, allowed_tasks(session) if session is not None else None)
    except ValidationError as exc:
        field = where if exc.field == "definition" else f"{where}.{exc.field}"
        raise ValidationError(field, exc.message) from None


def _target(spec: JobSpec) -> tuple[str, list[Any], dict[str, Any]]:
    """What the job runs, as stored: task, args, kwargs (a workflow in the kwargs)."""
    from mainspring.workflows.definition import WORKFLOW_TASK

    if spec.workflow is not None:
        return WORKFLOW_TASK, [], {"definition": copy.deepcopy(spec.workflow)}
    return spec.task, list(spec.args), dict(spec.kwargs)


def _validate_text(spec: JobSpec) -> None:
    """Description and tags: free text, but bounded and without NUL (PostgreSQL refuses it)."""
    text = spec.description
    if not isinstance(text, str) or len(text) > MAX_DESCRIPTION or "\x00" in text:
        raise ValidationError("description", f"text of at most {MAX_DESCRIPTION} chars, no NUL")
    if not isinstance(spec.tags, list) or len(spec.tags) > MAX_TAGS:
        raise ValidationError("tags", f"must be a list of at most {MAX_TAGS} tags")
    for tag in spec.tags:
        if not isinstance(tag, str) or not TAG_RE.match(tag):
            raise ValidationError("tags", f"{tag!r}: 1-64 characters, no commas or control chars")


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
    job.task, job.args, job.kwargs = _target(spec)
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
    job.tags = list(dict.fromkeys(spec.tags))
    job.target_worker = spec.target_worker
    job.broadcast = spec.broadcast
    job.options = _validate_routing(spec)


def definition(job: Job) -> dict[str, Any]:
    """The job's definition (the ``JobSpec`` fields) as JSON values: what audit diffs show
    and what a partial update starts from."""
    values = {f.name: getattr(job, f.name) for f in fields(JobSpec) if f.name != "workflow"}
    for key in ("start_at", "end_at"):
        values[key] = values[key].isoformat() if values[key] is not None else None
    return copy.deepcopy(values)  # detached from the ORM row's mutable JSON values


def _snapshot(job: Job) -> dict[str, Any]:
    return {**definition(job), "version": job.version}


def _audit(
    session: Session, actor: Actor | None, action: str, job: Job, before: dict[str, Any]
) -> None:
    job_versions.record(session, job, action, before, actor)  # the job's history (M9)
    if actor is not None:
        after = _snapshot(job) if action != "delete" else {}
        record_as(session, actor, action, "job", job.id, diff(before, after))


def _store(session: Session, job: Job, name: str) -> None:
    """Write now, in a savepoint: a name taken by a concurrent transaction is then a
    ConflictError here rather than an IntegrityError at commit."""
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        raise ConflictError(f"a job named {name!r} already exists") from None


def create_job(
    session: Session, spec: JobSpec, actor: str | None = None, *, audit: Actor | None = None
) -> Job:
    """Validate and store a new job with its first fire time computed; a name already taken
    (even by a concurrent creation) is a ConflictError."""
    trigger, bounds = _validate(spec, session)
    if session.scalar(select(Job.id).where(Job.name == spec.name)) is not None:
        raise ConflictError(f"a job named {spec.name!r} already exists")
    now = utcnow()
    job = Job(
        broadcast=False, options={}, fire_count=0, version=1,
        created_by=actor or (audit.name if audit else None), created_at=now, updated_at=now,
    )  # fmt: skip
    _apply(job, spec, trigger, bounds)
    job.next_fire_at = compute_next_fire(job, now) if spec.enabled else None
    _store(session, job, spec.name)
    request_wakeup(session)
    _audit(session, audit, "create", job, {})
    return job


def update_job(session: Session, job: Job, spec: JobSpec, *, audit: Actor | None = None) -> Job:
    """Replace a job's definition; a fire already claimed is cancelled, the next one follows
    the new definition. Load ``job`` with ``lock_job`` when edits may race."""
    trigger, bounds = _validate(spec, session)
    if spec.name != job.name and session.scalar(select(Job.id).where(Job.name == spec.name)):
        raise ConflictError(f"a job named {spec.name!r} already exists")
    before = _snapshot(job)
    now = utcnow()
    cancelled = cancel_claimed(session, job.id, RunState.SKIPPED, "job edited", now)
    _apply(job, spec, trigger, bounds)
    after = max(now, cancelled) if cancelled else now
    job.next_fire_at = compute_next_fire(job, after) if job.enabled else None
    job.version += 1
    job.updated_at = now
    _store(session, job, spec.name)
    request_wakeup(session)
    _audit(session, audit, "update", job, before)
    return job


def patch_job(
    session: Session, job: Job, changes: dict[str, Any], *, audit: Actor | None = None
) -> Job:
    """Change only the given ``JobSpec`` fields, keep the others; ``None`` clears a nullable
    field (bounds, data window, target worker) and is refused for the rest."""
    known = {f.name for f in fields(JobSpec)}
    for key, value in changes.items():
        if key not in known:
            raise ValidationError(key, "is not a job field")
        if value is None and key not in NULLABLE:
            raise ValidationError(key, "cannot be null; leave it out to keep it")
    if changes.get("workflow") is not None:  # the job now runs this workflow
        changes = {"task": "", "args": [], "kwargs": {}, **changes}
    return update_job(session, job, replace(JobSpec(**definition(job)), **changes), audit=audit)


def upsert_job(
    session: Session, spec: JobSpec, actor: str | None = None, *, audit: Actor | None = None
) -> tuple[Job, bool]:
    """Create the job named ``spec.name``, or replace its definition; True when created.
    Two concurrent upserts of a new name end as one creation and one update."""
    existing = session.scalar(select(Job).where(Job.name == spec.name).with_for_update())
    if existing is None:
        try:
            return create_job(session, spec, actor, audit=audit), True
        except ConflictError:
            existing = session.scalar(select(Job).where(Job.name == spec.name).with_for_update())
            if existing is None:
                raise
    return update_job(session, existing, spec, audit=audit), False


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


def set_enabled(
    session: Session,
    job: Job,
    enabled: bool,
    now: datetime | None = None,
    *,
    audit: Actor | None = None,
) -> Job:
    """Pause (cancelling a claimed fire) or resume. A resumed job continues from the moment it
    was paused, so the fires missed meanwhile go through its misfire policy."""
    now = now or utcnow()
    if enabled == job.enabled:
        return job
    before = _snapshot(job)
    if enabled:
        job.next_fire_at = compute_next_fire(job, min(job.updated_at, now))
    else:
        cancel_claimed(session, job.id, RunState.SKIPPED, "job paused", now)
        job.next_fire_at = None
    job.enabled = enabled
    job.version += 1
    job.updated_at = now
    request_wakeup(session)
    _audit(session, audit, "resume" if enabled else "pause", job, before)
    return job


def run_job_now(
    session: Session,
    job: Job,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    audit: Actor | None = None,
) -> Run:
    """Fire ``job`` once now with its own options and worker, its schedule unchanged;
    ``args``/``kwargs`` replace the job's when given."""
    from mainspring.services.delayed import run_now
    from mainspring.worker.routing import host_queue

    if job.broadcast:
        raise ConflictError(
            f"job {job.name!r} is a broadcast job; run now is not available for broadcast "
            "jobs yet: submit the task with broadcast through /api/v1/tasks instead"
        )
    run = run_now(session, job, args=args, kwargs=kwargs)
    run.options = dict(job.options or {})
    if job.target_worker:
        run.queue = host_queue(job.target_worker)
    if audit is not None:
        after = {"run_id": run.id, "args": run.args, "kwargs": run.kwargs}
        record_as(session, audit, "run", "job", job.id, diff({}, after))
    return run


def delete_job(session: Session, job: Job, *, audit: Actor | None = None) -> None:
    """Delete the job, revoking its claimed fires; its run history is kept."""
    before = _snapshot(job)
    cancel_claimed(session, job.id, RunState.REVOKED, "job deleted", utcnow())
    request_wakeup(session)
    _audit(session, audit, "delete", job, before)
    session.delete(job)
