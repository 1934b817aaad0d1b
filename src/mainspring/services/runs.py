"""Run history (filters and keyset pagination that stay fast at millions of rows) and what
an operator does to one run: revoke, terminate, re-run.

Revoking stores the revocation before broadcasting it (``services.tasks.revoke_run``), so a
run is never started even by a worker that is offline now; a run still held by a scheduler
(SCHEDULED) is withdrawn in the database at once. Past that point the recorder is the one
writer of a run's state: the run becomes REVOKED when a worker discards or stops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from mainspring.context import AppContext
from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Run, RunLog
from mainspring.errors import ConflictError, NotFoundError, ValidationError
from mainspring.recorder.masking import MASK, is_secret_key
from mainspring.services.audit import Actor, record_as
from mainspring.services.delayed import cancel_run
from mainspring.services.tasks import Submission, Submitted, TaskOptions, revoke_run, submit
from mainspring.worker.routing import HOST_QUEUE_PREFIX
from mainspring.workflows.definition import WORKFLOW_TASK


@dataclass(frozen=True)
class RunFilter:
    job_id: int | None = None
    task: str | None = None
    state: str | None = None
    worker: str | None = None
    queue: str | None = None
    trigger: str | None = None
    parent_id: str | None = None
    created_after: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive


@dataclass(frozen=True)
class RunCursor:
    """Position after the last run of a page: newest first by (created_at, id)."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        return f"{self.created_at.isoformat()}|{self.id}"

    @classmethod
    def decode(cls, raw: str) -> RunCursor:
        try:
            at, run_id = raw.split("|", 1)
            created_at = datetime.fromisoformat(at)
        except ValueError:
            created_at = None
        if created_at is None or created_at.tzinfo is None:
            raise ValidationError("cursor", "is not a cursor returned by a previous page")
        return cls(created_at=created_at, id=run_id)


def _filtered(flt: RunFilter) -> Select[Run]:
    stmt = select(Run)
    if flt.job_id is not None:
        stmt = stmt.where(Run.job_id == flt.job_id)
    if flt.task:
        stmt = stmt.where(Run.task == flt.task)
    if flt.state:
        try:
            stmt = stmt.where(Run.state == RunState(flt.state.upper()).value)
        except ValueError:
            allowed = ", ".join(s.value for s in RunState)
            raise ValidationError("state", f"must be one of {allowed}") from None
    if flt.worker:
        stmt = stmt.where(Run.worker == flt.worker)
    if flt.queue:
        stmt = stmt.where(Run.queue == flt.queue)
    if flt.trigger:
        try:
            stmt = stmt.where(Run.trigger == TriggerSource(flt.trigger.lower()).value)
        except ValueError:
            allowed = ", ".join(s.value for s in TriggerSource)
            raise ValidationError("trigger", f"must be one of {allowed}") from None
    if flt.parent_id:
        stmt = stmt.where(Run.parent_id == flt.parent_id)
    return _in_range(stmt, flt.created_after, flt.created_before)


def _in_range(stmt: Select[Run], after: datetime | None, before: datetime | None) -> Select[Run]:
    for name, value in (("created_after", after), ("created_before", before)):
        if value is not None and value.tzinfo is None:
            raise ValidationError(name, "needs a time zone, e.g. 2025-03-01T00:00:00Z")
    if after is not None and before is not None and after >= before:
        raise ValidationError("created_before", "must be later than created_after")
    if after is not None:
        stmt = stmt.where(Run.created_at >= after)
    if before is not None:
        stmt = stmt.where(Run.created_at < before)
    return stmt


def list_runs(
    session: Session, flt: RunFilter, limit: int = 50, cursor: RunCursor | None = None
) -> tuple[list[Run], RunCursor | None]:
    """A page of runs, newest first, and the cursor of the next page (None at the end)."""
    if not 1 <= limit <= 500:
        raise ValidationError("limit", "must be between 1 and 500")
    stmt = _filtered(flt)
    if cursor is not None:
        stmt = stmt.where(
            or_(
                Run.created_at < cursor.created_at,
                and_(Run.created_at == cursor.created_at, Run.id < cursor.id),
            )
        )
    stmt = stmt.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = RunCursor(created_at=last.created_at, id=last.id)
    return rows, next_cursor


