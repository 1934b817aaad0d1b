"""``mainspring import celery-beat``: from a Celery app's ``beat_schedule`` (``--app``) and from
a django-celery-beat database (``--django-db``) on SQLite and PostgreSQL.

The django-celery-beat tables are created here from its documented model fields (PeriodicTask
with IntervalSchedule, CrontabSchedule, ClockedSchedule and SolarSchedule), with rows as the
Django admin writes them: JSON text in ``args``/``kwargs``/``headers``, naive UTC date-times.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
)
from sqlalchemy import select as sa_select

from mainspring.context import AppContext
from mainspring.db.engine import normalize_url
from mainspring.db.models import Job
from tests.integration.test_jobs_code import cli as cli  # the CLI fixture

APP_MODULE = """
from datetime import timedelta
from celery import Celery
from celery.schedules import crontab

app = Celery("proj", broker="memory://")
app.conf.timezone = "Europe/Berlin"
app.conf.beat_schedule = {
    "add-every-10-seconds": {"task": "tasks.add", "schedule": 10.0, "args": (16, 16)},
    "weekly inspection": {
        "task": "inspect.run",
        "schedule": crontab(hour=8, minute=0, day_of_week="wed"),
        "kwargs": {"window_days": 3},
        "options": {"queue": "inspect", "expires": 3600, "exchange": "x"},
    },
    "nightly": {"task": "tasks.cleanup", "schedule": crontab(minute=30, hour=2)},
    "every 90 min": {"task": "tasks.sync", "schedule": timedelta(minutes=90)},
}
"""


def _jobs(ctx: AppContext) -> dict[str, Job]:
    with ctx.session() as s:
        rows = {j.name: j for j in s.scalars(sa_select(Job))}
        s.expunge_all()
        return rows


@pytest.fixture
def celery_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A project directory with a Celery app module, as ``celery -A`` would find it."""
    name = f"beatproj_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:app"


def test_a_celery_app_s_beat_schedule_imports_in_its_timezone(
    ctx: AppContext, cli: Any, celery_app: str
) -> None:
    code, out, err = cli("import", "celery-beat", "--app", celery_app)
    assert code == 0, err
    assert "plan: 4 to create" in out
    assert "note entry 'weekly inspection': option exchange='x' is not carried over" in err
    jobs = _jobs(ctx)
    add = jobs["add-every-10-seconds"]
    assert (add.task, add.trigger["every_ms"], add.args) == ("tasks.add", 10_000, [16, 16])
    weekly = jobs["weekly inspection"]
    assert (weekly.trigger["expr"], weekly.timezone) == ("0 8 * * wed", "Europe/Berlin")
    assert (weekly.queue, weekly.kwargs, weekly.options) == (
        "inspect", {"window_days": 3}, {"expires": 3600.0}
    )  # fmt: skip
    assert jobs["every 90 min"].trigger["every_ms"] == 5_400_000
    assert jobs["nightly"].tags == ["celery-beat"]
    code, out, _ = cli("import", "celery-beat", "--app", celery_app)
    assert "0 to create, 0 to update, 0 to adopt, 0 to delete, 4 unchanged" in out


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--app", "nomodule_here_xyz:app"], "error: --app: cannot import 'nomodule_here_xyz:app'"),
        (["--app", "json"], "error: --app: 'json': give module:attribute"),
        (["--app", "json:dumps"], "error: --app: 'json:dumps' is neither a Celery app nor a dict"),
        ([], "error: --app: give exactly one of --app or --django-db"),
        (["--django-db", "sqlite:////nonexistent/dir/x.db"], "error: cannot read sqlite:"),
    ],
)
def test_bad_sources_are_one_line(cli: Any, args: list[str], error: str) -> None:
    code, _, err = cli("import", "celery-beat", *args)
    assert code == 1
    assert err.startswith(error), err
    assert err.count("\n") == 1, err


# --- django-celery-beat -------------------------------------------------------------------


