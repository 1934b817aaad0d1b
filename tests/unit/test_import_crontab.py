"""Reading crontabs: line splitting, environment lines, ``%``, macros, the system format, names,
and the schedules: imported jobs fire at the instants cron does (cronsim as the reference)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from mainspring.core.triggers import next_fire, parse_trigger
from mainspring.migrate_in import slug
from mainspring.migrate_in.crontab import (
    CrontabOptions,
    command_slug,
    cron_caveat,
    read_crontab,
    split_percent,
    with_stdin,
)
from mainspring.services.jobs import JobSpec

FIXTURES = Path(__file__).parent.parent / "fixtures" / "crontabs"
OPTIONS = CrontabOptions(source="db1", timezone="Asia/Shanghai", queue="default")
# cron(5)'s macros, written out here so the reference does not borrow Mainspring's table.
CRON_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}  # fmt: skip


def _read(name: str, **changes: object) -> tuple[list[JobSpec], dict[int, str], list[str]]:
    options = CrontabOptions(**{**OPTIONS.__dict__, "source": name.split(".")[0], **changes})
    result = read_crontab((FIXTURES / name).read_text(), options)
    skipped = {int(p.where.split()[1]): p.reason for p in result.skipped}
    return result.specs, skipped, [str(n) for n in result.notes]


def _by_expr(specs: list[JobSpec]) -> dict[str, JobSpec]:
    return {spec.trigger["expr"]: spec for spec in specs}


def test_a_mixed_user_crontab_imports_what_cron_would_run_and_says_why_for_the_rest() -> None:
    specs, skipped, notes = _read("user_mixed.crontab")
    assert len(specs) == 15
    assert set(skipped) == {21, 26, 27, 28, 29, 30, 31, 32}
    assert "@reboot" in skipped[21]
    assert "init system" in skipped[21]
    assert "out of range" in skipped[26]  # minute 60
    assert "a command" in skipped[27]  # a schedule and trailing spaces, no command
    assert "unknown macro '@every'" in skipped[28]
    assert "five time fields" in skipped[29]
    assert "both" in skipped[30]
    assert "either" in skipped[30]
    assert "'5-5'" in skipped[31]
    assert "write '5'" in skipped[31]
    assert "0 0 31 2 *" in skipped[32]  # 31 February never comes
    assert any(n.startswith("line 6: MAILTO=ops@example.com") for n in notes)


def test_environment_lines_apply_to_the_lines_after_them() -> None:
    specs, _, _ = _read("user_mixed.crontab")
    backup = _by_expr(specs)["0 2 * * *"]
    # SHELL=/bin/bash runs the command under bash; PATH and other variables go to its env,
    # a quoted value keeps its spaces; MAILTO is not a variable of the command.
    assert backup.kwargs["command"][:2] == ["/bin/bash", "-c"]
    assert backup.kwargs["env"] == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "BACKUP_DIR": "/var/backups/db  ",
    }
    assert "MAILTO=ops@example.com was set" in backup.description
    # CRON_TZ sets the zone of the schedules after it, not before.
    assert _by_expr(specs)["0 9 * * *"].timezone == "Asia/Tokyo"
    assert backup.timezone == "Asia/Shanghai"


def test_percent_signs_follow_cron_an_escaped_one_is_literal() -> None:
    specs, _, _ = _read("user_mixed.crontab")
    assert _by_expr(specs)["0 3 * * *"].kwargs["command"][2] == (
        "date +%Y-%m-%d > /var/run/last-backup-day"
    )
    mail = _by_expr(specs)["0 8 * * 1"].kwargs["command"][2]
    assert mail.startswith('{\nmail -s "weekly check" ops@example.com\n} <<')


@pytest.mark.parametrize(
    ("line", "command", "stdin"),
    [
        ("echo plain", "echo plain", None),
        (r"date +\%s", "date +%s", None),
        ("cat%", "cat", ""),
        ("cat%one", "cat", "one\n"),
        ("cat%one%two%", "cat", "one\ntwo\n"),
        (r"cat%50\% done", "cat", "50% done\n"),
        (r"printf '\\n' %x", r"printf '\\n' ", "x\n"),
    ],
)
def test_split_percent(line: str, command: str, stdin: str | None) -> None:
    assert split_percent(line) == (command, stdin)


def test_standard_input_reaches_the_command_as_cron_gives_it() -> None:
    """The generated script, run by a real shell, feeds the command cron's input."""
    command, stdin = split_percent("cat; echo after%first line%$HOME stays%`not run`")
    script = with_stdin(command, stdin)
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout == "first line\n$HOME stays\n`not run`\nafter\n"


def test_an_input_line_equal_to_the_marker_does_not_end_the_input_early() -> None:
    script = with_stdin("cat", "MAINSPRING_CRON_STDIN\nmore\n")
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout == "MAINSPRING_CRON_STDIN\nmore\n"


def test_the_system_format_reads_the_user_field() -> None:
    specs, skipped, _ = _read("etc_crontab", system=True)
    assert len(specs) == 5
    hourly = _by_expr(specs)["17 * * * *"]
    assert hourly.kwargs == {
        "script": "cd / && run-parts --report /etc/cron.hourly",
        "env": {"PATH": "/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin"},
    }  # SHELL=/bin/sh is the default shell: a plain script
    assert "cron-user:root" in hourly.tags
    assert "cron-user:postgres" in _by_expr(specs)["*/10 * * * *"].tags
    assert "as user 'root'" in hourly.description
    assert set(skipped) == {23, 24}
    assert "a user and a command" in skipped[24]


