"""Runs the scheduler holds until a due instant: delayed tasks (ETA/countdown) and run-now.

They are stored as SCHEDULED with no holder; any scheduler claims them when due and publishes
them, so the broker never sees ETA messages (which duplicate with Redis visibility timeouts and
pile up in worker memory). Until then ``cancel_run`` withdraws them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from mainspring.core.states import RunState, TriggerSource
from mainspring.core.triggers import parse_instant
from mainspring.db.models import Job, Run
from mainspring.errors import ConflictError, NotFoundError, ValidationError
from mainspring.scheduler.wakeup import request_wakeup
from mainspring.services.clock import utcnow
from mainspring.services.jobs import TASK_RE, validate_queue


def submit_delayed(
    session: Session,
    task: str,
    eta: datetime | str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    queue: str = "default",
    source: TriggerSource = TriggerSource.API,
    job: Job | None = None,
    run_id: str | None = None,
    options: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Run:
    """Store a run to publish at ``eta`` (aware); returns it in state SCHEDULED. ``options``
    are its execution options (``TaskOptions`` fields, as the scheduler's publisher reads
    them); a duplicate ``idempotency_key`` fails the flush with an ``IntegrityError``."""
    if not isinstance(task, str) or not TASK_RE.match(task):
        raise ValidationError("task", f"{task!r} is not a valid task name")
    if args is not None and not isinstance(args, list):
        raise ValidationError("args", "must be a JSON array")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ValidationError("kwargs", "must be a JSON object")
    validate_queue(queue)
    due = parse_instant(eta, "eta")
    now = utcnow()
    run = Run(
        id=run_id or str(uuid.uuid4()),
        job_id=job.id if job else None,
        task=task,
        args=list(args or []),
        kwargs=dict(kwargs or {}),
        options=dict(options or {}),
        queue=queue,
        state=RunState.SCHEDULED.value,
        idempotency_key=idempotency_key,
        attempt=0,
        trigger=source.value,
        scheduled_for=due,
        created_at=now,
        updated_at=now,
        log_bytes=0,
        log_truncated=False,
    )
    session.add(run)
    session.flush()
    request_wakeup(session)
    return run


def run_now(
    session: Session,
    job: Job,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> Run:
    """Fire ``job`` once now, outside its schedule (its next fire does not move); ``args`` and
    ``kwargs`` replace the job's own when given."""
    return submit_delayed(
        session,
        job.task,
        utcnow(),
        args=job.args if args is None else args,
        kwargs=job.kwargs if kwargs is None else kwargs,
        queue=job.queue,
        source=TriggerSource.MANUAL,
        job=job,
    )


def cancel_run(session: Session, run_id: str, reason: str = "cancelled") -> Run:
    """Withdraw a run not yet published (compare-and-set on SCHEDULED)."""
    now = utcnow()
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.state == RunState.SCHEDULED.value)
        .values(state=RunState.REVOKED.value, reason=reason, finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"no run with id {run_id!r}")
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ConflictError(f"run {run_id} is already {run.state}; only SCHEDULED runs cancel")
    session.refresh(run)
    request_wakeup(session)
    return run
