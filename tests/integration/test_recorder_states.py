"""Every lifecycle state, reached by a real task on a real worker and recorded by the recorder,
on Redis and on RabbitMQ: SUCCESS, FAILURE, RETRY then SUCCESS, REVOKED, a time limit, LOST
(worker SIGKILLed mid-task) and EXPIRED."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from celery import Celery

from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Run, Worker
from mainspring.services.tasks import TaskOptions, revoke_run, submit_task
from mainspring.worker.task import RetryPolicy
from tests.conftest import RecordingSystem
from tests.helpers import poll

pytestmark = pytest.mark.celery


@pytest.fixture
def system(broker_url: str, recording: Callable[[str], RecordingSystem]) -> RecordingSystem:
    system = recording(broker_url)
    system.start_recorder(worker_timeout=4.0)
    return system


def _in_state(system: RecordingSystem, run_id: str, *states: RunState) -> Run | None:
    with system.ctx.session() as session:
        run = session.get(Run, run_id)
        return run if run is not None and run.state in {s.value for s in states} else None


def _wait(system: RecordingSystem, run_id: str, state: RunState, timeout: float = 60) -> Run:
    return poll(lambda: _in_state(system, run_id, state), timeout=timeout, what=f"{state}")


def _online(system: RecordingSystem, name: str) -> None:
    def check() -> bool:
        with system.ctx.session() as session:
            worker = session.get(Worker, name)
            return worker is not None and worker.status == "online"

    poll(check, timeout=60, what=f"worker {name} online")


def test_success_and_failure_are_recorded_with_result_and_error(system: RecordingSystem) -> None:
    _online(system, system.start_worker())
    ok = submit_task(system.ctx, system.app, "tasks.add", [2, 3])
    bad = submit_task(system.ctx, system.app, "tests.fail", ["boom"])
    run = _wait(system, ok.id, RunState.SUCCESS)
    assert run.result == 5
    assert run.worker is not None
    assert run.started_at is not None
    assert run.finished_at is not None
    assert run.runtime_ms is not None
    assert run.runtime_ms >= 0
    failed = _wait(system, bad.id, RunState.FAILURE)
    assert failed.exception_type == "ValueError"
    assert failed.exception_message == "boom"
    assert "raise ValueError" in (failed.traceback or "")


def test_a_retried_run_counts_its_attempts_and_ends_in_success(
    system: RecordingSystem, tmp_path: Path
) -> None:
    _online(system, system.start_worker())
    counter = tmp_path / "attempts"
    policy = RetryPolicy(retries=3, backoff=0.2, jitter=False)
    run = submit_task(
        system.ctx,
        system.app,
        "tests.fail_times",
        [str(counter), 2],
        options=TaskOptions(retry=policy),
    )
    done = _wait(system, run.id, RunState.SUCCESS)
    assert done.result == 3
    assert done.attempt == 2
    assert done.trigger == TriggerSource.API.value


def test_a_revoked_run_is_recorded_revoked_and_never_runs(system: RecordingSystem) -> None:
    _online(system, system.start_worker(concurrency=1))
    blocker = submit_task(system.ctx, system.app, "tests.sleep", [3.0])
    queued = submit_task(system.ctx, system.app, "tasks.add", [1, 1])
    _wait(system, blocker.id, RunState.STARTED)
    revoke_run(system.app, queued.id)
    run = _wait(system, queued.id, RunState.REVOKED)
    assert run.started_at is None
    assert run.result is None


def test_a_run_over_its_time_limit_fails_with_the_limit(system: RecordingSystem) -> None:
    _online(system, system.start_worker(pool="prefork", concurrency=1))
    run = submit_task(
        system.ctx, system.app, "tests.sleep", [60.0], options=TaskOptions(time_limit=1)
    )
    failed = _wait(system, run.id, RunState.FAILURE)
    assert failed.exception_type == "TimeLimitExceeded"


def test_a_run_on_a_killed_worker_ends_lost(system: RecordingSystem) -> None:
    name = system.start_worker(pool="prefork", concurrency=1)
    _online(system, name)
    run = submit_task(system.ctx, system.app, "tests.sleep", [120.0])
    _wait(system, run.id, RunState.STARTED)
    proc = system.workers.pop(name)
    os.killpg(proc.pid, signal.SIGKILL)  # no worker-offline event: only silence tells
    proc.wait(timeout=10)
    lost = _wait(system, run.id, RunState.LOST)
    assert name in (lost.exception_message or "")


def test_a_run_that_expired_before_any_worker_took_it_ends_expired(
    system: RecordingSystem,
) -> None:
    sent = time.monotonic()
    run = submit_task(system.ctx, system.app, "tasks.add", [1, 2], options=TaskOptions(expires=0.5))
    poll(lambda: time.monotonic() - sent > 1.0, timeout=5, what="the expiry to pass")
    system.start_worker()
    # Redis: the worker discards it (task-revoked, expired); RabbitMQ drops it and the
    # recorder's reconciliation ends it a grace period after its expiry.
    expired = _wait(system, run.id, RunState.EXPIRED)
    assert expired.started_at is None


def test_a_plain_celery_clients_task_is_recorded(system: RecordingSystem) -> None:
    _online(system, system.start_worker(queues="celery,default"))
    backend = f"db+{system.settings.resolved_database_url}"
    if system.broker_url.startswith("redis"):
        backend = system.broker_url
    client = Celery("plain", broker=system.broker_url, backend=backend)
    client.conf.task_send_sent_event = True  # the one setting a plain client needs
    try:
        handle = client.send_task("tasks.add", args=[20, 22])
        assert handle.get(timeout=60) == 42
    finally:
        client.close()
    run = _wait(system, handle.id, RunState.SUCCESS)
    assert run.args == [20, 22]
    assert run.result == 42
    assert run.trigger == TriggerSource.EXTERNAL.value
