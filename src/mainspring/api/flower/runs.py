"""Flower's task operations carried out by Mainspring's services, so that every submission is
a run (with its history, logs and lineage) and every cancellation reaches the scheduler and
the workers. Routes call these; nothing here knows about HTTP beyond raising the answers
Flower gives (404 unknown task, 400 bad option).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio
from celery import states as celery_states
from celery.contrib.abortable import ABORTED
from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from mainspring.api.flower.body import TaskCall
from mainspring.api.flower.deps import bad_request
from mainspring.api.flower.shapes import celery_state, exception_repr, safe_result
from mainspring.api.submitter import submit_from_request
from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.errors import (
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationError,
)
from mainspring.services import runs as run_actions
from mainspring.services.audit import Actor
from mainspring.services.tasks import Submission, revoke_run
from mainspring.services.tasks import submit as submit_run

logger = logging.getLogger("mainspring.api.flower")

_UNKNOWN_TASK = ("no worker has registered", "is not a task name")


def unknown_task(task: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"Unknown task '{task}'")


def _submission(task: str, call: TaskCall, caller: str) -> Submission:
    return Submission(
        task=task,
        args=call.args,
        kwargs=call.kwargs,
        options=call.options,
        eta=call.due,
        submitted_by=caller,
    )


def _flower_error(task: str, exc: ValidationError) -> HTTPException:
    """Flower's answers to a bad submission: 404 for an unknown task, else 400."""
    if exc.field == "task" and any(part in exc.message for part in _UNKNOWN_TASK):
        return unknown_task(task)
    return bad_request(exc.field.removeprefix("options."), exc.message)


def submit(ctx: AppContext, app: Any, task: str, call: TaskCall, caller: str) -> str:
    """Store and publish a run (or hold it for the scheduler until ``call.due``); its id."""
    try:
        return submit_run(ctx, app, _submission(task, call, caller)).run.id
    except ValidationError as exc:
        raise _flower_error(task, exc) from None


async def submit_async(
    request: Request, ctx: AppContext, app: Any, task: str, call: TaskCall, caller: str
) -> str:
    """``submit`` from the event loop, plain submissions batched (``api.submitter``)."""
    try:
        done = await submit_from_request(request, ctx, app, _submission(task, call, caller))
    except ValidationError as exc:
        raise _flower_error(task, exc) from None
    return done.run.id


def revoke(
    ctx: AppContext, app: Any, actor: Actor, run_id: str, terminate: bool, signal: str
) -> None:
    """Revoke a run through the runs service (audited; a held run is withdrawn; with
    ``terminate`` a running one is stopped). Celery revokes any id, and so does Flower: an
    id that is not a run yet, a run that ended, or a running one without ``terminate`` is
    revoked on the workers as Celery would (stored, so a later delivery is discarded)."""
    try:
        if terminate:
            run_actions.terminate(ctx, app, actor, run_id, signal)
        else:
            run_actions.revoke(ctx, app, actor, run_id)
        return
    except (NotFoundError, ConflictError):
        pass
    try:
        revoke_run(app, run_id, terminate=terminate, signal=signal)
    except Exception as exc:
        raise ServiceUnavailableError(f"cannot revoke {run_id}: {exc}") from exc


def abort(ctx: AppContext, app: Any, actor: Actor, run_id: str) -> None:
    """Celery's ``AbortableAsyncResult.abort``: mark the task ABORTED in the result backend,
    which tasks derived from ``AbortableTask`` poll. A run that already ended is refused,
    because the mark would overwrite its stored result."""
    with ctx.session() as session:
        run = session.get(Run, run_id)
        if run is not None and RunState(run.state).is_final:
            raise ConflictError(f"task {run_id} already ended ({run.state}); nothing to abort")
        held = run is not None and run.state == RunState.SCHEDULED.value
    if held:
        revoke(ctx, app, actor, run_id, terminate=False, signal="SIGTERM")
        return
    try:
        app.backend.store_result(run_id, None, ABORTED)
    except Exception as exc:
        raise ServiceUnavailableError(f"cannot reach the result backend: {exc}") from exc


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A task's state as Celery names it, and its result once it is ready."""

    state: str
    ready: bool
    result: Any = None
    traceback: str | None = None

    def as_flower(self, task_id: str) -> dict[str, Any]:
        """Flower's answer: ``task-id`` and ``state``, plus ``result`` when ready (and
        ``traceback`` on failure)."""
        answer: dict[str, Any] = {"task-id": task_id, "state": self.state}
        if self.ready:
            answer["result"] = self.result
            if self.state == celery_states.FAILURE:
                answer["traceback"] = self.traceback
        return answer


def _backend_outcome(app: Any, run_id: str) -> Outcome | None:
    """What the result backend says; None when it knows nothing (PENDING)."""
    meta = app.backend.get_task_meta(run_id)
    status = str(meta.get("status") or celery_states.PENDING)
    if status == celery_states.PENDING:
        return None
    if status not in celery_states.READY_STATES:
        return Outcome(state=status, ready=False)
    trace = meta.get("traceback") if status == celery_states.FAILURE else None
    return Outcome(status, True, safe_result(meta.get("result")), trace)


def _row_outcome(run: Run) -> Outcome:
    state = RunState(run.state)
    if not state.is_final:
        return Outcome(celery_state(run.state), ready=False)
    if state is RunState.SUCCESS:
        return Outcome("SUCCESS", True, run.result)
    message = exception_repr(run) or run.reason
    trace = run.traceback if celery_state(run.state) == celery_states.FAILURE else None
    return Outcome(celery_state(run.state), True, message, trace)


def read_outcome(ctx: AppContext, app: Any, run_id: str) -> Outcome:
    """The result backend's answer once it has a final one (the real result value), else
    the run's row (which knows runs the backend never sees: held, withdrawn, lost), else
    PENDING, as Celery reports any id it does not know."""
    try:
        backend = _backend_outcome(app, run_id)
        backend_error: Exception | None = None
    except Exception as exc:
        logger.warning("cannot read the result of %s from the backend: %s", run_id, exc)
        backend, backend_error = None, exc
    if backend is not None and backend.ready:
        return backend
    with ctx.session() as session:
        run = session.get(Run, run_id)
        row = _row_outcome(run) if run is not None else None
    if row is not None and (row.ready or backend is None):
        return row
    if backend is not None:
        return backend
    if backend_error is not None:
        raise ServiceUnavailableError(f"cannot reach the result backend: {backend_error}")
    return Outcome(celery_states.PENDING, ready=False)


async def wait_outcome(
    ctx: AppContext, app: Any, run_id: str, timeout: float | None, request: Request
) -> Outcome:
    """Poll until the task is ready, ``timeout`` seconds pass (None: no limit) or the client
    goes away; then the last outcome seen. Polling keeps no thread or connection busy while
    waiting, however many callers wait."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.02
    while True:
        outcome = await run_in_threadpool(read_outcome, ctx, app, run_id)
        if outcome.ready:
            return outcome
        left = None if deadline is None else deadline - time.monotonic()
        if (left is not None and left <= 0) or await request.is_disconnected():
            return outcome
        await anyio.sleep(delay if left is None else min(delay, left))
        delay = min(delay * 1.5, 0.5)
