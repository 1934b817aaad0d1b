"""``mainspring import crontab``: what it creates, re-imports that update instead of
duplicating, ``--dry-run``, ``--strict``, exit codes, and one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.db.models import Job, JobVersion
from tests.integration.test_jobs_code import cli as cli  # the CLI fixture

FIXTURES = Path(__file__).parent.parent / "fixtures" / "crontabs"
MIXED = str(FIXTURES / "user_mixed.crontab")
CLEAN = str(FIXTURES / "clean.crontab")


def _jobs(ctx: AppContext) -> dict[str, Job]:
    with ctx.session() as s:
        rows = {j.name: j for j in s.scalars(select(Job))}
        s.expunge_all()
        return rows


def test_a_crontab_imports_and_skipped_lines_are_reported_by_number(
    ctx: AppContext, cli: Any
) -> None:
    code, out, err = cli("import", "crontab", MIXED, "--queue", "ops", "--host", "db1")
    assert code == 3  # something was skipped
    assert "skipped line 21: @reboot runs once at boot" in err
    assert "skipped line 26: invalid cron expression '60 0 * * *'" in err
    assert "note line 6: MAILTO=ops@example.com" in err
    assert "8 entr(y/ies) skipped" in err
    assert "plan: 15 to create" in out
    assert "imported 15 job(s)" in out
    jobs = _jobs(ctx)
    backup = jobs["cron-db1-1-backup.sh-full"]
    assert (backup.task, backup.queue, backup.timezone) == (
        "mainspring.shell",
        "ops",
        "Asia/Shanghai",
    )
    assert backup.trigger["expr"] == "0 2 * * *"
    assert backup.tags == ["crontab", "crontab:db1"]
    assert backup.next_fire_at is not None
    assert jobs["cron-db1-15-tokyo-open.sh"].timezone == "Asia/Tokyo"


def test_importing_again_updates_instead_of_duplicating(ctx: AppContext, cli: Any) -> None:
    assert cli("import", "crontab", CLEAN)[0] == 0
    before = _jobs(ctx)
    with ctx.session() as s:
        versions = len(s.scalars(select(JobVersion.id)).all())
    code, out, _ = cli("import", "crontab", CLEAN)
    assert code == 0
    assert "plan: 0 to create, 0 to update, 0 to adopt, 0 to delete, 19 unchanged" in out
    assert _jobs(ctx).keys() == before.keys()
    with ctx.session() as s:
        assert len(s.scalars(select(JobVersion.id)).all()) == versions
    code, out, _ = cli("import", "crontab", CLEAN, "--queue", "elsewhere")
    assert "plan: 0 to create, 19 to update" in out
    assert {j.queue for j in _jobs(ctx).values()} == {"elsewhere"}
    with ctx.session() as s:
        row = s.scalars(select(JobVersion).order_by(JobVersion.id.desc())).first()
        assert row is not None
        assert row.summary == f"import crontab {CLEAN}: changed queue"


def test_dry_run_shows_the_jobs_and_creates_none(ctx: AppContext, cli: Any) -> None:
    code, out, _ = cli("import", "crontab", CLEAN, "--dry-run")
    assert code == 0
    assert "create cron-clean-1-backup.sh" in out
    assert "dry run: nothing changed" in out
    assert _jobs(ctx) == {}


def test_strict_imports_nothing_when_a_line_is_skipped(ctx: AppContext, cli: Any) -> None:
    code, _, err = cli("import", "crontab", MIXED, "--strict")
    assert code == 3
    assert err.splitlines()[-1] == "error: 8 skipped; nothing imported (--strict)"
    assert _jobs(ctx) == {}


def test_standard_input_a_target_worker_and_paused_jobs(ctx: AppContext, cli: Any) -> None:
    text = "SHELL=/bin/sh\n*/10 * * * * root /usr/bin/vacuum-check\n"
    code, _, _ = cli(
        "import", "crontab", "-", "--system", "--worker", "celery@db2", "--paused", stdin=text
    )
    assert code == 0
    [job] = _jobs(ctx).values()
    assert job.name == "cron-db2-1-vacuum-check"
    assert (job.target_worker, job.enabled, job.next_fire_at) == ("celery@db2", False, None)
    assert "cron-user:root" in job.tags


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["import", "crontab", "/no/such/crontab"], "error: FILE: cannot read /no/such/crontab"),
        (["import", "crontab", CLEAN, "--timezone", "Mars/Base"], "error: timezone: unknown"),
        (["import", "crontab", CLEAN, "--queue", "a b"], "error: --queue: 'a b' is not a valid"),
        (["import", "crontab", CLEAN, "--worker", "bad host!"], "error: --worker: invalid"),
    ],
)
def test_bad_input_is_one_line_without_a_traceback(
    ctx: AppContext, cli: Any, args: list[str], error: str
) -> None:
    code, _, err = cli(*args)
    assert code == 1
    assert err.startswith(error), err
    assert err.count("\n") == 1, err
    assert _jobs(ctx) == {}


def test_a_file_that_is_not_text_is_one_line(ctx: AppContext, cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"0 0 * * * \xff\xfe\n")
    code, _, err = cli("import", "crontab", str(path))
    assert (code, err) == (1, f"error: FILE: {path} is not UTF-8 text (byte 10)\n")
