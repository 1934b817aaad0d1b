"""The recorder with real workers: plain-Celery clients, masking, reconciliation after a
recorder outage, lost runs of a killed worker, and the workers registry."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest
from celery import Celery
from sqlalchemy import select

from mainspring.core.states import RunState, TriggerSource, WorkerStatus
from mainspring.db.models import Run, Worker
from mainspring.services.clock import utcnow
from tests.conftest import RecordingSystem
from tests.helpers import poll

pytestmark = pytest.mark.celery


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    request.applymarker(getattr(pytest.mark, request.param))
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def redis_system(recording: Callable[[str], RecordingSystem], redis_url: str) -> RecordingSystem:
    return recording(redis_url)


def _run(system: RecordingSystem, run_id: str) -> Run | None:
    with system.ctx.session() as session:
        return session.get(Run, run_id)


def _worker_online(system: RecordingSystem, hostname: str) -> bool:
    with system.ctx.session() as session:
        worker = session.get(Worker, hostname)
        return worker is not None and worker.status == "online"


def _in_state(system: RecordingSystem, run_id: str, *states: RunState) -> Run | None:
    run = _run(system, run_id)
    return run if run is not None and run.state in {s.value for s in states} else None


@pytest.mark.redis
def test_plain_celery_client_task_is_recorded_with_args_worker_and_result(
    redis_system: RecordingSystem,
) -> None:
    system = redis_system
    system.start_recorder()
    worker = system.start_worker(queues="celery,default")
    # On Redis, events are pub/sub: wait until the recorder listens (it has seen the worker).
    poll(lambda: _worker_online(system, worker), timeout=60, what="the worker's online event")
    client = Celery("x", broker=system.broker_url, backend=system.broker_url)
    client.conf.task_send_sent_event = True  # the one setting a plain client needs

    @client.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    try:
        result = add.delay(1, 2)
        assert result.get(timeout=60) == 3
    finally:
        client.close()
    run = poll(
        lambda: (r := _in_state(system, result.id, RunState.SUCCESS)) and r.result == 3 and r,
        timeout=30,
        what="the external run with its result",
    )
    assert run.trigger == TriggerSource.EXTERNAL.value
    assert run.task == "tasks.add"
    assert run.args == [1, 2]
    assert run.kwargs == {}
    assert run.options["args_repr"] == "(1, 2)"
    assert run.worker == worker
    assert run.queue == "celery"
    assert run.sent_at is not None
    assert run.started_at is not None
    assert run.finished_at is not None


@pytest.mark.redis
def test_secrets_are_masked_in_created_and_updated_runs(redis_system: RecordingSystem) -> None:
    system = redis_system
    now = utcnow()
    with system.ctx.session() as session:
        session.add(
            Run(
                id="known-run",
                task="tests.login",
                kwargs={"user": "ops", "password": "hunter2"},
                state=RunState.SENT.value,
                trigger=TriggerSource.API.value,
                options={},
                created_at=now,
                updated_at=now,
            )
        )
    system.start_recorder()
    system.start_worker()
    kwargs = {"user": "ops", "password": "hunter2", "token": "t0ken"}
    known = system.app.send_task("tests.login", kwargs=kwargs, task_id="known-run")
    fresh = system.app.send_task("tests.login", args=["ops"], kwargs={"password": "hunter2"})
    for handle in (known, fresh):
        run = poll(
            lambda h=handle: (r := _in_state(system, h.id, RunState.SUCCESS)) and r.kwargs and r,
            timeout=60,
            what="a finished login run",
        )
        stored = repr((run.args, run.kwargs, run.options))
        assert "hunter2" not in stored
        assert "t0ken" not in stored
        assert run.kwargs is not None
        assert run.kwargs["password"] == "***"
        assert run.result == "logged in ops"


def test_runs_that_finished_while_the_recorder_was_down_get_their_final_state(
    broker_url: str, recording: Callable[[str], RecordingSystem]
) -> None:  # broker first: its vhost must outlive the recording system at teardown
    system = recording(broker_url)
    system.start_recorder()
    system.start_worker(concurrency=3)
    ok = system.app.send_task("tests.sleep", args=[3.0, "done"])
    bad = system.app.send_task("tests.fail", args=["boom"])
    poll(lambda: _in_state(system, ok.id, RunState.STARTED), timeout=60, what="ok started")
    poll(lambda: _in_state(system, bad.id, RunState.FAILURE), timeout=60, what="bad failed")
    system.stop_recorder()
    # Events sent from now on go to a queue no recorder reads: only reconciliation can help.
    system.queue_node = f"{system.queue_node}-after"
    assert ok.get(timeout=60) == "done"
    with system.ctx.session() as session:
        assert session.get(Run, ok.id).state == RunState.STARTED.value  # type: ignore[union-attr]
    system.start_recorder()
    run = poll(lambda: _in_state(system, ok.id, RunState.SUCCESS), timeout=30, what="SUCCESS")
    assert run.result == "done"
    assert run.finished_at is not None
    assert run.started_at is not None
    assert run.finished_at > run.started_at
    failed = _run(system, bad.id)
    assert failed is not None
    assert failed.exception_type == "ValueError"
    assert "boom" in (failed.traceback or "")


@pytest.mark.redis
def test_run_of_a_killed_worker_is_lost(redis_system: RecordingSystem) -> None:
    system = redis_system
    system.start_recorder(worker_timeout=4.0)
    name = system.start_worker(pool="prefork", concurrency=1)
    handle = system.app.send_task("tests.sleep", args=[120.0])
    poll(lambda: _in_state(system, handle.id, RunState.STARTED), timeout=60, what="started")
    proc = system.workers.pop(name)
    os.killpg(proc.pid, signal.SIGKILL)  # no worker-offline event: only silence tells
    proc.wait(timeout=10)
    run = poll(lambda: _in_state(system, handle.id, RunState.LOST), timeout=30, what="LOST")
    assert name in (run.exception_message or "")
    assert run.finished_at is not None
    with system.ctx.session() as session:
        worker = session.get(Worker, name)
        assert worker is not None
        assert worker.status == WorkerStatus.OFFLINE.value


@pytest.mark.redis
def test_workers_registry_has_queues_tasks_pool_and_status(
    redis_system: RecordingSystem,
) -> None:
    system = redis_system
    system.start_recorder()
    name = system.start_worker(pool="threads", concurrency=3, queues="default,reports")

    def registered() -> Worker | None:
        with system.ctx.session() as session:
            worker = session.get(Worker, name)
            return worker if worker is not None and worker.registered_tasks else None

    worker = poll(registered, timeout=60, what="the worker's inspection")
    assert worker.status == WorkerStatus.ONLINE.value
    assert {"default", "reports"} <= set(worker.queues)
    assert "tests.print_lines" in worker.registered_tasks
    assert "mainspring.shell" in worker.registered_tasks
    assert worker.pool == "threads"
    assert worker.concurrency == 3
    assert worker.last_heartbeat_at is not None
    assert system.stop_worker(name) == []

    def offline() -> bool:
        with system.ctx.session() as session:
            rows = session.scalars(select(Worker.status).where(Worker.hostname == name)).all()
            return list(rows) == [WorkerStatus.OFFLINE.value]

    poll(offline, timeout=30, what="the worker to be offline")
