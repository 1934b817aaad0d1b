"""Exactly-once execution and retries on real workers: the duplicate-delivery guard, stored
revocations, and retries with backoff. Executions are counted in Redis by the tasks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mainspring.services.tasks import TaskOptions, revoke_run, submit_task
from mainspring.worker.task import RetryPolicy
from tests.conftest import WorkerPool
from tests.helpers import poll
from tests.worker_setup import TASKS, WorkerSetup

pytestmark = [pytest.mark.celery, pytest.mark.redis]  # counters live in Redis on both brokers


@pytest.fixture
def setup(
    broker_url: str, redis_url: str, data_dir: Path, worker_pool: WorkerPool
) -> Iterator[WorkerSetup]:
    s = WorkerSetup(broker_url, redis_url, data_dir, worker_pool)
    yield s
    s.close()


@pytest.mark.parametrize("expires", [None, 600], ids=["no-expiry", "expiry"])
def test_a_duplicate_delivery_of_one_run_executes_once(
    setup: WorkerSetup, expires: int | None
) -> None:
    """With an expiry Celery consults the guard on receipt too; the claim still happens once,
    when the run is about to execute."""
    worker = setup.start()
    run_id = str(uuid.uuid4())
    for _ in range(2):
        setup.app.send_task(
            f"{TASKS}.count", args=["dup"], task_id=run_id, queue="default", expires=expires
        )
    assert setup.app.AsyncResult(run_id).get(timeout=30) == 1
    poll(
        lambda: "already claimed; duplicate acked" in setup.pool.log(worker),
        timeout=30,
        what="the second delivery to be discarded",
    )
    assert setup.executions("dup", run_id) != []
    assert len(setup.executions("dup", run_id)) == 1


def test_a_run_revoked_while_its_worker_was_down_never_executes(setup: WorkerSetup) -> None:
    revoked = submit_task(setup.ctx, setup.app, f"{TASKS}.count", ["revoked"])
    revoke_run(setup.app, revoked.id)
    after = submit_task(setup.ctx, setup.app, f"{TASKS}.count", ["after"])
    setup.start()
    assert setup.app.AsyncResult(after.id).get(timeout=30) == 1
    poll(
        lambda: setup.app.AsyncResult(revoked.id).state == "REVOKED",
        timeout=30,
        what="the revoked run to be discarded",
    )
    assert setup.executions("revoked", revoked.id) == []


def test_a_running_run_is_started_in_the_result_backend(setup: WorkerSetup) -> None:
    """What the recorder's reconciliation reads when it missed ``task-started`` (on Redis the
    guard's claim writes it, elsewhere Celery's ``task_track_started``)."""
    worker = setup.start()
    handle = setup.app.send_task(f"{TASKS}.slow", args=["started", 2.0], queue="default")
    poll(lambda: handle.state == "STARTED", timeout=30, what="STARTED in the result backend")
    meta = setup.app.backend.get_task_meta(handle.id)
    assert meta["name"] == f"{TASKS}.slow"
    assert list(meta["args"]) == ["started", 2.0]
    assert meta["worker"] == worker
    assert meta["result"]["hostname"] == worker
    assert handle.get(timeout=30) == 1
    assert setup.app.backend.get_task_meta(handle.id)["status"] == "SUCCESS"


def _retrying(setup: WorkerSetup, failures: int, retries: int) -> Any:
    policy = RetryPolicy(retries=retries, backoff=0.3, backoff_max=5, jitter=True)
    return submit_task(
        setup.ctx,
        setup.app,
        f"{TASKS}.flaky",
        ["flaky", failures],
        options=TaskOptions(retry=policy),
    )


def test_retries_with_backoff_end_in_success(setup: WorkerSetup) -> None:
    setup.start()
    run = _retrying(setup, failures=2, retries=3)
    assert setup.app.AsyncResult(run.id).get(timeout=60) == 3
    times = setup.executions("flaky", run.id)
    assert len(times) == 3
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert first_gap >= 0.15  # 0.3 s with jitter: at least half of it
    assert second_gap >= 0.3  # 0.6 s with jitter: at least half of it


def test_retries_exhausted_end_in_failure(setup: WorkerSetup) -> None:
    setup.start()
    run = _retrying(setup, failures=10, retries=2)
    result = setup.app.AsyncResult(run.id)
    result.get(timeout=60, propagate=False)
    assert result.state == "FAILURE"
    assert "planned failure 3 of 10" in str(result.result)
    assert len(setup.executions("flaky", run.id)) == 3


def test_an_unknown_task_fails_its_run_and_the_worker_goes_on(setup: WorkerSetup) -> None:
    setup.start()
    unknown = setup.app.send_task("nobody.has.this", queue="default")
    unknown.get(timeout=30, propagate=False)
    assert unknown.state == "FAILURE"
    assert type(unknown.result).__name__ == "NotRegistered"
    after = submit_task(setup.ctx, setup.app, f"{TASKS}.count", ["after-unknown"])
    assert setup.app.AsyncResult(after.id).get(timeout=30) == 1
