"""Flower's worker endpoints: the list (from the registry, or live with ``refresh``) and
remote control (shutdown, pool restart/grow/shrink/autoscale, add/cancel consumer).

Commands go through ``services.workers`` where it has them, and each one a worker accepted is
audited (object type ``worker``). A worker is known when the registry has it (the recorder
adds every worker it hears from); any other name is a 404, as in Flower.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from mainspring.api.audit import AuditActor
from mainspring.api.flower import control
from mainspring.api.flower.deps import (
    CONTROL_TIMEOUT_S,
    ERRORS,
    CeleryApp,
    Ctx,
    FormArgs,
    ReleasedCaller,
    ReleasedOperator,
    argument,
    bad_request,
    parse_bool,
    parse_int,
)
from mainspring.api.flower.history import workers
from mainspring.api.flower.shapes import worker_dict
from mainspring.context import AppContext
from mainspring.core.states import WorkerStatus
from mainspring.services import workers as worker_service
from mainspring.services.audit import Actor

router = APIRouter(responses=ERRORS)


def _registry(ctx: AppContext, name: str | None) -> tuple[dict[str, Any], dict[str, bool]]:
    """Each registered worker in Flower's shape, and whether the registry has it online."""
    with ctx.session() as session:
        rows = workers(session, name)
        info = {w.hostname: worker_dict(w) for w in rows}
        alive = {w.hostname: w.status == WorkerStatus.ONLINE.value for w in rows}
    return info, alive


@router.get("/workers")
async def workers_list(
    ctx: Ctx,
    app: CeleryApp,
    _caller: ReleasedCaller,
    refresh: Annotated[str | None, Query(description="ask the workers now (inspect)")] = None,
    workername: str | None = None,
    status: Annotated[str | None, Query(description="only {name: online?}")] = None,
) -> dict[str, Any]:
    """Workers by host name; ``status`` gives ``{name: alive}``, ``refresh`` merges live
    ``inspect`` replies (stats, queues, registered, active, reserved, scheduled, revoked,
    conf) over what the registry holds."""
    live, only_status = parse_bool("refresh", refresh), parse_bool("status", status)
    name = workername or None
    info, alive = await run_in_threadpool(_registry, ctx, name)
    if only_status:
        return alive
    if live:
        online = [host for host, up in alive.items() if up]
        hosts = [name] if name else (online or None)
        for host, reply in (await control.inspect_all(app, hosts)).items():
            info[host] = {**info.get(host, {}), **reply, "timestamp": time.time()}
    if name is not None:
        if name not in info:
            raise control.unknown_worker(name)
        return {name: info[name]}
    return info


def _command(
    ctx: AppContext, app: Any, actor: Actor, name: str, action: str, **arguments: Any
) -> str:
    """One audited command through the workers service; the worker's own answer."""
    return worker_service.control_worker(
        ctx, app, actor, name, action, arguments, CONTROL_TIMEOUT_S
    )


@router.post("/worker/shutdown/{name}", responses=control.CONTROL_ERRORS)
def worker_shutdown(
    name: str, ctx: Ctx, app: CeleryApp, actor: AuditActor, _caller: ReleasedOperator
) -> dict[str, str]:
    """Warm shutdown (running tasks finish first) of a worker that answers a ping."""
    with control.flower_answers(name, f"Failed to shut down '{name}'"):
        worker_service.shutdown(ctx, app, actor, name, CONTROL_TIMEOUT_S)
    return {"message": "Shutting down!"}


@router.post("/worker/pool/restart/{name}", responses=control.CONTROL_ERRORS)
def worker_pool_restart(
    name: str, ctx: Ctx, app: CeleryApp, actor: AuditActor, _caller: ReleasedOperator
) -> dict[str, str]:
    """Restart the pool's processes (the worker must allow it: ``worker_pool_restarts``)."""
    control.registered_tasks(ctx, name)  # 404 for a worker nobody has seen
    replies = control.commands(app).pool_restart([name])
    answer = control.reply_message(
        replies,
        name,
        f"Failed to restart the '{name}' pool",
        f"Restarting '{name}' worker's pool",
    )
    control.audit(ctx, actor, "pool_restart", name)
    return answer


