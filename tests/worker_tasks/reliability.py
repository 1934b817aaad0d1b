"""Tasks for the reliability tests: each records its executions in Redis, so a test can count
how often a run really executed (across worker processes)."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery, current_task
from celery.exceptions import SoftTimeLimitExceeded

app = Celery()


def _record(name: str) -> int:
    client = redis.Redis.from_url(os.environ["MAINSPRING_TEST_COUNTER_URL"])
    run_id = current_task.request.id
    return int(client.rpush(f"test:executions:{name}:{run_id}", str(time.time())))


@app.task
def count(name: str) -> int:
    """Record one execution."""
    return _record(name)


@app.task
def flaky(name: str, failures: int) -> int:
    """Fail the first ``failures`` executions, then succeed."""
    n = _record(name)
    if n <= failures:
        raise RuntimeError(f"planned failure {n} of {failures}")
    return n


@app.task
def slow(name: str, seconds: float) -> int:
    n = _record(name)
    time.sleep(seconds)
    return n


@app.task
def obey_soft_limit(name: str, seconds: float) -> str:
    """Sleep, but stop cleanly when the soft time limit strikes."""
    _record(name)
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "stopped at the soft limit"
    return "finished"


@app.task
def stall_first(name: str) -> int:
    """The first execution hangs (its worker is killed meanwhile); later ones return."""
    n = _record(name)
    if n == 1:
        time.sleep(120)
    return n


@app.task
def label(name: str, text: str) -> None:
    """Append ``text`` to a list, so a test sees the order runs executed in."""
    redis.Redis.from_url(os.environ["MAINSPRING_TEST_COUNTER_URL"]).rpush(
        f"test:order:{name}", text
    )