def get_run(session: Session, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"no run with id {run_id!r}")
    return run


def run_log_text(session: Session, run_id: str, after_seq: int = -1) -> tuple[str, int]:
    """The run's log from ``after_seq`` on, and the last sequence number read."""
    rows = session.execute(
        select(RunLog.seq, RunLog.text)
        .where(RunLog.run_id == run_id, RunLog.seq > after_seq)
        .order_by(RunLog.seq)
    ).all()
    last = rows[-1][0] if rows else after_seq
    return "".join(text for _seq, text in rows), last


def run_log_chunks(
    ctx: AppContext, run_id: str, after_seq: int, limit: int = 500
) -> tuple[str | None, list[RunLog]]:
    """For following a log: the run's state (None when it is gone), then its chunks after
    ``after_seq``. The state is read first, so the chunks written with a final state are
    always among those returned."""
    with ctx.session() as session:
        state = session.scalar(select(Run.state).where(Run.id == run_id))
        rows = session.scalars(
            select(RunLog)
            .where(RunLog.run_id == run_id, RunLog.seq > after_seq)
            .order_by(RunLog.seq)
            .limit(limit)
        ).all()
    return state, list(rows)


# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunAction:
    """What a revoke or terminate did: the state stored now and, in words, what follows."""

    run_id: str
    action: str
    state: str
    detail: str
    children: int = 0


def _load(ctx: AppContext, run_id: str) -> tuple[Run, list[Run]]:
    """The run and, for a broadcast parent, its children that have not ended."""
    with ctx.session() as session:
        run = get_run(session, run_id)
        children: list[Run] = []
        if (run.options or {}).get("broadcast"):
            stmt = select(Run).where(Run.parent_id == run.id)
            children = [c for c in session.scalars(stmt) if not RunState(c.state).is_final]
    return run, children


def revoke(ctx: AppContext, app: Any, actor: Actor, run_id: str) -> RunAction:
    """Make sure a run that has not started never starts (a broadcast: none of its copies)."""
    run, children = _load(ctx, run_id)
    state = RunState(run.state)
    if state.is_final:
        raise ConflictError(f"run {run_id} is already {state.value}; there is nothing to revoke")
    if run.task == WORKFLOW_TASK:  # its steps too (M7)
        return _stop_workflow(ctx, app, actor, run, "revoke", None)
    if state is RunState.STARTED:
        raise ConflictError(
            f"run {run_id} is running; terminate it instead (POST /api/v1/runs/{run_id}/terminate)"
        )
    return _cancel(ctx, app, actor, run, children, "revoke", None)


def terminate(
    ctx: AppContext, app: Any, actor: Actor, run_id: str, signal: str = "SIGTERM"
) -> RunAction:
    """Stop a running run with ``signal`` (a shell task's whole process group); one that has
    not started yet is revoked as by ``revoke``."""
    run, children = _load(ctx, run_id)
    state = RunState(run.state)
    if state.is_final:
        raise ConflictError(f"run {run_id} is already {state.value}; there is nothing to stop")
    if run.task == WORKFLOW_TASK:  # its steps too (M7)
        return _stop_workflow(ctx, app, actor, run, "terminate", signal)
    return _cancel(ctx, app, actor, run, children, "terminate", signal)


def _stop_workflow(
    ctx: AppContext, app: Any, actor: Actor, run: Run, action: str, signal: str | None
) -> RunAction:
    from mainspring.services.workflows import stop_workflow

    done = stop_workflow(ctx, app, actor, run.id, signal is not None, signal or "SIGTERM")
    detail = f"workflow stopped: {done.running} unfinished steps revoked"
    if signal is not None:
        detail += f" ({signal} to those running)"
    detail += f", {done.pending} not sent yet recorded REVOKED"
    return RunAction(run.id, action, done.state, detail, done.running + done.pending)