def _resize(
    ctx: AppContext, app: Any, actor: Actor, name: str, raw_n: str | None, grow: bool
) -> dict[str, str]:
    n = parse_int("n", raw_n, default=1, minimum=1, maximum=1000) or 1
    verb, action = ("Growing", "pool_grow") if grow else ("Shrinking", "pool_shrink")
    failure = f"Failed to {'grow' if grow else 'shrink'} '{name}' worker's pool"
    with control.flower_answers(name, failure):
        _command(ctx, app, actor, name, action, n=n)
    return {"message": f"{verb} '{name}' worker's pool by {n}"}


@router.post("/worker/pool/grow/{name}", responses=control.CONTROL_ERRORS)
def worker_pool_grow(
    name: str,
    ctx: Ctx,
    app: CeleryApp,
    form: FormArgs,
    actor: AuditActor,
    _caller: ReleasedOperator,
    n: Annotated[str | None, Query(description="processes to add, default 1")] = None,
) -> dict[str, str]:
    return _resize(ctx, app, actor, name, argument("n", n, form), grow=True)


@router.post("/worker/pool/shrink/{name}", responses=control.CONTROL_ERRORS)
def worker_pool_shrink(
    name: str,
    ctx: Ctx,
    app: CeleryApp,
    form: FormArgs,
    actor: AuditActor,
    _caller: ReleasedOperator,
    n: Annotated[str | None, Query(description="processes to remove, default 1")] = None,
) -> dict[str, str]:
    return _resize(ctx, app, actor, name, argument("n", n, form), grow=False)


@router.post("/worker/pool/autoscale/{name}", responses=control.CONTROL_ERRORS)
def worker_pool_autoscale(
    name: str,
    ctx: Ctx,
    app: CeleryApp,
    form: FormArgs,
    actor: AuditActor,
    _caller: ReleasedOperator,
    min: Annotated[str | None, Query(description="fewest pool processes")] = None,
    max: Annotated[str | None, Query(description="most pool processes")] = None,
) -> dict[str, str]:
    """Set the autoscaler's bounds (the worker must run with ``--autoscale``)."""
    low = parse_int("min", argument("min", min, form), minimum=0, maximum=10000)
    high = parse_int("max", argument("max", max, form), minimum=0, maximum=10000)
    if low is None or high is None:
        raise bad_request("min" if low is None else "max", "is required")
    if low > high:
        raise bad_request("min", "must not be greater than max")
    with control.flower_answers(name, f"Failed to autoscale '{name}' worker"):
        _command(ctx, app, actor, name, "autoscale", min=low, max=high)
    return {"message": f"Autoscaling '{name}' worker (min={low}, max={high})"}


def _consumer(
    ctx: AppContext, app: Any, actor: Actor, name: str, raw_queue: str | None, add: bool
) -> dict[str, str]:
    queue = (raw_queue or "").strip()
    if not queue:
        raise bad_request("queue", "is required")
    if add:
        action, failure = "add_consumer", f"Failed to add '{queue}' consumer to '{name}' worker"
    else:
        action = "cancel_consumer"
        failure = f"Failed to cancel '{queue}' consumer from '{name}' worker"
    with control.flower_answers(name, failure):
        answer = _command(ctx, app, actor, name, action, queue=queue)
    return {"message": answer}


@router.post("/worker/queue/add-consumer/{name}", responses=control.CONTROL_ERRORS)
def worker_add_consumer(
    name: str,
    ctx: Ctx,
    app: CeleryApp,
    form: FormArgs,
    actor: AuditActor,
    _caller: ReleasedOperator,
    queue: str | None = None,
) -> dict[str, str]:
    """Start consuming a queue."""
    return _consumer(ctx, app, actor, name, argument("queue", queue, form), add=True)


@router.post("/worker/queue/cancel-consumer/{name}", responses=control.CONTROL_ERRORS)
def worker_cancel_consumer(
    name: str,
    ctx: Ctx,
    app: CeleryApp,
    form: FormArgs,
    actor: AuditActor,
    _caller: ReleasedOperator,
    queue: str | None = None,
) -> dict[str, str]:
    """Stop consuming a queue."""
    return _consumer(ctx, app, actor, name, argument("queue", queue, form), add=False)
