"""The trivial task of ``recorder_keepup.py``, loaded by ``mainspring worker -I recorder_tasks``
(with ``bench/`` on ``PYTHONPATH``)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="bench.trivial")
def trivial(n: int) -> int:
    return n