def test_a_cron_d_file_and_windows_line_endings() -> None:
    [certbot], _, _ = _read("certbot.cron.d", system=True)
    assert certbot.trigger["expr"] == "0 */12 * * *"
    assert certbot.kwargs["script"].endswith("certbot -q renew")
    [crlf], skipped, _ = _read("crlf.crontab")
    assert (crlf.trigger["expr"], crlf.kwargs["script"], skipped) == (
        "0 1 * * *",
        "/bin/echo crlf",
        {},
    )


def test_names_are_predictable_and_stable() -> None:
    first, _, _ = _read("clean.crontab")
    again, _, _ = _read("clean.crontab")
    assert [s.name for s in first] == [s.name for s in again]
    assert first[0].name == "cron-clean-1-backup.sh"
    assert first[2].name == "cron-clean-3-sync-orders.sh"
    assert len({s.name for s in first}) == len(first)
    options = CrontabOptions(source="db1.example.com", timezone="UTC", queue="q", prefix="Ops")
    [spec] = read_crontab("0 1 * * * /usr/bin/pg_dump -Fc db > /b/db.dump\n", options).specs
    assert spec.name == "ops-db1.example.com-1-pg-dump-fc-db"
    assert (spec.queue, spec.tags) == ("q", ["crontab", "crontab:db1.example.com"])


def test_the_target_worker_and_paused_state_come_from_the_options() -> None:
    options = CrontabOptions(
        source="db1", timezone="UTC", queue="default", worker="celery@db1", enabled=False
    )
    [spec] = read_crontab("@daily /bin/true\n", options).specs
    assert (spec.target_worker, spec.enabled) == ("celery@db1", False)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0 0 * * *\x00 /bin/x", "control characters"),
        ("CRON_TZ=Mars/Olympus", "not an IANA time zone"),
        ("* * * * * %only input", "no command before"),
        ("0 0 * * * 1/2 /bin/x", None),  # six fields: the sixth is the command, not seconds
    ],
)
def test_lines_that_cannot_be_imported_name_their_problem(text: str, reason: str | None) -> None:
    result = read_crontab(f"# first line\n{text}\n", OPTIONS)
    if reason is None:
        [spec] = result.specs
        assert spec.kwargs["script"] == "1/2 /bin/x"
        return
    [problem] = result.skipped
    assert problem.where == "line 2"
    assert reason in problem.reason


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ("0 0 * * 1-5", None),
        ("0 0 * * 0-7", None),
        ("0 0 * * sun-sat", None),
        ("0 0 1,15 * mon", None),
        ("*/5 * * * *", None),
        ("0 0 * * 5-5", "write '5'"),
        ("0 0 * * fri-mon", "cron refuses it"),
        ("0 10-5 * * *", "cron refuses it"),
        ("0 0 * * 1/2", "'1-7/2'"),
        ("0 0 */2 * 1", "both"),
        ("0 0 1 * */2", "both"),
    ],
)
def test_cron_caveat(fields: str, problem: str | None) -> None:
    caveat = cron_caveat(fields.split())
    assert (caveat is None) if problem is None else (caveat is not None and problem in caveat)


def test_slugs() -> None:
    assert slug("Hello, World!") == "hello-world"
    assert slug("///") == "job"
    assert slug("x" * 60) == "x" * 40
    assert command_slug("/usr/local/bin/backup.sh --full >> /var/log/b.log") == "backup.sh-full"


def _cron_fires(expr: str, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """What cron runs: cronsim (Debian cron's rules) over local wall time, in UTC."""
    wall = start.astimezone(tz).replace(tzinfo=None)
    fires = []
    for local in CronSim(CRON_MACROS.get(expr, expr), wall):
        instant = local.replace(tzinfo=tz).astimezone(UTC)
        if instant > end:
            return fires
        fires.append(instant)
    return fires


def _mainspring_fires(spec: JobSpec, start: datetime, end: datetime) -> list[datetime]:
    trigger, tz = parse_trigger(spec.trigger), ZoneInfo(spec.timezone)
    fires, current = [], start
    while (nxt := next_fire(trigger, current, tz, spec.name)) is not None and nxt <= end:
        fires.append(nxt)
        current = nxt
    return fires


@pytest.mark.parametrize(
    ("name", "system"),
    [("clean.crontab", False), ("user_mixed.crontab", False), ("etc_crontab", True)],
)
@pytest.mark.parametrize("zone_name", ["Asia/Shanghai", "America/New_York"])
def test_imported_jobs_fire_when_cron_would_over_a_week(
    name: str, system: bool, zone_name: str
) -> None:
    specs, _, _ = _read(name, system=system, timezone=zone_name)
    start = datetime(2026, 2, 26, 0, 0, 30, tzinfo=UTC)  # Thursday; the week crosses into March
    end = start + timedelta(days=7)
    for spec in specs:
        expected = _cron_fires(spec.trigger["expr"], ZoneInfo(spec.timezone), start, end)
        assert _mainspring_fires(spec, start, end) == expected, spec.trigger["expr"]
    assert sum(len(_mainspring_fires(s, start, end)) for s in specs) > 100
