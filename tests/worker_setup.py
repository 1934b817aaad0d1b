"""A test's own little system for worker tests: settings on one broker, the Mainspring Celery
app to submit with, and the Redis where the test tasks count their executions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from mainspring.context import AppContext
from mainspring.settings import Settings
from mainspring.worker.app import make_celery
from tests.conftest import WorkerPool

TASKS = "tests.worker_tasks.reliability"


class WorkerSetup:
    def __init__(
        self,
        broker_url: str,
        redis_url: str,
        data_dir: Path,
        pool: WorkerPool,
        **settings: Any,
    ) -> None:
        self.env = {
            "MAINSPRING_DATA_DIR": str(data_dir),
            "MAINSPRING_BROKER_URL": broker_url,
            "MAINSPRING_TEST_COUNTER_URL": redis_url,
        }
        for key, value in settings.items():
            self.env[f"MAINSPRING_{key.upper()}"] = str(value)
        self.settings = Settings(data_dir=data_dir, broker_url=broker_url, **settings)
        self.app = make_celery(self.settings)
        self.ctx = AppContext.open(self.settings)
        self.redis = redis.Redis.from_url(redis_url)
        self.pool = pool

    def start(self, *args: str, pool: str = "threads", name: str = "") -> str:
        """A worker with concurrency 1 and the test tasks, ready when this returns."""
        return self.pool.start(self.env, "-P", pool, "-c", "1", "-I", TASKS, *args, name=name)

    def executions(self, name: str, run_id: str) -> list[float]:
        return [float(x) for x in self.redis.lrange(f"test:executions:{name}:{run_id}", 0, -1)]

    def labels(self, name: str) -> list[str]:
        return [x.decode() for x in self.redis.lrange(f"test:order:{name}", 0, -1)]

    def close(self) -> None:
        self.app.close()
        self.ctx.close()