def _django_tables(meta: MetaData) -> dict[str, Table]:
    """django-celery-beat's tables, from the model fields its documentation lists."""
    p = "django_celery_beat_"
    interval = Table(f"{p}intervalschedule", meta,
        Column("id", Integer, primary_key=True), Column("every", Integer, nullable=False),
        Column("period", String(24), nullable=False))  # fmt: skip
    crontab = Table(f"{p}crontabschedule", meta,
        Column("id", Integer, primary_key=True), Column("minute", String(240)),
        Column("hour", String(96)), Column("day_of_week", String(64)),
        Column("day_of_month", String(124)), Column("month_of_year", String(64)),
        Column("timezone", String(63)))  # fmt: skip
    clocked = Table(f"{p}clockedschedule", meta,
        Column("id", Integer, primary_key=True), Column("clocked_time", DateTime))  # fmt: skip
    solar = Table(f"{p}solarschedule", meta,
        Column("id", Integer, primary_key=True), Column("event", String(24)),
        Column("latitude", Float), Column("longitude", Float))  # fmt: skip
    task = Table(f"{p}periodictask", meta,
        Column("id", Integer, primary_key=True), Column("name", String(200), unique=True),
        Column("task", String(200)),
        Column("interval_id", ForeignKey(interval.c.id), nullable=True),
        Column("crontab_id", ForeignKey(crontab.c.id), nullable=True),
        Column("solar_id", ForeignKey(solar.c.id), nullable=True),
        Column("clocked_id", ForeignKey(clocked.c.id), nullable=True),
        Column("args", Text), Column("kwargs", Text), Column("queue", String(200)),
        Column("exchange", String(200)), Column("routing_key", String(200)),
        Column("headers", Text), Column("priority", Integer), Column("expires", DateTime),
        Column("expire_seconds", Integer), Column("one_off", Boolean),
        Column("start_time", DateTime), Column("enabled", Boolean),
        Column("last_run_at", DateTime), Column("total_run_count", BigInteger),
        Column("date_changed", DateTime), Column("description", Text))  # fmt: skip
    return {"interval": interval, "crontab": crontab, "clocked": clocked, "solar": solar,
            "task": task}  # fmt: skip


def _task(name: str, task: str, **values: Any) -> dict[str, Any]:
    row = {
        "name": name, "task": task, "interval_id": None, "crontab_id": None, "solar_id": None,
        "clocked_id": None, "args": "[]", "kwargs": "{}", "queue": None, "exchange": None,
        "routing_key": None, "headers": "{}", "priority": None, "expires": None,
        "expire_seconds": None, "one_off": False, "start_time": None, "enabled": True,
        "last_run_at": datetime(2026, 11, 20, 2, 0), "total_run_count": 12,
        "date_changed": datetime(2026, 11, 1, 9, 30), "description": "",
    }  # fmt: skip
    return {**row, **values}


