"""``/api/v1/queues``: the queues Mainspring knows with their lengths on the broker (Redis or
RabbitMQ), and purging one (admins only, confirmed by repeating its name)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from mainspring.api.audit import AuditActor
from mainspring.api.auth import current_user
from mainspring.api.celery_dep import CeleryApp, Ctx, ReleasedAdmin, ReleasedCaller
from mainspring.api.deps import get_settings
from mainspring.api.schemas import API_ERRORS, ErrorOut
from mainspring.api.task_schemas import PurgeIn, PurgeOut, QueueList, QueueOut
from mainspring.services import queues as queue_service
from mainspring.services.queues import QueueLength
from mainspring.settings import Settings

router = APIRouter(
    prefix="/queues",
    tags=["queues"],
    dependencies=[Depends(current_user)],
    responses={
        **API_ERRORS,
        503: {"model": ErrorOut, "description": "the broker cannot be reached"},
    },
)
QueueName = Annotated[str, Path(max_length=200)]


def _out(length: QueueLength, workers: list[str]) -> QueueOut:
    return QueueOut(
        name=length.name,
        messages=length.messages,
        consumers=length.consumers,
        by_priority=length.by_priority,
        workers=workers,
        exists=length.exists,
    )


@router.get("", response_model=QueueList)
def queues_list(
    _caller: ReleasedCaller,
    ctx: Ctx,
    celery: CeleryApp,
    settings: Annotated[Settings, Depends(get_settings)],
) -> QueueList:
    """Every known queue (configured, used by jobs, consumed by workers) with the messages
    waiting in it now."""
    with ctx.session() as session:
        known = queue_service.known_queues(session, settings)
    kind, lengths = queue_service.queue_lengths(celery, list(known))
    return QueueList(broker=kind, items=[_out(q, known[q.name]) for q in lengths])


@router.get("/{name}", response_model=QueueOut, responses={404: {"model": ErrorOut}})
def queue_detail(
    name: QueueName,
    _caller: ReleasedCaller,
    ctx: Ctx,
    celery: CeleryApp,
    settings: Annotated[Settings, Depends(get_settings)],
) -> QueueOut:
    """One queue's length, whether or not Mainspring knows it."""
    queue_service.check_name(name)
    with ctx.session() as session:
        known = queue_service.known_queues(session, settings)
    _kind, (length,) = queue_service.queue_lengths(celery, [name])
    return _out(length, known.get(name, []))


@router.post(
    "/{name}/purge",
    response_model=PurgeOut,
    responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
def queue_purge(
    name: QueueName,
    body: PurgeIn,
    _caller: ReleasedAdmin,
    ctx: Ctx,
    celery: CeleryApp,
    actor: AuditActor,
) -> PurgeOut:
    """Delete every message waiting in the queue; the body repeats its name:
    ``{"confirm": "<name>"}``. Messages already taken by workers are not affected."""
    purged = queue_service.purge_queue(ctx, celery, actor, name, body.confirm)
    return PurgeOut(name=name, purged=purged)
