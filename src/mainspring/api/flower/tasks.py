"""Flower's task endpoints: submit, wait, read results, revoke/abort, change limits.

Submissions are runs (``services.tasks.submit``; a countdown or ETA makes a run the scheduler
holds and publishes when due). Writes need the operator role, reads the viewer role; see
docs/flower-api.md for what differs from Flower and why.
"""

from __future__ import annotations

import signal as signals
from typing import Annotated, Any

from celery.utils.time import rate
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from mainspring.api.audit import AuditActor
from mainspring.api.flower import control, runs
from mainspring.api.flower.body import TaskCall, parse_call, read_json_object
from mainspring.api.flower.deps import (
    ERRORS,
    CeleryApp,
    Ctx,
    FormArgs,
    ReleasedCaller,
    ReleasedOperator,
    Zone,
    argument,
    bad_request,
    parse_bool,
    parse_float,
)
from mainspring.api.schemas import ErrorOut
from mainspring.context import AppContext
from mainspring.services.clock import utcnow

MAX_WAIT_S = 3600.0

SUBMISSION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "JSON, read whatever the Content-Type header says (as Flower does).",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "args": {"type": "array", "items": {}},
                        "kwargs": {"type": "object"},
                        "queue": {"type": "string"},
                        "routing_key": {"type": "string"},
                        "worker": {"type": "string"},
                        "countdown": {"type": "number", "minimum": 0},
                        "eta": {"type": "string", "example": "2026-01-01 02:00:00.000000"},
                        "expires": {"type": ["number", "string"]},
                        "priority": {"type": "integer", "minimum": 0, "maximum": 9},
                        "time_limit": {"type": "number", "exclusiveMinimum": 0},
                        "soft_time_limit": {"type": "number", "exclusiveMinimum": 0},
                    },
                    "additionalProperties": False,
                }
            }
        },
    }
}

router = APIRouter(responses=ERRORS)


async def flower_call(request: Request, tz: Zone) -> TaskCall:
    """The submission in the raw body (any content type, or none)."""
    return parse_call(await read_json_object(request), tz, utcnow())


Call = Annotated[TaskCall, Depends(flower_call)]


def _wait_limit(raw: str | None) -> float | None:
    timeout = parse_float("timeout", raw)
    if timeout is not None and timeout > MAX_WAIT_S:
        raise bad_request("timeout", f"must be at most {MAX_WAIT_S:.0f} seconds")
    return timeout


@router.post("/task/apply/{task}", openapi_extra=SUBMISSION_BODY)
async def task_apply(
    task: str,
    call: Call,
    request: Request,
    ctx: Ctx,
    app: CeleryApp,
    caller: ReleasedOperator,
    timeout: Annotated[str | None, Query(description="Mainspring: stop waiting after N s")] = None,
) -> dict[str, Any]:
    """Run a task and wait for its result (Flower waits without limit; so do we, unless
    ``timeout`` is given, until the client disconnects)."""
    limit = _wait_limit(timeout)
    run_id = await run_in_threadpool(runs.submit, ctx, app, task, call, caller.username)
    outcome = await runs.wait_outcome(ctx, app, run_id, limit, request)
    return outcome.as_flower(run_id)


@router.post("/task/async-apply/{task}", openapi_extra=SUBMISSION_BODY)
async def task_async_apply(
    task: str, call: Call, request: Request, ctx: Ctx, app: CeleryApp, caller: ReleasedOperator
) -> dict[str, Any]:
    """Submit a task; its id (a run id) at once. 404 if no worker has registered it."""
    run_id = await runs.submit_async(request, ctx, app, task, call, caller.username)
    return {"task-id": run_id, "state": "PENDING"}


@router.post("/task/send-task/{task}", openapi_extra=SUBMISSION_BODY)
async def task_send(
    task: str, call: Call, request: Request, ctx: Ctx, app: CeleryApp, caller: ReleasedOperator
) -> dict[str, Any]:
    """Submit a task by name (as async-apply: the web process never imports task code)."""
    run_id = await runs.submit_async(request, ctx, app, task, call, caller.username)
    return {"task-id": run_id, "state": "PENDING"}


@router.get("/task/result/{task_id}")
async def task_result(
    task_id: str,
    request: Request,
    ctx: Ctx,
    app: CeleryApp,
    _caller: ReleasedCaller,
    timeout: Annotated[str | None, Query(description="seconds to wait for the result")] = None,
) -> dict[str, Any]:
    """State, and result once ready; an id nobody knows is PENDING, as in Celery."""
    limit = _wait_limit(timeout)
    if limit:
        outcome = await runs.wait_outcome(ctx, app, task_id, limit, request)
    else:
        outcome = await run_in_threadpool(runs.read_outcome, ctx, app, task_id)
    return outcome.as_flower(task_id)


