"""``/api/v1/tasks``: submit a task (now, later, to one worker or to all), and the task names
and built-in task schemas that forms are built from.

A submission answers at once with the run id (202, ``Location`` the run); the run itself is
followed under ``/api/v1/runs``. With an idempotency key, a repeated request answers 200 with
the first run instead of creating a second (see ``services.tasks``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from mainspring.api.auth import current_user
from mainspring.api.celery_dep import CeleryApp, Ctx, ReleasedOperator
from mainspring.api.deps import Db
from mainspring.api.schemas import API_ERRORS, ErrorOut
from mainspring.api.submitter import submit_from_request
from mainspring.api.task_schemas import (
    SubmitOptions,
    SubmittedChild,
    TaskSubmit,
    TaskSubmitted,
    TaskType,
    TaskTypes,
)
from mainspring.core.states import WorkerStatus
from mainspring.db.models import Run
from mainspring.errors import ValidationError
from mainspring.services.clock import utcnow
from mainspring.services.tasks import Submission, Submitted, TaskOptions
from mainspring.services.workers import known_tasks, list_workers
from mainspring.worker.routing import HOST_QUEUE_PREFIX
from mainspring.worker.schemas import BUILTIN_PARAMS, builtin_schemas

RUNS_PATH = "/api/v1/runs"

router = APIRouter(
    prefix="/tasks",
    tags=["tasks"],
    dependencies=[Depends(current_user)],
    responses=API_ERRORS,
)


@router.post(
    "",
    response_model=TaskSubmitted,
    status_code=202,
    responses={
        200: {"model": TaskSubmitted, "description": "an earlier run with this idempotency key"},
        403: {"model": ErrorOut},
        409: {"model": ErrorOut},
        503: {"model": ErrorOut},
    },
)
async def task_submit(
    body: TaskSubmit,
    request: Request,
    response: Response,
    caller: ReleasedOperator,
    ctx: Ctx,
    celery: CeleryApp,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    ] = None,
) -> TaskSubmitted:
    """Submit a task; the answer carries the run id at once."""
    sub = Submission(
        task=body.task,
        args=body.args,
        kwargs=body.kwargs,
        options=_task_options(body.options),
        eta=_due(body.options),
        broadcast=body.options.broadcast,
        idempotency_key=_one_key(body.idempotency_key, idempotency_key),
        submitted_by=caller.username,
    )
    done = await submit_from_request(request, ctx, celery, sub)
    response.headers["Location"] = f"{RUNS_PATH}/{done.run.id}"
    if not done.created:
        response.status_code = 200
    return submitted(done)


@router.get("/types", response_model=TaskTypes)
def task_types(db: Db) -> TaskTypes:
    """Built-in tasks and every task name a worker has registered, with the hosts that have
    it; ``builtin_schemas`` gives each built-in task's parameters as JSON Schema."""
    hosts = known_tasks(db)
    online = {w.hostname for w in list_workers(db, WorkerStatus.ONLINE.value)}
    names = sorted(set(hosts) | set(BUILTIN_PARAMS))
    items = [
        TaskType(
            name=name,
            builtin=name in BUILTIN_PARAMS,
            workers=hosts.get(name, []),
            online_workers=[h for h in hosts.get(name, []) if h in online],
        )
        for name in names
    ]
    return TaskTypes(items=items, builtin_schemas=builtin_schemas())


def _task_options(options: SubmitOptions) -> TaskOptions:
    return TaskOptions.model_validate(
        options.model_dump(exclude={"eta", "countdown", "broadcast"}, exclude_none=True)
    )


def _due(options: SubmitOptions) -> datetime | None:
    if options.eta is not None and options.countdown is not None:
        raise ValidationError("options.countdown", "give either eta or countdown, not both")
    if options.countdown is not None:
        return utcnow() + timedelta(seconds=options.countdown)
    return options.eta


def _one_key(body_key: str | None, header_key: str | None) -> str | None:
    if body_key is not None and header_key is not None and body_key != header_key:
        raise ValidationError(
            "idempotency_key", "differs from the Idempotency-Key header; send one of them"
        )
    return body_key if body_key is not None else header_key


def submitted(done: Submitted) -> TaskSubmitted:
    """The answer to a submission (also used by ``POST /runs/{id}/rerun``)."""
    run = done.run
    children = None
    if (run.options or {}).get("broadcast"):
        children = [_child(c) for c in done.children]
    return TaskSubmitted(
        id=run.id,
        task=run.task,
        state=run.state,
        queue=run.queue,
        scheduled_for=run.scheduled_for,
        idempotency_key=run.idempotency_key,
        replayed=not done.created,
        url=f"{RUNS_PATH}/{run.id}",
        reason=run.reason,
        children=children,
    )


def _child(run: Run) -> SubmittedChild:
    """A copy of a broadcast goes to one worker's own queue, so its worker is known now."""
    reason = run.exception_message if run.state == "SKIPPED" else None
    worker = run.worker
    if worker is None and run.queue and run.queue.startswith(HOST_QUEUE_PREFIX):
        worker = run.queue.removeprefix(HOST_QUEUE_PREFIX)
    return SubmittedChild(id=run.id, worker=worker, queue=run.queue, state=run.state, reason=reason)
