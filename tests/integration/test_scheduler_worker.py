"""Scheduled fires meet M4's worker contract: target worker, options, broadcast, guard keys."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.db.models import Run
from mainspring.scheduler.firing import DueRun
from mainspring.scheduler.publisher import CeleryPublisher
from mainspring.scheduler.service import Scheduler
from mainspring.services import jobs as job_service
from mainspring.services.tasks import live_queues
from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from mainspring.worker.routing import host_queue
from mainspring.worker.task import RETRY_HEADER
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
        self.control = make_celery(self.settings)  # the scheduler's, as ``mainspring scheduler``
        self.ctx = AppContext.open(self.settings)
        self.redis = redis.Redis.from_url(redis_url)
        self.pool = pool
        self.publisher = CeleryPublisher(self.app)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def worker(self, queue: str) -> str:
        name = f"{uuid.uuid4().hex[:6]}@sched"
        return self.pool.start(
            self.env, "-P", "threads", "-c", "2", "-I", TASKS, "-Q", queue, name=name
        )

    def job(self, name: str, task: str, **fields: Any) -> int:
        at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        spec = job_service.JobSpec(
            name=name,
            task=f"{TASKS}.{task}",
            trigger={"kind": "interval", "every_ms": 60_000, "anchor": at},
            timezone="UTC",
            max_runs=1,
            **fields,
        )
        with self.ctx.session() as session:
            return job_service.create_job(session, spec).id

    def start_scheduler(self) -> None:
        # Generous: on a loaded 2-core CI machine replies can take longer than production's 0.5 s.
        live = partial(live_queues, self.control, 3.0)
        scheduler = Scheduler(self.ctx, self.publisher, poll_interval=0.2, live_workers=live)
        self._thread = threading.Thread(target=scheduler.run, args=(self._stop,), daemon=True)
        self._thread.start()

    def runs(self, **where: Any) -> list[Run]:
        with self.ctx.session() as session:
            return list(session.scalars(select(Run).filter_by(**where)))

    def executions(self, name: str, run_id: str) -> int:
        return int(self.redis.llen(f"test:executions:{name}:{run_id}"))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            assert not self._thread.is_alive(), "the scheduler thread did not stop"
        self.publisher.close()
        self.control.close()
        self.app.close()
        self.ctx.close()


@pytest.fixture
def setup(redis_url: str, data_dir: Path, worker_pool: WorkerPool) -> Iterator[Setup]:
    s = Setup(redis_url, data_dir, worker_pool)
    try:
        yield s
    finally:
        s.close()


def test_prepared_message_carries_the_run_id_options_and_fire_headers(setup: Setup) -> None:
    due = datetime(2030, 1, 1, tzinfo=UTC)
    run = DueRun(
        run_id="run-1", job_id=7, task="t.x", args=[1], kwargs={}, queue=host_queue("b@h"),
        due=due, window_start=None, window_end=due, parent_id=None,
        options={"retry": {"retries": 2, "backoff": 0.5}, "expires": 60, "priority": 8,
                 "time_limit": 30},
    )  # fmt: skip
    message = setup.publisher.prepare(run)
    headers = message.headers
    assert (headers["id"], headers["task"], headers["retries"]) == ("run-1", "t.x", 0)
    assert headers[RETRY_HEADER]["retries"] == 2
    assert datetime.fromisoformat(headers["expires"]) == due + timedelta(seconds=60)
    assert headers["timelimit"] == [30, None]
    assert headers["mainspring_scheduled_for"] == due.isoformat()
    assert message.properties["priority"] == 1  # Redis polls low numbers first: 9 - 8
    ((command, (key, _payload)),) = message.commands
    assert command == "lpush"
    assert key.startswith(host_queue("b@h"))


def test_a_job_runs_on_its_target_worker_with_its_retry_policy(setup: Setup) -> None:
    setup.worker("sched")
    target = setup.worker("sched")
    job_id = setup.job(
        "targeted",
        "flaky",
        args=["targeted", 1],
        queue="sched",
        target_worker=target,
        options={"retry": {"retries": 2, "backoff": 0.1, "jitter": False}, "priority": 3},
    )
    setup.start_scheduler()
    (run,) = poll(lambda: setup.runs(job_id=job_id), timeout=15, what="the fire's run")
    assert run.queue == host_queue(target)
    assert setup.app.AsyncResult(run.id).get(timeout=30) == 2  # failed once, retried once
    assert setup.app.backend.get_task_meta(run.id)["worker"] == target
    assert setup.executions("targeted", run.id) == 2


def test_a_broadcast_job_fires_once_on_every_live_worker_of_its_queue(setup: Setup) -> None:
    workers = sorted([setup.worker("scan"), setup.worker("scan")])
    setup.worker("elsewhere")
    job_id = setup.job("scan-all", "count", args=["scan"], queue="scan", broadcast=True)
    setup.start_scheduler()
    (parent,) = poll(lambda: setup.runs(job_id=job_id), timeout=15, what="the parent run")
    children = poll(
        lambda: [c for c in setup.runs(parent_id=parent.id) if c.state != "SCHEDULED"],
        timeout=15,
        what="children published",
    )
    assert parent.options["targets"] == 2
    assert sorted(c.queue or "" for c in children) == [host_queue(w) for w in workers]
    for child in children:
        assert setup.app.AsyncResult(child.id).get(timeout=30) == 1
        assert setup.app.backend.get_task_meta(child.id)["worker"] == child.queue.removeprefix(
            "host."
        )
        assert setup.executions("scan", child.id) == 1
