"""The trivial task both workers of ``worker_overhead.py`` run: a plain Celery app, as a user
writes it. It records when it ran, so the benchmark measures the worker, not a result poll."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

app = Celery(
    "bare",
    broker=os.environ.get("BENCH_BROKER"),
    backend=os.environ.get("BENCH_BROKER"),
)
app.conf.update(
    task_default_queue=os.environ.get("BENCH_QUEUE", "bench"), worker_prefetch_multiplier=4
)
_client: redis.Redis | None = None


@app.task(name="bench.noop")
def noop(key: str) -> None:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_COUNTER"])
    _client.rpush(key, time.time())
