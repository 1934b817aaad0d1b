"""Creating, changing and listing jobs. Every check happens before anything is stored."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mainspring.core.triggers import (
    next_fire,
    parse_trigger,
    trigger_kind,
    trigger_to_spec,
    zone,
)
from mainspring.db.models import Job
from mainspring.errors import ConflictError, NotFoundError, ValidationError
from mainspring.services.clock import utcnow

NAME_RE = re.compile(r"^[\w.\-: ]{1,200}$")
QUEUE_RE = re.compile(r"^[A-Za-z0-9_.\-:@]{1,200}$")
TASK_RE = re.compile(r"^[A-Za-z_][\w.\-:]{0,254}$")


@dataclass
class JobSpec:
    """What a user gives to create a job; validated by ``create_job``."""

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


def validate_queue(queue: str, field_name: str = "queue") -> str:
    if not QUEUE_RE.match(queue):
        raise ValidationError(
            field_name, f"{queue!r} is not a valid queue name (letters, digits, _ . - : @)"
        )
    return queue


def _validate(spec: JobSpec) -> None:
    if not NAME_RE.match(spec.name) or spec.name != spec.name.strip():
        raise ValidationError(
            "name", "1-200 characters: letters, digits, spaces and _ . - : (no edge spaces)"
        )
    if not TASK_RE.match(spec.task):
        raise ValidationError("task", f"{spec.task!r} is not a valid task name")
    if not isinstance(spec.args, list):
        raise ValidationError("args", "must be a JSON array")
    if not isinstance(spec.kwargs, dict):
        raise ValidationError("kwargs", "must be a JSON object")
    validate_queue(spec.queue)


def create_job(session: Session, spec: JobSpec, actor: str | None = None) -> Job:
    """Validate and store a new job with its first fire time computed."""
    _validate(spec)
    trigger = parse_trigger(spec.trigger)
    tz = zone(spec.timezone)
    if session.scalar(select(Job.id).where(Job.name == spec.name)) is not None:
        raise ConflictError(f"a job named {spec.name!r} already exists")
    now = utcnow()
    job = Job(
        name=spec.name,
        description=spec.description,
        enabled=spec.enabled,
        task=spec.task,
        args=spec.args,
        kwargs=spec.kwargs,
        queue=spec.queue,
        broadcast=False,
        trigger_kind=trigger_kind(trigger).value,
        trigger=trigger_to_spec(trigger),
        timezone=spec.timezone,
        jitter_ms=0,
        misfire_policy="run_once",
        misfire_grace_s=60,
        overlap_policy="allow",
        options={},
        tags=spec.tags,
        fire_count=0,
        version=1,
        created_by=actor,
        created_at=now,
        updated_at=now,
        next_fire_at=next_fire(trigger, now, tz, hash_id=spec.name) if spec.enabled else None,
    )
    session.add(job)
    session.flush()
    return job


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
    """Pause or resume; a resumed job fires next at its next time after now."""
    now = now or utcnow()
    job.enabled = enabled
    job.next_fire_at = (
        next_fire(parse_trigger(job.trigger), now, zone(job.timezone), hash_id=job.name)
        if enabled
        else None
    )
    job.version += 1
    job.updated_at = now
    return job


def delete_job(session: Session, job: Job) -> None:
    session.delete(job)