def _fill(url: str) -> None:
    engine = create_engine(normalize_url(url))
    meta = MetaData()
    t = _django_tables(meta)
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(t["interval"].insert(), [
            {"id": 1, "every": 10, "period": "seconds"},
            {"id": 2, "every": 2, "period": "hours"}])  # fmt: skip
        conn.execute(t["crontab"].insert(), [
            {"id": 1, "minute": "0", "hour": "4", "day_of_week": "*", "day_of_month": "*",
             "month_of_year": "*", "timezone": "Asia/Shanghai"},
            {"id": 2, "minute": "*/15", "hour": "9-17", "day_of_week": "mon-fri",
             "day_of_month": "*", "month_of_year": "*", "timezone": "UTC"},
            {"id": 3, "minute": "0", "hour": "9", "day_of_week": "1", "day_of_month": "1-7",
             "month_of_year": "*", "timezone": "UTC"}])  # fmt: skip
        conn.execute(t["clocked"].insert(), [{"id": 1, "clocked_time": datetime(2027, 1, 1, 0, 0)}])
        conn.execute(t["solar"].insert(), [
            {"id": 1, "event": "sunset", "latitude": 31.23, "longitude": 121.47}])  # fmt: skip
        conn.execute(t["task"].insert(), [
            _task("celery.backend_cleanup", "celery.backend_cleanup", crontab_id=1,
                  expire_seconds=43200, description="Cleans up expired results"),
            _task("send report", "reports.send", crontab_id=2, queue="reports",
                  kwargs=json.dumps({"to": ["ops@example.com"], "format": "pdf"}),
                  priority=5, routing_key="reports", expires=datetime(2027, 6, 30, 16, 0)),
            _task("poll every 10 s", "feeds.poll", interval_id=1, args=json.dumps(["rss", 3]),
                  start_time=datetime(2026, 12, 1, 0, 0), headers='{"x-trace": "1"}'),
            _task("disabled sync", "sync.run", interval_id=2, enabled=False),
            _task("new year", "greet.all", clocked_id=1, one_off=True),
            _task("lights", "lights.on", solar_id=1),
            _task("first monday", "meet.plan", crontab_id=3),
            _task("broken args", "x.y", interval_id=1, args="[1, 2"),
        ])  # fmt: skip
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def django_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'django.sqlite3'}"
        _fill(url)
        yield url
        return
    url = request.getfixturevalue("postgres_url")
    _fill(url)
    yield url


def test_a_django_celery_beat_database_imports_with_the_same_schedules(
    ctx: AppContext, cli: Any, django_db: str
) -> None:
    code, out, err = cli("import", "celery-beat", "--django-db", django_db, "--timezone", "UTC")
    assert code == 3  # three tasks cannot be imported
    assert "skipped periodic task 'lights': solar schedules" in err
    assert "skipped periodic task 'first monday': crontab '0 9 1-7 * 1' restricts both" in err
    assert "skipped periodic task 'broken args': args is not valid JSON" in err
    assert "note periodic task 'send report': option routing_key='reports'" in err
    assert "plan: 5 to create" in out
    jobs = _jobs(ctx)
    cleanup = jobs["celery.backend_cleanup"]
    assert (cleanup.trigger["expr"], cleanup.timezone) == ("0 4 * * *", "Asia/Shanghai")
    assert cleanup.options == {"expires": 43200.0}
    assert cleanup.description.endswith("Cleans up expired results")
    report = jobs["send report"]
    assert (report.trigger["expr"], report.queue) == ("*/15 9-17 * * mon-fri", "reports")
    assert report.kwargs == {"to": ["ops@example.com"], "format": "pdf"}
    assert report.options == {"priority": 5}
    assert report.end_at == datetime(2027, 6, 30, 16, 0, tzinfo=UTC)
    poll = jobs["poll every 10 s"]
    assert (poll.trigger["every_ms"], poll.args) == (10_000, ["rss", 3])
    assert poll.start_at == datetime(2026, 12, 1, tzinfo=UTC)
    disabled = jobs["disabled sync"]
    assert (disabled.enabled, disabled.trigger["every_ms"]) == (False, 7_200_000)
    new_year = jobs["new year"]
    assert new_year.trigger["kind"] == "once"
    assert new_year.max_runs == 1
    assert new_year.trigger["at"].startswith("2027-01-01T00:00:00")
    assert {j.tags[0] for j in jobs.values()} == {"django-celery-beat"}
    code, out, _ = cli("import", "celery-beat", "--django-db", django_db, "--timezone", "UTC")
    assert "0 to create, 0 to update, 0 to adopt, 0 to delete, 5 unchanged" in out


def test_a_database_without_the_tables_is_one_line(cli: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    code, _, err = cli("import", "celery-beat", "--django-db", url)
    assert code == 1
    assert err.startswith("error: --django-db: sqlite:///")
    assert "no django_celery_beat_periodictask" in err
