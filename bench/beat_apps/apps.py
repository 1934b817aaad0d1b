"""The Celery app each compared scheduler runs with, built from a JSON spec.

The spec (a dict) names the system (``beat``, ``dcb`` or ``redbeat``), the broker URL, the
RedBeat key prefix and, for celery beat's default scheduler only, the static schedule: that
scheduler reads its entries from configuration, so they must be known when it starts. The
others read theirs from PostgreSQL / Redis, stored by the bench beforehand.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.schedules import crontab, schedule

SCHEDULERS = {
    "beat": "celery.beat:PersistentScheduler",
    "dcb": "django_celery_beat.schedulers:DatabaseScheduler",
    "redbeat": "redbeat:RedBeatScheduler",
}
TASK = "bench.noop"  # never executed: the bench pops the messages itself


def every(seconds: float) -> schedule:
    """An interval that celery rounds down to whole seconds (``relative=True``): due at the
    first whole second at least ``seconds`` after the last run, i.e. anchored like cron."""
    return schedule(timedelta(seconds=seconds), relative=True)


def beat_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """One ``beat_schedule`` item; the job's name is its only argument, so that the consumer
    can tell which job a message belongs to."""
    if "cron" in entry:
        minute, hour = entry["cron"]
        when: Any = crontab(minute=str(minute), hour=str(hour))
    else:
        when = every(entry["every"])
    return {
        "task": TASK,
        "schedule": when,
        "args": [entry["name"]],
        "options": {"queue": entry["queue"]},
    }


def make_app(spec: dict[str, Any]) -> Celery:
    app = Celery("beat_compare", broker=spec["broker"])
    app.conf.update(
        timezone="UTC",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        beat_scheduler=SCHEDULERS[spec["system"]],
        redbeat_redis_url=spec["broker"],
        redbeat_key_prefix=spec.get("redbeat_prefix", "redbeat:"),
        beat_schedule={e["name"]: beat_entry(e) for e in spec.get("entries", [])},
    )
    return app


def load_spec() -> dict[str, Any]:
    """The spec the bench wrote for this process (path in ``BENCH_SPEC``)."""
    with open(os.environ["BENCH_SPEC"], encoding="utf-8") as handle:
        spec: dict[str, Any] = json.load(handle)
    return spec
