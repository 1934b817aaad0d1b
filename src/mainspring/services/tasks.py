"""Submitting tasks now (to a queue, one worker, or every live worker) and revoking runs.

Each submission stores its run (state SENT, trigger ``api``) in its own transaction *before*
publishing, so the recorder always finds the row the events refer to. Delayed tasks
(countdown/ETA) are not published here: they are runs inserted as SCHEDULED for the scheduler.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import RunState, TriggerSource, WorkerStatus
from mainspring.db.models import Run, Worker
from mainspring.errors import ServiceUnavailableError, ValidationError
from mainspring.services.clock import utcnow
from mainspring.worker.guard import run_store
from mainspring.worker.routing import check_hostname, check_queue_name, host_queue, route_for
from mainspring.worker.schemas import BUILTIN_PARAMS, describe
from mainspring.worker.task import RETRY_HEADER, RetryPolicy

logger = logging.getLogger("mainspring.services.tasks")

TASK_NAME = re.compile(r"^[A-Za-z_][\w.\-:]{0,254}$")


class TaskOptions(BaseModel):
    """Where and how a submitted task runs (the API's ``options`` object)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str | None = Field(default=None, description="default: the task's route")
    worker: str | None = Field(default=None, description="run on this worker only")
    retry: RetryPolicy | None = None
    soft_time_limit: float | None = Field(default=None, gt=0, description="seconds (prefork)")
    time_limit: float | None = Field(default=None, gt=0, description="seconds (prefork)")
    expires: float | None = Field(default=None, gt=0, description="do not start after N s")
    priority: int | None = Field(default=None, ge=0, le=9, description="0 lowest … 9 highest")


@dataclass
class Broadcast:
    parent: Run
    children: list[Run] = field(default_factory=list)

    @property
    def skipped(self) -> list[Run]:
        return [c for c in self.children if c.state == RunState.SKIPPED.value]


def check_submission(
    ctx: AppContext, task: str, args: list[Any], kwargs: dict[str, Any], options: TaskOptions
) -> str:
    """Validate everything a submission names; return the queue it goes to."""
    if not TASK_NAME.fullmatch(task):
        raise ValidationError("task", f"{task!r} is not a task name")
    model = BUILTIN_PARAMS.get(task)
    if model is not None:
        if args:
            raise ValidationError("args", f"{task} takes keyword parameters (kwargs) only")
        try:
            model.model_validate(kwargs)
        except PydanticValidationError as exc:
            raise ValidationError("kwargs", describe(exc)) from None
    else:
        _check_registered(ctx, task)
    try:
        if options.worker:
            return host_queue(check_hostname(options.worker))
        settings = ctx.settings
        queue = options.queue or route_for(task, settings.task_routes, settings.default_queue)
        return check_queue_name(queue)
    except ValueError as exc:
        field = "options.worker" if options.worker else "options.queue"
        raise ValidationError(field, str(exc)) from None


def _check_registered(ctx: AppContext, task: str) -> None:
    """Refuse a task no known worker has registered (when workers have reported theirs)."""
    with ctx.session() as session:
        lists = session.scalars(select(Worker.registered_tasks)).all()
    known = {name for names in lists for name in (names or [])}
    if known and task not in known:
        raise ValidationError("task", f"no worker has registered task {task!r}")


def submit_task(
    ctx: AppContext,
    app: Any,
    task: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    options: TaskOptions | None = None,
    trigger: TriggerSource = TriggerSource.API,
) -> Run:
    """Store a run for the task and publish it now; its id is the Celery task id."""
    args, kwargs, options = args or [], kwargs or {}, options or TaskOptions()
    queue = check_submission(ctx, task, args, kwargs, options)
    run = _new_run(task, args, kwargs, options, queue, trigger, utcnow())
    with ctx.session() as session:
        session.add(run)
    _publish(ctx, app, run, options)
    return run


def submit_broadcast(
    ctx: AppContext,
    app: Any,
    task: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    options: TaskOptions | None = None,
    inspect_timeout: float = 1.0,
) -> Broadcast:
    """One run per live worker consuming the queue, each on that worker's host queue, under
    one parent run; workers known to consume it but not answering get a SKIPPED child."""
    args, kwargs, options = args or [], kwargs or {}, options or TaskOptions()
    if options.worker:
        raise ValidationError("options.worker", "a broadcast goes to every worker of a queue")
    queue = check_submission(ctx, task, args, kwargs, options)
    live = live_queues(app, inspect_timeout)
    now = utcnow()
    parent = _new_run(task, args, kwargs, options, queue, TriggerSource.API, now)
    result = Broadcast(parent=parent)
    with ctx.session() as session:
        targets, missing = broadcast_plan(session, queue, live)
        parent.options = {**parent.options, "broadcast": True, "targets": len(targets)}
        session.add(parent)
        for host in targets:
            child = _new_run(task, args, kwargs, options, host_queue(host), TriggerSource.API, now)
            child.parent_id = child.root_id = parent.id
            result.children.append(child)
        for host, reason in missing:
            result.children.append(skipped_child(parent, host, reason, now))
        session.add_all(result.children)
    for child in result.children:
        if child.state == RunState.SENT.value:
            _publish(ctx, app, child, options, parent_id=parent.id)
    return result


def live_queues(app: Any, timeout: float = 1.0) -> dict[str, set[str]]:
    """Queues each worker that answers within ``timeout`` is consuming right now."""
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return {host: {str(q.get("name")) for q in queues or []} for host, queues in replies.items()}


def broadcast_plan(
    session: Any, queue: str, live: dict[str, set[str]]
) -> tuple[list[str], list[tuple[str, str]]]:
    """Who gets a copy of a broadcast on ``queue``: the live workers consuming it (sorted), and
    ``(host, reason)`` for known workers of the queue that are offline or did not answer."""
    targets = sorted(host for host, queues in live.items() if queue in queues)
    return targets, _absent_workers(session, queue, set(live))


def _absent_workers(session: Any, queue: str, live: set[str]) -> list[tuple[str, str]]:
    rows = session.scalars(select(Worker).where(Worker.hostname.not_in(live or {""}))).all()
    absent = []
    for worker in rows:
        if queue not in (worker.queues or []):
            continue
        seen = _fmt(worker.last_heartbeat_at)
        if worker.status == WorkerStatus.OFFLINE.value:
            absent.append((worker.hostname, f"worker offline (last heartbeat {seen})"))
        else:
            absent.append((worker.hostname, f"worker did not answer (last heartbeat {seen})"))
    return sorted(absent)


def _fmt(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "never"


def skipped_child(parent: Run, host: str, reason: str, now: datetime) -> Run:
    child = _new_run(
        parent.task,
        parent.args or [],
        parent.kwargs or {},
        None,
        host_queue(host),
        parent.trigger,
        now,
    )
    child.parent_id = child.root_id = parent.id
    child.state = RunState.SKIPPED.value
    child.worker = host
    child.exception_type = "WorkerOffline"
    child.exception_message = reason
    child.finished_at = now
    return child


def _new_run(
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    options: TaskOptions | None,
    queue: str,
    trigger: str,
    now: datetime,
) -> Run:
    return Run(
        id=str(uuid.uuid4()),
        task=task,
        args=args,
        kwargs=kwargs,
        options=options.model_dump(exclude_none=True, mode="json") if options else {},
        queue=queue,
        state=RunState.SENT.value,
        attempt=0,
        trigger=str(trigger),
        created_at=now,
        sent_at=now,
        updated_at=now,
        log_bytes=0,
        log_truncated=False,
    )


def message_options(
    options: TaskOptions, parent_id: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """How a run's options travel (shared with the scheduler): the retry policy as the
    ``mainspring_retry`` header; limits, expiry (seconds), priority and parentage as
    ``send_task`` options. Returns ``(headers, options)``, unset ones left out."""
    headers: dict[str, Any] = {}
    if options.retry is not None and options.retry.retries:
        headers[RETRY_HEADER] = options.retry.model_dump(mode="json")
    extra = {
        k: v
        for k, v in {
            "soft_time_limit": options.soft_time_limit,
            "time_limit": options.time_limit,
            "expires": options.expires,
            "priority": options.priority,
            "parent_id": parent_id,
            "root_id": parent_id,
        }.items()
        if v is not None
    }
    return headers, extra


def _publish(
    ctx: AppContext, app: Any, run: Run, options: TaskOptions, parent_id: str | None = None
) -> None:
    """Hand the run to the broker; a broker failure marks the stored run FAILURE and raises."""
    headers, extra = message_options(options, parent_id)
    try:
        app.send_task(
            run.task,
            args=run.args,
            kwargs=run.kwargs,
            task_id=run.id,
            queue=run.queue,
            headers=headers,
            **extra,
        )
    except Exception as exc:
        with ctx.session() as session:
            stored = session.get(Run, run.id)
            if stored is not None and stored.state == RunState.SENT.value:
                stored.state = RunState.FAILURE.value
                stored.exception_type = type(exc).__name__
                stored.exception_message = f"could not publish: {exc}"
        raise ServiceUnavailableError(f"cannot publish run {run.id} to the broker: {exc}") from exc


def revoke_run(app: Any, run_id: str, terminate: bool = False, signal: str = "SIGTERM") -> None:
    """Cancel a run. The revocation is stored first (so a worker offline now still discards
    the run when it gets it), then broadcast; ``terminate`` also stops a running one (a shell
    task's whole process group)."""
    run_store(app).revoke(run_id, terminate)
    app.control.revoke(run_id, terminate=terminate, signal=signal)