def _cancel(
    ctx: AppContext,
    app: Any,
    actor: Actor,
    run: Run,
    children: list[Run],
    action: str,
    signal: str | None,
) -> RunAction:
    for target in [run, *children]:
        # Stored first: a worker that is offline now still discards the run later.
        revoke_run(app, target.id, terminate=signal is not None, signal=signal or "SIGTERM")
    state = run.state
    if state == RunState.SCHEDULED.value:
        state = _withdraw(ctx, run.id, f"{action} by {actor.name}")
    changes: dict[str, dict[str, Any]] = {"before": {"state": run.state}, "after": {"state": state}}
    if signal is not None:
        changes["after"]["signal"] = signal
    if children:
        changes["after"]["children"] = len(children)
    with ctx.session() as session:
        record_as(session, actor, action, "run", run.id, changes)
    return RunAction(run.id, action, state, _detail(run.state, state, signal), len(children))


def _withdraw(ctx: AppContext, run_id: str, reason: str) -> str:
    """Withdraw a run a scheduler still holds; if it was published meanwhile, the stored
    revocation covers it and the state it has now is returned."""
    try:
        with ctx.session() as session:
            return cancel_run(session, run_id, reason=reason[:255]).state
    except ConflictError:
        with ctx.session() as session:
            return get_run(session, run_id).state


def _detail(before: str, after: str, signal: str | None) -> str:
    if after == RunState.REVOKED.value:
        return "withdrawn before it was published; it will not run"
    if before == RunState.STARTED.value and signal is not None:
        return f"{signal} sent to the worker running it; it becomes REVOKED when it stops"
    return (
        "revocation stored: no worker will start it; it becomes REVOKED when a worker discards it"
    )


def rerun(
    ctx: AppContext,
    app: Any,
    actor: Actor,
    run_id: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    options: TaskOptions | None = None,
) -> Submitted:
    """A new run of the same task with the same or the given arguments and options, sent now;
    its ``reason`` names the run it repeats. A broadcast parent is broadcast again."""
    old, _children = _load(ctx, run_id)
    for name, given, stored in (("args", args, old.args), ("kwargs", kwargs, old.kwargs)):
        if given is None and holds_mask(stored):
            raise ValidationError(
                name, f"the stored {name} hold masked secrets ({MASK}); send {name} again"
            )
    broadcast = bool((old.options or {}).get("broadcast"))
    sub = Submission(
        task=old.task,
        args=list(old.args or []) if args is None else args,
        kwargs=dict(old.kwargs or {}) if kwargs is None else kwargs,
        options=options or stored_options(old),
        broadcast=broadcast,
        trigger=TriggerSource.MANUAL,
        submitted_by=actor.name,
        job_id=old.job_id,
        reason=f"rerun of {old.id}"[:255],
    )
    done = submit(ctx, app, sub)
    after = {"run": done.run.id, "args": sub.args, "kwargs": sub.kwargs}
    with ctx.session() as session:
        record_as(session, actor, "rerun", "run", old.id, {"before": {}, "after": after})
    return done


def stored_options(run: Run) -> TaskOptions:
    """The options a run was sent with, and where: its queue, or its worker when it went to
    a worker's own queue (a targeted run or a broadcast copy)."""
    stored = run.options or {}
    known = set(TaskOptions.model_fields) - {"queue", "worker"}
    values = {k: v for k, v in stored.items() if k in known}
    queue = run.queue or None
    if queue and queue.startswith(HOST_QUEUE_PREFIX):
        values["worker"] = queue.removeprefix(HOST_QUEUE_PREFIX)
    elif queue:
        values["queue"] = queue
    try:
        return TaskOptions.model_validate(values)
    except PydanticValidationError:
        raise ValidationError(
            "options", "the run's stored options are not valid now; send options"
        ) from None


def holds_mask(value: Any) -> bool:
    """Whether stored arguments had a secret masked away (so they cannot be sent again)."""
    if isinstance(value, dict):
        return any((is_secret_key(k) and v == MASK) or holds_mask(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(holds_mask(v) for v in value)
    return False
