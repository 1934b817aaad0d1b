"""Tasks for the workflow tests: seed 002's ``add``/``sum`` returning plain numbers (as the
seed's own ``tasks.py`` does), plus a failing and a recording task."""

from __future__ import annotations

import builtins
from typing import Any

from celery import shared_task


@shared_task(name="tasks.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="tasks.sum")
def sum(values: list[int]) -> int:
    return builtins.sum(int(v) for v in values)


@shared_task(name="tasks.mul")
def mul(x: int, y: int) -> int:
    return x * y


@shared_task(name="tasks.fail")
def fail(*args: Any, message: str = "boom") -> None:
    raise ValueError(message)


@shared_task(name="tasks.record")
def record(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Returns what it was given (a dependency child shows the upstream result here)."""
    return {"args": list(args), "kwargs": kwargs}


@shared_task(name="tasks.sleep")
def sleep(seconds: float, value: Any = None) -> Any:
    import time

    time.sleep(seconds)
    return value


@shared_task(name="tasks.flaky")
def flaky(value: Any, marker: str) -> Any:
    """Fails the first time (creating ``marker``), succeeds afterwards: a step to retry."""
    import os

    if not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write("failed once\n")
        raise RuntimeError("first attempt fails")
    return value
