"""The recorder's bulk writes on SQLite, PostgreSQL and MySQL: events split over batches in
any order, repeated, or mixed with a stored run, give the same rows."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Job, Run, RunLog
from mainspring.recorder.service import Recorder
from mainspring.services import jobs as job_service
from mainspring.services.runs import run_log_text
from mainspring.settings import Settings

EVENTS: list[dict[str, Any]] = [
    {"type": "task-sent", "uuid": "r1", "name": "t.add", "queue": "q", "timestamp": 100.0},
    {"type": "task-received", "uuid": "r1", "hostname": "w1", "timestamp": 101.0, "retries": 0},
    {"type": "task-started", "uuid": "r1", "hostname": "w1", "pid": 7, "timestamp": 102.0},
    {"type": "task-log", "uuid": "r1", "seq": 0, "text": "one\n", "timestamp": 102.1},
    {"type": "task-log", "uuid": "r1", "seq": 1, "text": "two\n", "timestamp": 102.2},
    {"type": "task-succeeded", "uuid": "r1", "runtime": 0.5, "timestamp": 102.5},
]


@pytest.fixture
def any_ctx(database_url: str, data_dir: Path) -> Iterator[AppContext]:
    ctx = AppContext.open(Settings(data_dir=data_dir, database_url=database_url))
    yield ctx
    ctx.close()


def _record(ctx: AppContext, batches: list[list[dict[str, Any]]]) -> None:
    recorder = Recorder(ctx, app=None)
    for batch in batches:
        for event in batch:
            recorder.handle(event)
        assert recorder.flush() is True


def _row(ctx: AppContext, run_id: str) -> tuple[Any, ...]:
    with ctx.session() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return (
            run.state,
            run.task,
            run.queue,
            run.worker,
            run.worker_pid,
            run.sent_at,
            run.started_at,
            run.finished_at,
            run.runtime_ms,
            run.result,
            run.log_bytes,
            run_log_text(session, run_id),
        )


def _wipe(ctx: AppContext) -> None:
    with ctx.session() as session:
        session.execute(RunLog.__table__.delete())
        session.execute(Run.__table__.delete())


def test_events_split_over_batches_in_any_order_give_the_same_row(any_ctx: AppContext) -> None:
    _record(any_ctx, [EVENTS])
    expected = _row(any_ctx, "r1")
    assert expected[:5] == ("SUCCESS", "t.add", "q", "w1", 7)
    assert expected[5] == datetime.fromtimestamp(100.0, UTC)
    assert expected[8] == 500.0
    assert expected[11] == ("one\ntwo\n", 1)
    orders = list(itertools.permutations(EVENTS))[::97]  # a spread of the 720 orders
    for order in orders:
        _wipe(any_ctx)
        # one event per batch, then everything again in one batch (a replay)
        _record(any_ctx, [[event] for event in order] + [list(order)])
        assert _row(any_ctx, "r1") == expected


def test_a_chunk_delivered_twice_in_one_batch_is_stored_once(any_ctx: AppContext) -> None:
    _record(any_ctx, [[EVENTS[0], EVENTS[3], EVENTS[3], EVENTS[4]]])
    with any_ctx.session() as session:
        seqs = session.scalars(select(RunLog.seq).where(RunLog.run_id == "r1")).all()
        run = session.get(Run, "r1")
        assert run is not None
        assert sorted(seqs) == [0, 1]
        assert run.log_bytes == len("one\ntwo\n")
        assert run.trigger == TriggerSource.EXTERNAL.value


def test_a_stored_job_run_is_merged_and_its_job_shows_the_end(any_ctx: AppContext) -> None:
    now = datetime.now(UTC)
    spec = job_service.JobSpec(name="j", task="t.add", trigger={"kind": "manual"}, timezone="UTC")
    with any_ctx.session() as session:
        job_id = job_service.create_job(session, spec).id
        session.add(
            Run(
                id="r1",
                job_id=job_id,
                task="t.add",
                args=[1, 2],
                options={"expires": 60},
                state=RunState.SENT.value,
                attempt=0,
                trigger=TriggerSource.API.value,
                created_at=now,
                sent_at=now,
                updated_at=now,
                log_bytes=0,
                log_truncated=False,
            )
        )
    late_start = {**EVENTS[2], "timestamp": 200.0}
    _record(any_ctx, [[EVENTS[5]], [late_start, EVENTS[1]]])
    with any_ctx.session() as session:
        run = session.get(Run, "r1")
        job = session.get(Job, job_id)
        assert run is not None
        assert job is not None
        assert (run.state, run.trigger, run.job_id) == ("SUCCESS", "api", job_id)
        assert run.options["expires"] == 60  # others' options kept
        assert run.sent_at == now  # the stored instant is earlier than the event's
        assert run.args == [1, 2]
        assert run.result is None
        assert (job.last_state, job.last_run_id) == ("SUCCESS", "r1")


def test_a_result_arriving_after_an_empty_one_is_stored(any_ctx: AppContext) -> None:
    """No value is written as SQL NULL (not JSON null), so a later value still lands."""
    recorder = Recorder(any_ctx, app=None)
    recorder.handle(EVENTS[0])
    assert recorder.flush() is True
    with any_ctx.session() as session:
        stored_null = session.scalar(select(Run.id).where(Run.result.is_(None)))
        assert stored_null == "r1"
    recorder.submit([_result_patch("r1", {"sum": 3})])
    assert recorder.flush() is True
    with any_ctx.session() as session:
        run = session.get(Run, "r1")
        assert run is not None
        assert run.result == {"sum": 3}


def _result_patch(run_id: str, result: Any) -> Any:
    from mainspring.recorder.fold import RunPatch

    patch = RunPatch(run_id=run_id, state=RunState.SUCCESS)
    patch.values["result"] = result
    return patch
