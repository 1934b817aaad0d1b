"""``GET /api/queues/length``: messages waiting in each queue the workers consume.

Flower asks RabbitMQ's management HTTP API (``--broker_api``) or Redis; we ask the broker
itself through ``services.queues`` (Redis: the lists of every priority step; RabbitMQ: a
passive ``queue.declare``), so no management plugin or extra URL is needed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from mainspring.api.flower.deps import ERRORS, CeleryApp, Ctx, ReleasedCaller
from mainspring.context import AppContext
from mainspring.services.queues import known_queues, queue_lengths

router = APIRouter(responses=ERRORS)


def active_queue_names(ctx: AppContext) -> list[str]:
    """As Flower: the queues workers consume; when none is known, the configured ones."""
    with ctx.session() as session:
        known = known_queues(session, ctx.settings)
    consumed = [name for name, workers in known.items() if workers]
    if consumed:
        return consumed
    settings = ctx.settings
    return sorted({settings.default_queue, *settings.worker_queues, *settings.task_routes.values()})


def lengths(ctx: AppContext, app: Any) -> list[dict[str, Any]]:
    """Flower's ``[{"name", "messages"}]``; a queue the broker does not have holds 0."""
    _kind, found = queue_lengths(app, active_queue_names(ctx))
    return [{"name": q.name, "messages": q.messages or 0} for q in found]


@router.get("/queues/length")
async def queues_length(ctx: Ctx, app: CeleryApp, _caller: ReleasedCaller) -> dict[str, Any]:
    """``{"active_queues": [{"name": ..., "messages": n}, ...]}``, sorted by name."""
    return {"active_queues": await run_in_threadpool(lengths, ctx, app)}
