"""Per-run reliability options on real workers, on Redis and on RabbitMQ: soft and hard time
limits, expiry, priority, warm shutdown, and late acknowledgement when a worker dies."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mainspring.services.tasks import TaskOptions, submit_task
from tests.conftest import WorkerPool
from tests.helpers import poll
from tests.worker_setup import TASKS, WorkerSetup

pytestmark = [pytest.mark.celery, pytest.mark.redis]  # counters live in Redis on both brokers


@pytest.fixture
def setup(
    broker_url: str, redis_url: str, data_dir: Path, worker_pool: WorkerPool
) -> Iterator[WorkerSetup]:
    s = WorkerSetup(
        broker_url,
        redis_url,
        data_dir,
        worker_pool,
        queue_max_priority=9,
        broker_visibility_timeout_s=3,
    )
    yield s
    s.close()


def test_soft_time_limit_lets_the_task_stop_cleanly(setup: WorkerSetup) -> None:
    setup.start(pool="prefork")
    options = TaskOptions(soft_time_limit=0.5, time_limit=30)
    run = submit_task(
        setup.ctx, setup.app, f"{TASKS}.obey_soft_limit", ["soft", 30], options=options
    )
    assert setup.app.AsyncResult(run.id).get(timeout=30) == "stopped at the soft limit"


def test_hard_time_limit_kills_the_run_and_the_worker_goes_on(setup: WorkerSetup) -> None:
    setup.start(pool="prefork")
    killed = submit_task(
        setup.ctx, setup.app, f"{TASKS}.stall_first", ["hard"], options=TaskOptions(time_limit=1)
    )
    result = setup.app.AsyncResult(killed.id)
    result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "TimeLimitExceeded"
    after = submit_task(setup.ctx, setup.app, f"{TASKS}.count", ["after-hard"])
    assert setup.app.AsyncResult(after.id).get(timeout=30) == 1


def test_an_expired_run_is_never_started(setup: WorkerSetup) -> None:
    sent_at = time.monotonic()
    expired = submit_task(
        setup.ctx, setup.app, f"{TASKS}.count", ["expired"], options=TaskOptions(expires=0.5)
    )
    poll(lambda: time.monotonic() - sent_at > 1.0, timeout=5, what="the expiry to pass")
    later = submit_task(setup.ctx, setup.app, f"{TASKS}.count", ["later"])
    setup.start()
    assert setup.app.AsyncResult(later.id).get(timeout=30) == 1  # the queue was drained
    assert setup.executions("expired", expired.id) == []
    # Redis hands the message to the worker, which revokes it; RabbitMQ drops it itself
    # (the recorder then marks the run EXPIRED: see test_recorder_expiry).
    assert setup.app.AsyncResult(expired.id).state in {"REVOKED", "PENDING"}


def test_higher_priority_runs_go_first(setup: WorkerSetup) -> None:
    for i in range(3):
        submit_task(
            setup.ctx,
            setup.app,
            f"{TASKS}.label",
            ["prio", f"low{i}"],
            options=TaskOptions(priority=1),
        )
    for i in range(3):
        submit_task(
            setup.ctx,
            setup.app,
            f"{TASKS}.label",
            ["prio", f"high{i}"],
            options=TaskOptions(priority=8),
        )
    setup.start()
    order = poll(lambda: len(setup.labels("prio")) == 6 and setup.labels("prio"), timeout=30)
    assert sorted(order[:3]) == ["high0", "high1", "high2"], order


def test_warm_shutdown_lets_the_running_task_finish(setup: WorkerSetup) -> None:
    worker = setup.start()
    run = submit_task(setup.ctx, setup.app, f"{TASKS}.slow", ["warm", 2.0])
    poll(lambda: setup.executions("warm", run.id), timeout=30, what="the run to start")
    assert setup.pool.stop(worker) == []
    assert setup.app.AsyncResult(run.id).get(timeout=10) == 1
    assert "Warm shutdown" in setup.pool.log(worker)


def test_late_ack_run_is_redelivered_when_its_worker_dies(setup: WorkerSetup) -> None:
    first = setup.start("--acks-late")
    run = submit_task(setup.ctx, setup.app, f"{TASKS}.stall_first", ["late"])
    poll(lambda: setup.executions("late", run.id), timeout=30, what="the first execution")
    victim = setup.pool.procs.pop(first)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    setup.start("--acks-late")
    assert setup.app.AsyncResult(run.id).get(timeout=60) == 2
    assert len(setup.executions("late", run.id)) == 2
