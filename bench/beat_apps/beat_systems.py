"""celery beat (default ``PersistentScheduler``), django-celery-beat and RedBeat, driven the way
their users drive them: static configuration, ``PeriodicTask`` rows, ``RedBeatSchedulerEntry``.

Each system stores the schedules of one phase (``setup_*``), runs ``celery beat`` as a child
process, applies an edit at run time where it can (``edit``) and removes what it stored
(``reset``/``close``). Jobs are named ``job-<i>`` (precision), ``burst-<i>`` and ``edit-<k>``;
the name is the task's only argument. An edit job starts dormant (every hour, last run 30 min
ago) and is edited to every second, which makes it due at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from beat_apps.apps import TASK, every, make_app
from beat_apps.collect import RawCollector
from beat_apps.procs import Procs

BENCH = Path(__file__).resolve().parent.parent
HOUR = timedelta(hours=1)


def _ts(dt: datetime) -> float:
    return dt.timestamp()


class CeleryBeatSystem:
    """celery beat with its default scheduler: the schedule is configuration, read at start."""

    name = "celery beat"
    key = "beat"
    method = "whole-second"
    can_edit = False
    store_rate = 10_000  # burst jobs stored per second (a rough floor on the loaded machine)

    def __init__(self, broker: str, tmp: Path, procs: Procs) -> None:
        self.broker, self.tmp, self.procs = broker, tmp, procs
        self.entries: list[dict[str, Any]] = []
        self.phase = 0

    def collector(self, queues: list[str]) -> RawCollector:
        return RawCollector(self.broker, queues)

    def spec(self) -> dict[str, Any]:
        return {"system": self.key, "broker": self.broker, "entries": self.entries}

    def setup_precision(
        self, queue: str, jobs: int, anchor: datetime, edit_queues: list[str]
    ) -> None:
        self.entries = [{"name": f"job-{i}", "queue": queue, "every": 1} for i in range(jobs)]

    def setup_burst(self, queue: str, jobs: int, due: datetime) -> None:
        cron = [due.minute, due.hour]
        self.entries = [{"name": f"burst-{i}", "queue": queue, "cron": cron} for i in range(jobs)]

    def setup_idle(self, edit_queues: list[str], probe_queue: str) -> None:
        raise NotImplementedError("celery beat's default scheduler cannot be edited at run time")

    def edit(self, k: int, fast: bool) -> None:
        raise NotImplementedError

    def start(self) -> subprocess.Popen[bytes]:
        self.phase += 1
        run_dir = self.tmp / f"{self.key}-{self.phase}"
        run_dir.mkdir()
        spec_path = run_dir / "spec.json"
        spec_path.write_text(json.dumps(self.spec()))
        env = {**os.environ, "BENCH_SPEC": str(spec_path), "PYTHONPATH": str(BENCH),
               "DJANGO_SETTINGS_MODULE": "beat_apps.dcb_settings"}  # fmt: skip
        cmd = [sys.executable, "-m", "celery", "-A", "beat_apps.celery_main", "beat",
               "--loglevel", "WARNING", "-s", str(run_dir / "schedule")]  # fmt: skip
        return self.procs.start(cmd, env, self.tmp / f"{self.key}.log", run_dir)

    def reset(self) -> None:
        self.entries = []

    def close(self) -> None:
        self.reset()


class DjangoCeleryBeatSystem(CeleryBeatSystem):
    """django-celery-beat's ``DatabaseScheduler`` on a throwaway PostgreSQL database."""

    name = "django-celery-beat"
    key = "dcb"
    method = "own-promise"
    can_edit = True
    store_rate = 1000

    def __init__(self, broker: str, tmp: Path, procs: Procs) -> None:
        super().__init__(broker, tmp, procs)
        from scheduler_precision import fresh_database

        url, self._drop = fresh_database("postgres", tmp)
        os.environ["BENCH_DCB_DB"] = url.rsplit("/", 1)[1]
        os.environ["DJANGO_SETTINGS_MODULE"] = "beat_apps.dcb_settings"
        import django
        from django.core.management import call_command

        try:
            django.setup()
            call_command("migrate", verbosity=0)
        except BaseException:
            self.close()  # the database exists already: do not leave it behind
            raise

    def _models(self) -> Any:
        from django_celery_beat import models

        return models

    def _intervals(self) -> tuple[Any, Any]:
        m = self._models()
        fast, _ = m.IntervalSchedule.objects.get_or_create(every=1, period="seconds")
        slow, _ = m.IntervalSchedule.objects.get_or_create(every=1, period="hours")
        return fast, slow

    def _store(self, rows: list[Any]) -> None:
        m = self._models()
        m.PeriodicTask.objects.bulk_create(rows, batch_size=2000)
        m.PeriodicTasks.update_changed()  # bulk_create sends no signal: tell the scheduler

    def _task(self, name: str, queue: str, **kw: Any) -> Any:
        return self._models().PeriodicTask(
            name=name, task=TASK, args=json.dumps([name]), queue=queue, **kw
        )

    def _edit_rows(self, edit_queues: list[str]) -> list[Any]:
        _fast, slow = self._intervals()
        ago = datetime.now(UTC) - HOUR / 2
        return [self._task(f"edit-{k}", q, interval=slow, last_run_at=ago)
                for k, q in enumerate(edit_queues)]  # fmt: skip

    def setup_precision(
        self, queue: str, jobs: int, anchor: datetime, edit_queues: list[str]
    ) -> None:
        fast, _slow = self._intervals()
        rows = [self._task(f"job-{i}", queue, interval=fast) for i in range(jobs)]
        self._store(rows + self._edit_rows(edit_queues))

    def setup_burst(self, queue: str, jobs: int, due: datetime) -> None:
        cron, _ = self._models().CrontabSchedule.objects.get_or_create(
            minute=str(due.minute), hour=str(due.hour), day_of_week="*", day_of_month="*",
            month_of_year="*", timezone="UTC",
        )  # fmt: skip
        self._store([self._task(f"burst-{i}", queue, crontab=cron) for i in range(jobs)])

    def setup_idle(self, edit_queues: list[str], probe_queue: str) -> None:
        _fast, slow = self._intervals()
        probe = self._task(
            "probe", probe_queue, interval=slow, last_run_at=datetime.now(UTC) - 2 * HOUR
        )
        self._store([probe, *self._edit_rows(edit_queues)])

    def edit(self, k: int, fast: bool) -> None:
        """What the admin (or application code) does: change the row's schedule and save."""
        task = self._models().PeriodicTask.objects.get(name=f"edit-{k}")
        task.interval = self._intervals()[0 if fast else 1]
        task.save()

    def reset(self) -> None:
        """Empty the tables between phases (bench housekeeping, not a measured path: a
        queryset ``delete()`` sends one change signal per row, minutes for 10,000 rows)."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE django_celery_beat_periodictask CASCADE")
        self._models().PeriodicTasks.update_changed()

    def close(self) -> None:
        from django.db import connections

        connections.close_all()
        self._drop()


class RedBeatSystem(CeleryBeatSystem):
    """RedBeat: entries in Redis (a sorted set of due times), under a key prefix of each phase."""

    name = "RedBeat"
    key = "redbeat"
    method = "whole-second"
    can_edit = True
    store_rate = 100  # one ``save()`` (a Redis round trip) per entry

    def __init__(self, broker: str, tmp: Path, procs: Procs) -> None:
        super().__init__(broker, tmp, procs)
        self.prefixes: list[str] = []
        self._new_app()

    def _new_app(self) -> None:
        self.prefixes.append(f"bench-redbeat-{uuid.uuid4().hex[:8]}:")
        self.app = make_app(self.spec())

    def spec(self) -> dict[str, Any]:
        return {"system": self.key, "broker": self.broker, "redbeat_prefix": self.prefixes[-1]}

    def _save(self, name: str, queue: str, when: Any, last_run_at: datetime | None) -> None:
        from redbeat import RedBeatSchedulerEntry

        entry = RedBeatSchedulerEntry(
            name, TASK, when, args=[name], options={"queue": queue}, app=self.app
        )
        entry.last_run_at = last_run_at
        entry.save()

    def _dormant(self) -> Any:
        from celery.schedules import schedule

        return schedule(HOUR)

    def setup_precision(
        self, queue: str, jobs: int, anchor: datetime, edit_queues: list[str]
    ) -> None:
        for i in range(jobs):
            self._save(f"job-{i}", queue, every(1), None)
        self._dormant_edits(edit_queues)

    def setup_burst(self, queue: str, jobs: int, due: datetime) -> None:
        from celery.schedules import crontab

        when = crontab(minute=str(due.minute), hour=str(due.hour))
        now = datetime.now(UTC)  # last run now: due at the cron minute, not at start
        for i in range(jobs):
            self._save(f"burst-{i}", queue, when, now)

    def setup_idle(self, edit_queues: list[str], probe_queue: str) -> None:
        self._save("probe", probe_queue, self._dormant(), datetime.now(UTC) - 2 * HOUR)
        self._dormant_edits(edit_queues)

    def _dormant_edits(self, edit_queues: list[str]) -> None:
        ago = datetime.now(UTC) - HOUR / 2
        for k, queue in enumerate(edit_queues):
            self._save(f"edit-{k}", queue, self._dormant(), ago)

    def edit(self, k: int, fast: bool) -> None:
        """RedBeat's documented way: load the entry, change its schedule, ``save()``."""
        from redbeat import RedBeatSchedulerEntry

        key = RedBeatSchedulerEntry.generate_key(self.app, f"edit-{k}")
        entry = RedBeatSchedulerEntry.from_key(key, app=self.app)
        entry.schedule = every(1) if fast else self._dormant()
        entry.save()

    def reset(self) -> None:
        self._delete_keys(self.prefixes[-1])
        self._new_app()

    def _delete_keys(self, prefix: str) -> None:
        import redis

        client = redis.Redis.from_url(self.broker)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])

    def close(self) -> None:
        for prefix in self.prefixes:
            self._delete_keys(prefix)
