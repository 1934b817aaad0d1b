"""Seed 002's ``tasks.py`` as its users wrote it: a plain Celery app and ``@app.task``.

The only change is the one documented in docs/workers.md: nothing here names Mainspring; the
worker runs these tasks because ``@app.task`` registers shared tasks on every app, Mainspring's
included. Each task returns the worker that ran it, so routing can be asserted.
"""

from __future__ import annotations

import builtins
import socket

from celery import Celery, current_task

app = Celery()


def _where() -> str:
    request = current_task.request if current_task else None
    return str(getattr(request, "hostname", None) or socket.gethostname())


@app.task
def add(x: int, y: int) -> list[object]:
    return [x + y, _where()]


@app.task
def reduce(x: int, y: int) -> list[object]:
    return [x - y, _where()]


@app.task
def sum(values: list[int]) -> list[object]:
    return [builtins.sum(int(v) for v in values), _where()]


@app.task
def other(x: int, y: int) -> list[object]:
    return [x * y, _where()]
