"""``Mainspring``: create-or-update, delete, pause, resume, run now and list jobs, working
directly against the database through the services (the same calls the HTTP API makes).

Every change commits in its own transaction and wakes the schedulers, so it applies to the
next fire within milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from mainspring.context import AppContext
from mainspring.db.models import Job
from mainspring.errors import ValidationError
from mainspring.scheduler.wakeup import attach_broker_wakeup
from mainspring.services import delayed
from mainspring.services import jobs as job_service
from mainspring.services.audit import Actor
from mainspring.settings import Settings, load_settings

PYTHON_API = Actor("python-api")  # who the audit log names for changes made here

_SPEC_FIELDS = {f.name for f in fields(job_service.JobSpec)} - {"name", "task", "trigger"}
_TRIGGER_ARGS = ("cron", "every_ms", "at", "manual")


@dataclass(frozen=True)
class JobInfo:
    """A job as application code sees it."""

    id: int
    name: str
    task: str
    enabled: bool
    trigger: dict[str, Any]
    timezone: str
    queue: str
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_state: str | None

    @classmethod
    def of(cls, job: Job) -> JobInfo:
        return cls(
            id=job.id,
            name=job.name,
            task=job.task,
            enabled=job.enabled,
            trigger=dict(job.trigger),
            timezone=job.timezone,
            queue=job.queue,
            next_fire_at=job.next_fire_at,
            last_fire_at=job.last_fire_at,
            last_state=job.last_state,
        )


def trigger_from(
    cron: str | None = None,
    every_ms: int | None = None,
    at: datetime | str | None = None,
    manual: bool = False,
    trigger: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Exactly one of cron, every_ms, at, manual or a full trigger spec."""
    given = [x is not None for x in (cron, every_ms, at, trigger)] + [manual]
    if sum(given) != 1:
        raise ValidationError("trigger", "give exactly one of cron, every_ms, at, manual, trigger")
    if trigger is not None:
        return trigger
    if cron is not None:
        return {"kind": "cron", "expr": cron}
    if every_ms is not None:
        return {"kind": "interval", "every_ms": every_ms}
    if at is not None:
        return {"kind": "once", "at": at.isoformat() if isinstance(at, datetime) else at}
    return {"kind": "manual"}


class Mainspring:
    """A local client bound to one database (and broker, for wake-ups)."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        attach_broker_wakeup(ctx.sessions, ctx.settings.broker_url)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Mainspring:
        return cls(AppContext.open(settings or load_settings()))

    def close(self) -> None:
        self._ctx.close()

    def __enter__(self) -> Mainspring:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def upsert_job(
        self,
        name: str,
        task: str = "",
        *,
        cron: str | None = None,
        every_ms: int | None = None,
        at: datetime | str | None = None,
        manual: bool = False,
        trigger: dict[str, Any] | None = None,
        **options: Any,
    ) -> JobInfo:
        """Create the job ``name`` or replace its definition. ``options`` are the other job
        fields (args, kwargs, queue, timezone, policies, bounds, jitter_ms, data_window...),
        or ``workflow={...}`` instead of ``task`` to run a workflow (built with
        ``mainspring.workflows.builder``); an unknown one is a ValidationError naming it."""
        unknown = sorted(set(options) - _SPEC_FIELDS)
        if unknown:
            raise ValidationError(
                unknown[0], f"unknown job field; known: {', '.join(sorted(_SPEC_FIELDS))}"
            )
        options.setdefault("timezone", self._ctx.settings.timezone)
        spec = job_service.JobSpec(
            name=name, task=task, trigger=trigger_from(cron, every_ms, at, manual, trigger),
            **options,
        )  # fmt: skip
        with self._ctx.session() as session:
            job, _created = job_service.upsert_job(
                session, spec, actor="python-api", audit=PYTHON_API
            )
            return JobInfo.of(job)

    def delete_job(self, name: str) -> None:
        with self._ctx.session() as session:
            job_service.delete_job(
                session, job_service.get_job_by_name(session, name), audit=PYTHON_API
            )

    def pause(self, name: str) -> JobInfo:
        return self._set_enabled(name, False)

    def resume(self, name: str) -> JobInfo:
        return self._set_enabled(name, True)

    def _set_enabled(self, name: str, enabled: bool) -> JobInfo:
        with self._ctx.session() as session:
            job = job_service.get_job_by_name(session, name)
            return JobInfo.of(job_service.set_enabled(session, job, enabled, audit=PYTHON_API))

    def run_now(
        self, name: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
    ) -> str:
        """Fire the job once now (its schedule is unchanged); returns the run id."""
        with self._ctx.session() as session:
            job = job_service.get_job_by_name(session, name)
            return delayed.run_now(session, job, args=args, kwargs=kwargs).id

    def list_jobs(self, limit: int = 1000, offset: int = 0) -> list[JobInfo]:
        with self._ctx.session() as session:
            return [JobInfo.of(j) for j in job_service.list_jobs(session, limit, offset)]
