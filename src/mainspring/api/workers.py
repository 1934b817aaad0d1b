"""``/api/v1/workers``: the workers the recorder has seen, and remote control of one worker.

Reads come from the registry (``workers`` table). Commands go to the named worker and wait
up to ``timeout`` seconds for its answer: an unknown worker is a 404, one that does not
answer a 504 saying so, one that answers with an error (e.g. autoscale on a worker started
without it) a 409 with the worker's words. Viewers read and ping; operators resize pools and
move consumers; only admins shut a worker down. Changes are audited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from mainspring.api.audit import AuditActor
from mainspring.api.auth import current_user
from mainspring.api.celery_dep import (
    CeleryApp,
    Ctx,
    ReleasedAdmin,
    ReleasedCaller,
    ReleasedOperator,
)
from mainspring.api.deps import Db
from mainspring.api.schemas import API_ERRORS, ErrorOut
from mainspring.api.task_schemas import (
    AutoscaleIn,
    ConsumerIn,
    ControlOut,
    PingOut,
    PoolResize,
    WorkerDetail,
    WorkerList,
    WorkerOut,
    WorkerRuns,
)
from mainspring.services import workers as worker_service
from mainspring.services.audit import Actor
from mainspring.services.workers import WorkerNoReplyError

router = APIRouter(
    prefix="/workers",
    tags=["workers"],
    dependencies=[Depends(current_user)],
    responses=API_ERRORS,
)
_COMMAND: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    503: {"model": ErrorOut},
    504: {"model": ErrorOut, "description": "the worker did not answer in time"},
}
Hostname = Annotated[str, Path(max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]
Timeout = Annotated[float, Query(gt=0, le=30, description="seconds to wait for the answer")]
T = TypeVar("T")


def _answered(call: Callable[[], T]) -> T:
    """The worker's answer; no answer in time is a 504 (a gateway that got no reply)."""
    try:
        return call()
    except WorkerNoReplyError as exc:
        raise HTTPException(status_code=504, detail=str(exc)) from None


@router.get("", response_model=WorkerList)
def workers_list(db: Db, status: Annotated[str | None, Query(max_length=16)] = None) -> WorkerList:
    """Every worker seen, by host name; ``status``: ``online`` or ``offline``."""
    rows = worker_service.list_workers(db, status)
    return WorkerList(items=[WorkerOut.model_validate(w) for w in rows])


@router.get("/{hostname}", response_model=WorkerDetail, responses={404: {"model": ErrorOut}})
def worker_detail(db: Db, hostname: Hostname) -> WorkerDetail:
    return WorkerDetail.model_validate(worker_service.get_worker(db, hostname))


@router.get("/{hostname}/runs", response_model=WorkerRuns, responses=_COMMAND)
def worker_runs(
    hostname: Hostname, _caller: ReleasedCaller, ctx: Ctx, celery: CeleryApp, timeout: Timeout = 1.0
) -> WorkerRuns:
    """Ask the worker what it holds now: runs executing, reserved and waiting for an ETA."""
    held = _answered(lambda: worker_service.inspect_runs(ctx, celery, hostname, timeout))
    return WorkerRuns(hostname=hostname, **held)


@router.post("/{hostname}/ping", response_model=PingOut, responses=_COMMAND)
def worker_ping(
    hostname: Hostname, _caller: ReleasedCaller, ctx: Ctx, celery: CeleryApp, timeout: Timeout = 1.0
) -> PingOut:
    """Whether the worker answers now, and how fast (changes nothing: viewers may ping)."""
    reply, elapsed = _answered(lambda: worker_service.ping(ctx, celery, hostname, timeout))
    return PingOut(hostname=hostname, reply=reply, elapsed_ms=round(elapsed, 1))


def _control(
    ctx: Any,
    celery: Any,
    actor: Actor,
    hostname: str,
    action: str,
    arguments: dict[str, Any],
    timeout: float,
) -> ControlOut:
    reply = _answered(
        lambda: worker_service.control_worker(
            ctx, celery, actor, hostname, action, arguments, timeout
        )
    )
    return ControlOut(hostname=hostname, action=action, reply=reply)


@router.post("/{hostname}/pool/grow", response_model=ControlOut, responses=_COMMAND)
def worker_pool_grow(
    hostname: Hostname,
    _caller: ReleasedOperator,
    ctx: Ctx,
    celery: CeleryApp,
    actor: AuditActor,
    body: PoolResize | None = None,
    timeout: Timeout = 1.0,
) -> ControlOut:
    """Add ``n`` pool processes (prefork; not on a worker that autoscales)."""
    n = (body or PoolResize()).n
    return _control(ctx, celery, actor, hostname, "pool_grow", {"n": n}, timeout)


@router.post("/{hostname}/pool/shrink", response_model=ControlOut, responses=_COMMAND)
def worker_pool_shrink(
    hostname: Hostname,
    _caller: ReleasedOperator,
    ctx: Ctx,
    celery: CeleryApp,
    actor: AuditActor,
    body: PoolResize | None = None,
    timeout: Timeout = 1.0,
) -> ControlOut:
    """Remove ``n`` pool processes (prefork)."""
    n = (body or PoolResize()).n
    return _control(ctx, celery, actor, hostname, "pool_shrink", {"n": n}, timeout)


@router.post("/{hostname}/pool/autoscale", response_model=ControlOut, responses=_COMMAND)
def worker_autoscale(
    hostname: Hostname,
    body: AutoscaleIn,
    _caller: ReleasedOperator,
    ctx: Ctx,
    celery: CeleryApp,
    actor: AuditActor,
    timeout: Timeout = 1.0,
) -> ControlOut:
    """Set the pool's bounds, on a worker started with autoscaling."""
    arguments = {"max": body.max, "min": body.min}
    return _control(ctx, celery, actor, hostname, "autoscale", arguments, timeout)


@router.post("/{hostname}/consumers", response_model=ControlOut, responses=_COMMAND)
def worker_add_consumer(
    hostname: Hostname,
    body: ConsumerIn,
    _caller: ReleasedOperator,
    ctx: Ctx,
    celery: CeleryApp,
    actor: AuditActor,
    timeout: Timeout = 1.0,
) -> ControlOut:
    """Start consuming ``queue``."""
    arguments = {"queue": body.queue}
    return _control(ctx, celery, actor, hostname, "add_consumer", arguments, timeout)


@router.delete("/{hostname}/consumers/{queue}", response_model=ControlOut, responses=_COMMAND)
def worker_cancel_consumer(
    hostname: Hostname,
    queue: Annotated[str, Path(max_length=200)],
    _caller: ReleasedOperator,
    ctx: Ctx,
    celery: CeleryApp,
    actor: AuditActor,
    timeout: Timeout = 1.0,
) -> ControlOut:
    """Stop consuming ``queue`` (messages already taken finish)."""
    arguments = {"queue": queue}
    return _control(ctx, celery, actor, hostname, "cancel_consumer", arguments, timeout)


@router.post("/{hostname}/shutdown", response_model=ControlOut, status_code=202, responses=_COMMAND)
def worker_shutdown(
    hostname: Hostname,
    _caller: ReleasedAdmin,
    ctx: Ctx,
    celery: CeleryApp,
    actor: AuditActor,
    timeout: Timeout = 1.0,
) -> ControlOut:
    """Warm shutdown (running tasks finish first) of a worker that answers a ping; whatever
    supervises it decides whether it comes back."""
    _answered(lambda: worker_service.shutdown(ctx, celery, actor, hostname, timeout))
    return ControlOut(hostname=hostname, action="shutdown", reply="shutdown requested")
