"""``/api/v1/runs``: run history with filters and keyset pagination, one run, its log (a
range, or followed live as Server-Sent Events), and revoke / terminate / re-run.

Following a log polls the ``run_logs`` table (the database is the one source of truth, also
for logs of runs on other hosts) every ``FOLLOW_POLL_S`` in short transactions, and stops
when the run has reached a final state (an ``end`` event) or the client has gone.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from mainspring.api.audit import AuditActor
from mainspring.api.auth import current_user
from mainspring.api.celery_dep import CeleryApp, Ctx, ReleasedOperator
from mainspring.api.deps import Db
from mainspring.api.schemas import API_ERRORS, ErrorOut, RunLogOut, RunOut, RunPage
from mainspring.api.task_schemas import (
    RerunIn,
    RunActionOut,
    RunDetail,
    TaskSubmitted,
    TerminateIn,
)
from mainspring.api.tasks import submitted
from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.services import runs as run_service
from mainspring.services.runs import RunAction, RunCursor, RunFilter, get_run, list_runs

FOLLOW_POLL_S = 0.25  # a followed log is at most this far behind the database
KEEPALIVE_S = 15.0  # a comment line keeps proxies from closing a quiet stream
CHUNKS_PER_POLL = 500

router = APIRouter(
    prefix="/runs",
    tags=["runs"],
    dependencies=[Depends(current_user)],
    responses=API_ERRORS,
)
_ONE_RUN: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}
_ACTION: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    503: {"model": ErrorOut},
}
Text = Query(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")
RunId = Annotated[str, Path(max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
JobId = Annotated[int | None, Query(ge=1, le=2**63 - 1)]
Seq = Annotated[int, Query(ge=-1, le=2**31 - 1)]


@router.get("", response_model=RunPage)
def runs_page(
    db: Db,
    job_id: JobId = None,
    task: Annotated[str | None, Text] = None,
    state: Annotated[str | None, Text] = None,
    worker: Annotated[str | None, Text] = None,
    queue: Annotated[str | None, Text] = None,
    trigger: Annotated[str | None, Text] = None,
    parent_id: Annotated[str | None, Text] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> RunPage:
    """Runs newest first; follow ``next_cursor`` for the next page (null at the end).
    ``created_after`` is inclusive, ``created_before`` exclusive (both with a time zone)."""
    flt = RunFilter(
        job_id=job_id,
        task=task,
        state=state,
        worker=worker,
        queue=queue,
        trigger=trigger,
        parent_id=parent_id,
        created_after=created_after,
        created_before=created_before,
    )
    after = RunCursor.decode(cursor) if cursor else None
    rows, next_cursor = list_runs(db, flt, limit=limit, cursor=after)
    return RunPage(
        items=[RunOut.model_validate(row) for row in rows],
        next_cursor=next_cursor.encode() if next_cursor else None,
    )


@router.get("/{run_id}", response_model=RunDetail, responses=_ONE_RUN)
def run_detail(db: Db, run_id: RunId) -> RunDetail:
    return RunDetail.model_validate(get_run(db, run_id))


@router.get("/{run_id}/logs", response_model=RunLogOut, responses=_ONE_RUN)
def run_logs(db: Db, run_id: RunId, after_seq: Seq = -1) -> RunLogOut:
    """The run's output after ``after_seq``; poll with the returned ``last_seq``."""
    get_run(db, run_id)
    text, last_seq = run_service.run_log_text(db, run_id, after_seq=after_seq)
    return RunLogOut(text=text, last_seq=last_seq)


@router.get(
    "/{run_id}/logs/follow",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **_ONE_RUN},
)
def run_logs_follow(
    request: Request,
    db: Db,
    ctx: Ctx,
    run_id: RunId,
    after_seq: Annotated[int | None, Query(ge=-1, le=2**31 - 1)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """Server-Sent Events: a ``log`` event per chunk (``id`` is its sequence number, so a
    reconnecting ``EventSource`` resumes with ``Last-Event-ID``), a ``state`` event when the
    state changes, and a last ``end`` event once the run has reached a final state."""
    get_run(db, run_id)
    start = after_seq if after_seq is not None else _resume_from(last_event_id)
    return StreamingResponse(
        _follow(request, ctx, run_id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/{run_id}/revoke", response_model=RunActionOut, status_code=202, responses=_ACTION)
def run_revoke(
    run_id: RunId, _caller: ReleasedOperator, ctx: Ctx, celery: CeleryApp, actor: AuditActor
) -> RunActionOut:
    """Make sure a run that has not started never does (the revocation is stored, so even a
    worker that is offline now discards it). A running run: use ``terminate``."""
    return _action_out(run_service.revoke(ctx, celery, actor, run_id))


@router.post("/{run_id}/terminate", response_model=RunActionOut, status_code=202, responses=_ACTION)
def run_terminate(
    run_id: RunId,
    _caller: ReleasedOperator,
    ctx: Ctx,
    celery: CeleryApp,
    actor: AuditActor,
    body: Annotated[TerminateIn | None, Body()] = None,
) -> RunActionOut:
    """Stop a running run with ``signal`` (default SIGTERM; a shell task's whole process
    group); a run not started yet is revoked."""
    signal = (body or TerminateIn()).signal
    return _action_out(run_service.terminate(ctx, celery, actor, run_id, signal))


@router.post("/{run_id}/rerun", response_model=TaskSubmitted, status_code=202, responses=_ACTION)
def run_rerun(
    run_id: RunId,
    _caller: ReleasedOperator,
    ctx: Ctx,
    celery: CeleryApp,
    actor: AuditActor,
    body: Annotated[RerunIn | None, Body()] = None,
) -> TaskSubmitted:
    """A new run of the same task, now, with the same or the given args/kwargs/options; its
    ``reason`` is ``rerun of <id>``."""
    edits = body or RerunIn()
    done = run_service.rerun(ctx, celery, actor, run_id, edits.args, edits.kwargs, edits.options)
    return submitted(done)


def _action_out(action: RunAction) -> RunActionOut:
    return RunActionOut(
        id=action.run_id,
        action=action.action,
        state=action.state,
        detail=action.detail,
        children=action.children,
    )


def _resume_from(last_event_id: str | None) -> int:
    if last_event_id is not None and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return -1


def _event(name: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


async def _follow(
    request: Request, ctx: AppContext, run_id: str, after_seq: int
) -> AsyncIterator[str]:
    """Poll, emit, sleep; until the run is final (and its log read) or the client is gone.
    The database is read in a worker thread, in a short transaction per poll."""
    last, state, quiet = after_seq, None, 0.0
    yield "retry: 1000\n\n"
    while not await request.is_disconnected():
        now, rows = await run_in_threadpool(
            run_service.run_log_chunks, ctx, run_id, last, CHUNKS_PER_POLL
        )
        for row in rows:
            last = row.seq
            data = {"seq": row.seq, "at": row.at.isoformat(), "stream": row.stream}
            yield _event("log", {**data, "text": row.text}, row.seq)
        if now != state:
            state = now
            yield _event("state", {"state": state})
        if state is None or (RunState(state).is_final and len(rows) < CHUNKS_PER_POLL):
            yield _event("end", {"state": state, "last_seq": last})
            return
        if rows:
            quiet = 0.0
        elif quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keep-alive\n\n"
        if len(rows) < CHUNKS_PER_POLL:  # else more is waiting: read on at once
            await anyio.sleep(FOLLOW_POLL_S)
            quiet += FOLLOW_POLL_S
