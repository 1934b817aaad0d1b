"""``mainspring import celery-beat``: from a Celery app's ``beat_schedule`` (``--app``) and from
a django-celery-beat database (``--django-db``) on SQLite and PostgreSQL.

The django-celery-beat database is made by django-celery-beat itself, in a process of its own
(``tests.django_beat_fixture``): Django's migrate for ``django_celery_beat`` on a throwaway
SQLite file or PostgreSQL database, then PeriodicTask, IntervalSchedule, CrontabSchedule,
ClockedSchedule and SolarSchedule rows stored through its models.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select as sa_select

from mainspring.context import AppContext
from mainspring.db.models import Job
from tests.conftest import REPO_ROOT
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


def _fill(url: str, tmp_path: Path) -> None:
    """Let django-celery-beat create its tables and rows (``tests.django_beat_fixture``)."""
    log = tmp_path / "django.log"
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "tests.django_beat_fixture", url],
            cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, log.read_text()


@pytest.fixture(params=["sqlite", "postgres"])
def django_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'django.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    _fill(url, tmp_path)
    return url


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
