"""Tasks for the tracking and recorder integration tests, loaded by a real worker with
``mainspring worker -I tests.tasks_for_tracking`` (run from the repository root)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from celery import Task, shared_task

logger = logging.getLogger("tests.tasks")


@shared_task(name="tests.print_lines")
def print_lines(count: int, width: int = 0) -> int:
    """Print ``count`` numbered lines (padded to ``width``), as a chatty script would."""
    for i in range(count):
        print(f"line {i:06d}".ljust(width))
    return count


@shared_task(name="tests.log_and_print")
def log_and_print(message: str) -> str:
    logger.info("logged %s", message)
    print(f"printed {message}")
    logger.warning("warned %s", message)
    return message


@shared_task(name="tests.slow_print")
def slow_print(first: str, pause: float, second: str) -> str:
    """Print, wait, print: the first line must be visible while the task still runs."""
    print(first)
    time.sleep(pause)
    print(second)
    return second


@shared_task(name="tasks.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="tests.sleep")
def sleep(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


@shared_task(name="tests.login")
def login(user: str, password: str, token: str | None = None) -> str:
    return f"logged in {user}"


@shared_task(bind=True, name="tests.fail")
def fail(self: Task, message: str) -> None:
    raise ValueError(message)


@shared_task(name="tests.fail_times")
def fail_times(counter_path: str, failures: int) -> int:
    """Fail the first ``failures`` executions (counted in a file), then return the count."""
    path = Path(counter_path)
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    if n <= failures:
        raise RuntimeError(f"planned failure {n} of {failures}")
    return n
