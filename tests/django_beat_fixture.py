"""A django-celery-beat database made by django-celery-beat itself: ``python -m
tests.django_beat_fixture DATABASE_URL`` configures a minimal Django project on that database
(SQLite file or PostgreSQL), runs django-celery-beat's migrations and stores the schedules and
periodic tasks below through its models, as the Django admin would.

It runs in a process of its own because Django's settings are global and can be configured
once per process; the importer under test then reads the tables without Django.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit


def django_database(url: str) -> dict[str, Any]:
    """Django's ``DATABASES['default']`` for a SQLite or PostgreSQL URL."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parts.path[1:]}
    if parts.scheme.startswith("postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": parts.username or "",
            "PASSWORD": parts.password or "",
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    raise SystemExit(f"unsupported database URL {url!r}")


def setup(url: str) -> None:
    import django
    from django.conf import settings
    from django.core.management import call_command

    settings.configure(
        DATABASES={"default": django_database(url)},
        INSTALLED_APPS=["django_celery_beat"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    call_command("migrate", "django_celery_beat", verbosity=0, interactive=False)


def fill() -> None:
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    every_10s = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    every_2h = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.HOURS)
    at_4 = CrontabSchedule.objects.create(minute="0", hour="4", timezone="Asia/Shanghai")
    office = CrontabSchedule.objects.create(
        minute="*/15", hour="9-17", day_of_week="mon-fri", timezone="UTC"
    )
    first_monday = CrontabSchedule.objects.create(
        minute="0", hour="9", day_of_week="1", day_of_month="1-7", timezone="UTC"
    )
    new_year = ClockedSchedule.objects.create(clocked_time=datetime(2027, 1, 1, tzinfo=UTC))
    sunset = SolarSchedule.objects.create(event="sunset", latitude=31.23, longitude=121.47)
    task = PeriodicTask.objects.create
    task(
        name="celery.backend_cleanup", task="celery.backend_cleanup", crontab=at_4,
        expire_seconds=43200, description="Cleans up expired results",
    )  # fmt: skip
    task(
        name="send report", task="reports.send", crontab=office, queue="reports",
        kwargs=json.dumps({"to": ["ops@example.com"], "format": "pdf"}), priority=5,
        routing_key="reports", expires=datetime(2027, 6, 30, 16, 0, tzinfo=UTC),
    )  # fmt: skip
    task(
        name="poll every 10 s", task="feeds.poll", interval=every_10s,
        args=json.dumps(["rss", 3]), start_time=datetime(2026, 12, 1, tzinfo=UTC),
        headers=json.dumps({"x-trace": "1"}),
    )  # fmt: skip
    task(name="disabled sync", task="sync.run", interval=every_2h, enabled=False)
    task(name="new year", task="greet.all", clocked=new_year, one_off=True)
    task(name="lights", task="lights.on", solar=sunset)
    task(name="first monday", task="meet.plan", crontab=first_monday)
    task(name="broken args", task="x.y", interval=every_10s, args="[1, 2")


if __name__ == "__main__":
    setup(sys.argv[1])
    fill()
