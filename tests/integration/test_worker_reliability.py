"""Exactly-once execution and retries on real workers: the duplicate-delivery guard, stored
revocations, and retries with backoff. Executions are counted in Redis by the tasks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from mainspring.context import AppContext
from mainspring.services.tasks import TaskOptions, revoke_run, submit_task
from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from mainspring.worker.task import RetryPolicy
from tests.conftest import WorkerPool
from tests.helpers import poll

pytestmark = [pytest.mark.celery, pytest.mark.redis]

TASKS = "tests.worker_tasks.reliability"


class Setup:
    def __init__(self, redis_url: str, data_dir: Path, pool: WorkerPool) -> None:
        self.env = {
            "MAINSPRING_DATA_DIR": str(data_dir),
            "MAINSPRING_BROKER_URL": redis_url,
            "MAINSPRING_TEST_COUNTER_URL": redis_url,
        }
        self.settings = Settings(data_dir=data_dir, broker_url=redis_url)
        self.app = make_celery(self.settings)
        self.ctx = AppContext.open(self.settings)
        self.redis = redis.Redis.from_url(redis_url)
        self.pool = pool

    def start(self, *args: str) -> str:
        return self.pool.start(self.env, "-P", "threads", "-c", "1", "-I", TASKS, *args)

    def executions(self, name: str, run_id: str) -> list[float]:
        return [float(x) for x in self.redis.lrange(f"test:executions:{name}:{run_id}", 0, -1)]


@pytest.fixture
def setup(redis_url: str, data_dir: Path, worker_pool: WorkerPool) -> Iterator[Setup]:
    s = Setup(redis_url, data_dir, worker_pool)
    yield s
    s.app.close()
    s.ctx.close()


def test_a_duplicate_delivery_of_one_run_executes_once(setup: Setup) -> None:
    worker = setup.start()
    run_id = str(uuid.uuid4())
    for _ in range(2):
        setup.app.send_task(f"{TASKS}.count", args=["dup"], task_id=run_id, queue="default")
    assert setup.app.AsyncResult(run_id).get(timeout=30) == 1
    poll(
        lambda: "already claimed; duplicate acked" in setup.pool.log(worker),
        timeout=30,
        what="the second delivery to be discarded",
    )
    assert setup.executions("dup", run_id) != []
    assert len(setup.executions("dup", run_id)) == 1


def test_a_run_revoked_while_its_worker_was_down_never_executes(setup: Setup) -> None:
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


def _retrying(setup: Setup, failures: int, retries: int) -> Any:
    policy = RetryPolicy(retries=retries, backoff=0.3, backoff_max=5, jitter=True)
    return submit_task(
        setup.ctx,
        setup.app,
        f"{TASKS}.flaky",
        ["flaky", failures],
        options=TaskOptions(retry=policy),
    )


def test_retries_with_backoff_end_in_success(setup: Setup) -> None:
    setup.start()
    run = _retrying(setup, failures=2, retries=3)
    assert setup.app.AsyncResult(run.id).get(timeout=60) == 3
    times = setup.executions("flaky", run.id)
    assert len(times) == 3
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert first_gap >= 0.15  # 0.3 s with jitter: at least half of it
    assert second_gap >= 0.3  # 0.6 s with jitter: at least half of it


def test_retries_exhausted_end_in_failure(setup: Setup) -> None:
    setup.start()
    run = _retrying(setup, failures=10, retries=2)
    result = setup.app.AsyncResult(run.id)
    result.get(timeout=60, propagate=False)
    assert result.state == "FAILURE"
    assert "planned failure 3 of 10" in str(result.result)
    assert len(setup.executions("flaky", run.id)) == 3
