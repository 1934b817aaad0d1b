"""Submitting tasks now (to a queue, one worker, or every live worker) and revoking runs.

Each submission stores its run (state SENT, trigger ``api``) in its own transaction *before*
publishing, so the recorder always finds the row the events refer to. Delayed tasks
(countdown/ETA) are not published here: they are runs inserted as SCHEDULED for the scheduler.

Idempotency: a submission with an ``idempotency_key`` stores the key on its run (the parent,
for a broadcast); ``runs.idempotency_key`` is unique, so of concurrent identical submissions
exactly one insert commits, and every other one (the early look-up, or the insert failing
with an ``IntegrityError``) answers with that first run instead of creating a second.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mainspring.context import AppContext
from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Run, Worker
from mainspring.errors import ConflictError, ValidationError
from mainspring.services.clock import utcnow
from mainspring.services.delayed import submit_delayed

# Moved to ``services.publishing`` and ``services.workers``; re-exported for their callers.
from mainspring.services.publishing import TaskOptions as TaskOptions
from mainspring.services.publishing import message_options as message_options
from mainspring.services.publishing import publish_run
from mainspring.services.publishing import revoke_run as revoke_run
from mainspring.services.workers import broadcast_plan as broadcast_plan
from mainspring.services.workers import live_queues as live_queues
from mainspring.worker.routing import check_hostname, check_queue_name, host_queue, route_for
from mainspring.worker.schemas import BUILTIN_PARAMS, describe

logger = logging.getLogger("mainspring.services.tasks")

TASK_NAME = re.compile(r"^[A-Za-z_][\w.\-:]{0,254}$")
IDEMPOTENCY_KEY = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


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


_KNOWN_TTL_S = 5.0
_known_tasks: dict[int, tuple[float, frozenset[str]]] = {}  # engine id → (read at, names)


def _check_registered(ctx: AppContext, task: str) -> None:
    """Refuse a task no known worker has registered (when workers have reported theirs).
    The names are cached a few seconds per database; a name missing from the cache is looked
    up afresh before it is refused, so a newly registered task is accepted at once."""
    key = id(ctx.engine)
    read_at, known = _known_tasks.get(key, (0.0, frozenset()))
    if task in known and time.monotonic() - read_at < _KNOWN_TTL_S:
        return
    with ctx.session() as session:
        lists = session.scalars(select(Worker.registered_tasks)).all()
    known = frozenset(name for names in lists for name in (names or []))
    _known_tasks[key] = (time.monotonic(), known)
    if known and task not in known:
        raise ValidationError("task", f"no worker has registered task {task!r}")


@dataclass(frozen=True)
class Submission:
    """What one submission asks for; an ``eta`` in the future makes it a delayed run."""

    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: TaskOptions = field(default_factory=TaskOptions)
    eta: datetime | None = None
    broadcast: bool = False
    idempotency_key: str | None = None
    trigger: TriggerSource = TriggerSource.API
    submitted_by: str | None = None  # kept in the run's options, for the console
    job_id: int | None = None
    reason: str | None = None  # e.g. "rerun of <id>"


@dataclass
class Submitted:
    """The run (a broadcast's parent) and its children; ``created`` is False when an earlier
    submission with the same idempotency key is returned instead."""

    run: Run
    children: list[Run] = field(default_factory=list)
    created: bool = True


def submit(ctx: AppContext, app: Any, sub: Submission, inspect_timeout: float = 1.0) -> Submitted:
    """Submit now, at ``eta`` (stored for the scheduler) or to every live worker of a queue."""
    _check_combination(sub)
    if sub.idempotency_key is not None:
        first = find_by_key(ctx, sub)
        if first is not None:
            return first
    if sub.broadcast:
        return _submit_broadcast(ctx, app, sub, inspect_timeout)
    if sub.eta is not None and sub.eta > utcnow():
        return _submit_later(ctx, sub, sub.eta)
    queue = check_submission(ctx, sub.task, sub.args, sub.kwargs, sub.options)
    run = _run_for(sub, queue, utcnow())
    first = _insert_once(ctx, sub, lambda session: session.add(run))
    if first is not None:
        return first
    publish_run(ctx, app, run, sub.options)
    return Submitted(run)


def is_plain(sub: Submission) -> bool:
    """Whether ``submit`` would store one run and publish it now (no idempotency key, not a
    broadcast, not due later): the submissions a web process may store in batches."""
    return (
        sub.idempotency_key is None
        and not sub.broadcast
        and (sub.eta is None or sub.eta <= utcnow())
    )


def plain_run(ctx: AppContext, sub: Submission) -> Run:
    """The checked, not yet stored run of a plain submission (see ``is_plain``): the caller
    stores it (in a transaction that must commit before it answers) and then publishes it."""
    _check_combination(sub)
    queue = check_submission(ctx, sub.task, sub.args, sub.kwargs, sub.options)
    return _run_for(sub, queue, utcnow())


def submit_task(
    ctx: AppContext,
    app: Any,
    task: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    options: TaskOptions | None = None,
    trigger: TriggerSource = TriggerSource.API,
    idempotency_key: str | None = None,
) -> Run:
    """Store a run for the task and publish it now; its id is the Celery task id."""
    sub = Submission(
        task,
        list(args or []),
        dict(kwargs or {}),
        options or TaskOptions(),
        trigger=trigger,
        idempotency_key=idempotency_key,
    )
    return submit(ctx, app, sub).run


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
    sub = Submission(
        task, list(args or []), dict(kwargs or {}), options or TaskOptions(), broadcast=True
    )
    done = submit(ctx, app, sub, inspect_timeout)
    return Broadcast(parent=done.run, children=done.children)


def find_by_key(ctx: AppContext, sub: Submission) -> Submitted | None:
    """The earlier submission with ``sub``'s idempotency key, if any; a key used for another
    task is a conflict rather than a silent answer about a different run."""
    with ctx.session() as session:
        run = session.scalar(select(Run).where(Run.idempotency_key == sub.idempotency_key))
        if run is None:
            return None
        if run.task != sub.task:
            raise ConflictError(
                f"idempotency_key was already used for run {run.id} of task {run.task}; "
                "use a new key for a different task"
            )
        children = []
        if (run.options or {}).get("broadcast"):
            stmt = select(Run).where(Run.parent_id == run.id).order_by(Run.queue, Run.id)
            children = list(session.scalars(stmt))
    return Submitted(run, children, created=False)


def _insert_once(
    ctx: AppContext, sub: Submission, write: Callable[[Session], object]
) -> Submitted | None:
    """Run ``write`` in a transaction of its own. When the insert loses a race on the
    idempotency key, return the submission that won it instead."""
    try:
        with ctx.session() as session:
            write(session)
    except IntegrityError:
        first = find_by_key(ctx, sub) if sub.idempotency_key is not None else None
        if first is None:
            raise
        return first
    return None


def _check_combination(sub: Submission) -> None:
    key = sub.idempotency_key
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise ValidationError("idempotency_key", "use 1-200 printable characters")
    if sub.options.queue and sub.options.worker:
        raise ValidationError("options.worker", "give either a queue or a worker, not both")
    if sub.broadcast and sub.options.worker:
        raise ValidationError("options.worker", "a broadcast goes to every worker of a queue")
    if sub.broadcast and sub.eta is not None:
        raise ValidationError("options.eta", "a broadcast is sent now; it takes no eta/countdown")


def _submit_later(ctx: AppContext, sub: Submission, eta: datetime) -> Submitted:
    """A SCHEDULED run that a scheduler publishes at ``eta`` with the same options."""
    queue = check_submission(ctx, sub.task, sub.args, sub.kwargs, sub.options)
    options = {**sub.options.model_dump(exclude_none=True, mode="json"), **_meta(sub)}
    stored: list[Run] = []

    def write(session: Session) -> None:
        run = submit_delayed(
            session,
            sub.task,
            eta,
            sub.args,
            sub.kwargs,
            queue=queue,
            source=sub.trigger,
            options=options,
            idempotency_key=sub.idempotency_key,
        )
        stored.append(run)

    first = _insert_once(ctx, sub, write)
    return first if first is not None else Submitted(stored[0])


def _submit_broadcast(
    ctx: AppContext, app: Any, sub: Submission, inspect_timeout: float
) -> Submitted:
    options = sub.options
    queue = check_submission(ctx, sub.task, sub.args, sub.kwargs, options)
    live = live_queues(app, inspect_timeout)
    now = utcnow()
    parent = _run_for(sub, queue, now)
    children: list[Run] = []

    def write(session: Session) -> None:
        targets, missing = broadcast_plan(session, queue, live)
        parent.options = {**parent.options, "broadcast": True, "targets": len(targets)}
        session.add(parent)
        for host in targets:
            child = _new_run(
                sub.task, sub.args, sub.kwargs, options, host_queue(host), sub.trigger, now
            )
            child.parent_id = child.root_id = parent.id
            children.append(child)
        children.extend(skipped_child(parent, host, reason, now) for host, reason in missing)
        session.add_all(children)

    first = _insert_once(ctx, sub, write)
    if first is not None:
        return first
    for child in children:
        if child.state == RunState.SENT.value:
            publish_run(ctx, app, child, options, parent_id=parent.id)
    return Submitted(parent, children)


def _meta(sub: Submission) -> dict[str, Any]:
    return {"submitted_by": sub.submitted_by} if sub.submitted_by else {}


def _run_for(sub: Submission, queue: str, now: datetime) -> Run:
    run = _new_run(sub.task, sub.args, sub.kwargs, sub.options, queue, sub.trigger, now)
    run.options = {**run.options, **_meta(sub)}
    run.idempotency_key = sub.idempotency_key
    run.job_id = sub.job_id
    run.reason = sub.reason
    return run


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