@router.post("/task/abort/{task_id}", responses={409: {"model": ErrorOut}})
def task_abort(
    task_id: str, ctx: Ctx, app: CeleryApp, actor: AuditActor, _caller: ReleasedOperator
) -> dict[str, str]:
    """Ask an ``AbortableTask`` to stop (409 if the run already ended)."""
    runs.abort(ctx, app, actor, task_id)
    return {"message": f"Aborted '{task_id}'"}


def _signal_name(raw: str | None) -> str:
    """``SIGTERM``, ``TERM``, ``kill`` or a number, as the signal's name."""
    if raw is None or raw.strip() == "":
        return "SIGTERM"
    value = raw.strip().upper()
    if value.isdigit():
        try:
            return signals.Signals(int(value)).name
        except ValueError:
            raise bad_request("signal", "is not a signal number") from None
    name = value if value.startswith("SIG") else f"SIG{value}"
    if name not in signals.Signals.__members__:
        raise bad_request("signal", "is not a signal name such as SIGTERM or SIGKILL")
    return name


@router.post("/task/revoke/{task_id}")
def task_revoke(
    task_id: str,
    ctx: Ctx,
    app: CeleryApp,
    form: FormArgs,
    actor: AuditActor,
    _caller: ReleasedOperator,
    terminate: Annotated[str | None, Query(description="also stop it if running")] = None,
    signal: Annotated[str | None, Query(description="signal for terminate")] = None,
) -> dict[str, str]:
    """Revoke (and with ``terminate`` stop) a run; a held run is withdrawn."""
    stop = parse_bool("terminate", argument("terminate", terminate, form))
    name = _signal_name(argument("signal", signal, form))
    runs.revoke(ctx, app, actor, task_id, terminate=stop, signal=name)
    return {"message": f"Revoked '{task_id}'"}


def _limit_target(ctx: AppContext, task: str, worker: str | None) -> str:
    """The named worker, known (404 otherwise), and the task, if the worker reported its
    registered tasks, among them (404 otherwise)."""
    if not worker:
        raise bad_request("workername", "is required")
    registered = control.registered_tasks(ctx, worker)
    if registered and task not in registered:
        raise runs.unknown_task(task)
    return worker


def _limit_answer(replies: Any, worker: str, task: str, failure: str) -> dict[str, str]:
    if control.worker_error(replies, worker) == "unknown task":
        raise runs.unknown_task(task)
    return control.reply_message(replies, worker, failure)


@router.post("/task/timeout/{task}", responses=control.CONTROL_ERRORS)
def task_timeout(
    task: str,
    ctx: Ctx,
    app: CeleryApp,
    form: FormArgs,
    actor: AuditActor,
    _caller: ReleasedOperator,
    workername: str | None = None,
    soft: Annotated[str | None, Query(description="soft time limit, seconds")] = None,
    hard: Annotated[str | None, Query(description="hard time limit, seconds")] = None,
) -> dict[str, str]:
    """Change a task's time limits on one worker (query or urlencoded body arguments)."""
    worker = _limit_target(ctx, task, argument("workername", workername, form))
    limits = {
        "soft": parse_float("soft", argument("soft", soft, form)),
        "hard": parse_float("hard", argument("hard", hard, form)),
    }
    replies = control.commands(app).time_limit(task, limits["soft"], limits["hard"], [worker])
    answer = _limit_answer(replies, worker, task, "Failed to set timeouts")
    control.audit(ctx, actor, "time_limit", worker, task=task, **limits)
    return answer


@router.post("/task/rate-limit/{task}", responses=control.CONTROL_ERRORS)
def task_rate_limit(
    task: str,
    ctx: Ctx,
    app: CeleryApp,
    form: FormArgs,
    actor: AuditActor,
    _caller: ReleasedOperator,
    workername: str | None = None,
    ratelimit: Annotated[str | None, Query(description="e.g. 200, 10/m, 1/h")] = None,
) -> dict[str, str]:
    """Change a task's rate limit on one worker (query or urlencoded body arguments)."""
    worker = _limit_target(ctx, task, argument("workername", workername, form))
    value = (argument("ratelimit", ratelimit, form) or "").strip()
    if not value:
        raise bad_request("ratelimit", "is required, e.g. 10/m")
    try:
        rate(value)
    except (ValueError, KeyError):
        raise bad_request("ratelimit", "must be N, N/s, N/m or N/h") from None
    replies = control.commands(app).rate_limit(task, value, [worker])
    answer = _limit_answer(replies, worker, task, "Failed to set rate limit")
    control.audit(ctx, actor, "rate_limit", worker, task=task, rate=value)
    return answer
