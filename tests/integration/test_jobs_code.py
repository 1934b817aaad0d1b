"""Jobs as code from the command line: ``mainspring export`` and ``mainspring apply`` (diff
first, ``--dry-run``, ``--prune`` only among managed jobs), round trips and bad documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from mainspring.cli.main import main
from mainspring.context import AppContext
from mainspring.db.models import Job, JobVersion
from mainspring.services import jobs as job_service
from mainspring.services.jobs_code import MANAGED_TAG

Spec = job_service.JobSpec
RICH = [
    Spec(
        name="nightly backup",
        task="mainspring.shell",
        trigger={"kind": "cron", "expr": "0 2 * * *"},
        timezone="Asia/Shanghai",
        kwargs={"script": "set -e\npg_dump db > /backup/db.sql\necho 完成\n", "timeout": 3600},
        queue="db",
        description="每晚备份\nsecond line",
        tags=["db", "backup"],
        options={"retry": {"retries": 2}, "time_limit": 600, "priority": 7, "expires": 30},
        start_at="2026-01-01T00:00:00+08:00",
        end_at="2027-01-01T00:00:00+08:00",
        max_runs=100,
        jitter_ms=250,
        misfire_policy="skip",
        misfire_grace_s=5,
        overlap_policy="queue_one",
        data_window={"lookback_s": 259200, "as_kwargs": True},
        target_worker="celery@db1",
    ),
    Spec(
        name="tick",
        task="tasks.add",
        trigger={"kind": "interval", "every_ms": 500, "anchor": "2026-01-01T00:00:00+00:00"},
        timezone="UTC",
        args=[1, 2.5, None, True, "yes", "0755", "2026-01-01", "*/5", ""],
        kwargs={"on": "off", "nested": {"a": [1, {"b": None}]}, "trailing": "space "},
    ),
    Spec(
        name="launch",
        task="tasks.launch",
        trigger={"kind": "once", "at": "2030-05-01T08:00:00+08:00"},
        timezone="Asia/Shanghai",
        enabled=False,
        data_window={},
    ),
    Spec(
        name="scan: every segment",
        task="tasks.scan",
        trigger={"kind": "manual"},
        timezone="UTC",
        broadcast=True,
        queue="scan",
    ),
]


@pytest.fixture
def cli(settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run ``mainspring`` on the test's database: (exit code, stdout, stderr)."""
    monkeypatch.setenv("MAINSPRING_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MAINSPRING_TIMEZONE", settings.timezone)

    def run(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", _Stdin(stdin))
        with pytest.raises(SystemExit) as exited:
            main(list(argv))
        out, err = capsys.readouterr()
        return int(exited.value.code or 0), out, err

    return run


class _Stdin:
    def __init__(self, text: str) -> None:
        import io

        self.buffer = io.BytesIO(text.encode())

    def isatty(self) -> bool:
        return False


def _create(ctx: AppContext, specs: list[Spec]) -> None:
    with ctx.session() as s:
        for spec in specs:
            job_service.create_job(s, spec, "test")


def _versions(ctx: AppContext) -> int:
    with ctx.session() as s:
        return int(s.scalar(select(func.count(JobVersion.id))) or 0)


def _jobs(ctx: AppContext) -> dict[str, Job]:
    with ctx.session() as s:
        rows = {j.name: j for j in s.scalars(select(Job))}
        s.expunge_all()
        return rows


def test_export_then_apply_is_a_no_op(ctx: AppContext, cli: Any, tmp_path: Path) -> None:
    _create(ctx, RICH)
    code, exported, _ = cli("export")
    assert code == 0
    path = tmp_path / "jobs.yaml"
    path.write_text(exported)
    # Jobs made elsewhere are adopted: the managed tag is their only change.
    code, out, _ = cli("apply", "-f", str(path))
    assert code == 0
    assert "plan: 0 to create, 0 to update, 4 to adopt, 0 to delete, 0 unchanged" in out
    versions = _versions(ctx)
    definitions = {n: job_service.definition(j) for n, j in _jobs(ctx).items()}
    code, out, _ = cli("apply", "-f", str(path))
    assert "plan: 0 to create, 0 to update, 0 to adopt, 0 to delete, 4 unchanged" in out
    assert "nothing to change" in out
    assert _versions(ctx) == versions
    assert {n: job_service.definition(j) for n, j in _jobs(ctx).items()} == definitions
    assert cli("export")[1] == exported  # and the text is stable


def test_the_export_is_plain_yaml_without_defaults(ctx: AppContext, cli: Any) -> None:
    _create(ctx, RICH)
    code, text, _ = cli("export", "--tag", "db")
    assert code == 0
    doc = yaml.safe_load(text)
    assert text.startswith("# Mainspring jobs")
    assert doc["selector"] == {"tag": "db"}
    [nightly] = doc["jobs"]
    assert list(nightly)[:5] == ["name", "description", "task", "trigger", "timezone"]
    assert nightly["trigger"] == {"kind": "cron", "expr": "0 2 * * *"}
    assert nightly["start_at"] == "2026-01-01T00:00:00+08:00"  # in the job's own zone
    assert "script: |" in text  # multi-line text as a block
    _code, text, _ = cli("export", "--state", "paused", "--format", "json")
    [launch] = json.loads(text)["jobs"]
    assert launch == {
        "name": "launch",
        "task": "tasks.launch",
        "trigger": {"kind": "once", "at": "2030-05-01T08:00:00+08:00"},
        "timezone": "Asia/Shanghai",
        "queue": "default",
        "enabled": False,
        "data_window": {},
    }


def test_the_published_schema_accepts_exports(ctx: AppContext, cli: Any) -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    _create(ctx, RICH)
    _code, text, _ = cli("export", "--schema")
    schema = json.loads(text)
    assert schema["$schema"].endswith("2020-12/schema")
    validator = jsonschema_rs.validator_for(schema)
    validator.validate(yaml.safe_load(cli("export")[1]))
    assert not validator.is_valid({"version": 1, "jobs": [{"name": "x", "task": "t"}]})


def test_apply_creates_updates_and_shows_the_diff_first(
    ctx: AppContext, cli: Any, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(
        "version: 1\njobs:\n"
        "  - name: report\n    task: reports.daily\n"
        "    trigger: {kind: cron, expr: '0 8 * * *'}\n    kwargs: {days: 1}\n"
    )
    code, out, _ = cli("apply", "-f", str(path), "--dry-run")
    assert (code, _jobs(ctx)) == (0, {})
    assert "create report" in out
    assert "+  expr: 0 8 * * *" in out
    assert "dry run: nothing changed" in out
    code, out, _ = cli("apply", "-f", str(path))
    report = _jobs(ctx)["report"]
    assert (report.timezone, report.queue, report.tags) == (
        "Asia/Shanghai",
        "default",
        [MANAGED_TAG],
    )
    path.write_text(path.read_text().replace("0 8 * * *", "30 8 * * 1-5"))
    code, out, _ = cli("apply", "-f", str(path))
    assert "update report" in out
    assert "-  expr: 0 8 * * *" in out
    assert "+  expr: 30 8 * * 1-5" in out
    assert "applied 1 change(s)" in out
    assert _jobs(ctx)["report"].trigger["expr"] == "30 8 * * 1-5"
    with ctx.session() as s:
        row = s.scalars(select(JobVersion).order_by(JobVersion.id.desc())).first()
        assert row is not None
        assert row.summary == "apply: changed trigger"


def _doc(*names: str, selector: str = "") -> str:
    jobs = "".join(
        f"  - name: {n}\n    task: t.{n}\n    trigger: {{kind: manual}}\n    tags: [{n[0]}]\n"
        for n in names
    )
    return f"version: 1\n{selector}jobs:\n{jobs}"


def test_prune_deletes_only_managed_jobs_and_only_when_asked(
    ctx: AppContext, cli: Any, tmp_path: Path
) -> None:
    _create(ctx, [Spec(name="handmade", task="t.h", trigger={"kind": "manual"}, timezone="UTC")])
    path = tmp_path / "jobs.yaml"
    path.write_text(_doc("alpha", "beta", "gamma"))
    assert cli("apply", "-f", str(path))[0] == 0
    path.write_text(_doc("alpha"))
    code, out, _ = cli("apply", "-f", str(path))
    assert "kept (managed, not in the document; --prune deletes them): beta, gamma" in out
    assert set(_jobs(ctx)) == {"handmade", "alpha", "beta", "gamma"}
    code, out, err = cli("apply", "-f", str(path), "--prune")  # not at a terminal: needs --yes
    assert code == 1
    assert err == "error: --yes: the plan deletes 2 job(s): add --yes to confirm\n"
    assert "delete beta" in out
    assert set(_jobs(ctx)) == {"handmade", "alpha", "beta", "gamma"}
    code, out, _ = cli("apply", "-f", str(path), "--prune", "--yes")
    assert "plan: 0 to create, 0 to update, 0 to adopt, 2 to delete, 1 unchanged" in out
    assert set(_jobs(ctx)) == {"handmade", "alpha"}  # never a job apply does not manage


def test_a_partial_export_prunes_only_what_it_selected(
    ctx: AppContext, cli: Any, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(_doc("alpha", "apple", "beta"))
    cli("apply", "-f", str(path))
    code, text, _ = cli("export", "--tag", "a")
    assert code == 0
    assert "selector:\n  tag: a\n" in text
    path.write_text(text.replace("- name: apple", "- name: avocado").replace("t.apple", "t.avo"))
    _code, out, _ = cli("apply", "-f", str(path), "--prune", "--yes")
    assert "create avocado" in out
    assert "delete apple" in out
    assert set(_jobs(ctx)) == {"alpha", "avocado", "beta"}  # beta is outside the selector


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("version: 1\njobs: [{name: x, task: t, trigger: {kind: cron, exprr: '* * * * *'}}]",
         "error: jobs[0].trigger.expr: Field required (job 'x')"),
        ("version: 1\njobs: [{name: x, task: t, trigger: {kind: cron, expr: '61 * * * *'}}]",
         "error: jobs[0].trigger.expr: invalid cron expression '61 * * * *'"),
        ("version: 1\njobs: [{name: x, task: t, trigger: {kind: manual}, colour: red}]",
         "error: jobs[0].colour: Extra inputs are not permitted (job 'x')"),
        ("version: 1\njobs:\n- {name: x, task: t, trigger: {kind: manual}}\n"
         "- {name: x, task: u, trigger: {kind: manual}}",
         "error: jobs[1].name: 'x' is also jobs[0]"),
        ("version: 1\njobs: [{name: x, task: t, trigger: {kind: manual}, timezone: Mars/Base}]",
         "error: jobs[0].timezone: unknown IANA time zone 'Mars/Base' (job 'x')"),
        ("version: 1\njobs:\n  - name: x\n   task: t", "error: document: line 4: not valid YAML"),
        ("version: 2\njobs: []", "error: version: Input should be 1"),
        ("jobs: [{name: x, task: t, trigger: {kind: manual}, args: [!!binary /w==]}]",
         "error: document: line 1: tag:yaml.org,2002:binary values are not allowed"),
        ("jobs: [{name: x, task: t, trigger: {kind: manual}, kwargs: {a: [.nan]}}]",
         "error: jobs[0].kwargs: Value error, NaN and infinite numbers are not JSON"),
        ("a: &x [1]\nb: *x", "error: document: line 2: aliases (*name) are not allowed"),
        ("a: 1\na: 2", "error: document: line 2: key 'a' is given twice"),
        ("- just a list", "error: document: Input should be a valid dictionary"),
    ],
)  # fmt: skip
def test_a_bad_document_is_one_line_naming_the_place_and_changes_nothing(
    ctx: AppContext, cli: Any, text: str, error: str
) -> None:
    code, _, err = cli("apply", "-f", "-", stdin=text)
    assert code == 1
    assert len(err.splitlines()) == 1, err
    assert err.startswith(error), err
    assert _jobs(ctx) == {}


def test_missing_files_and_bad_options_are_one_line(cli: Any, tmp_path: Path) -> None:
    code, _, err = cli("apply", "-f", str(tmp_path / "nope.yaml"))
    assert (code, err.startswith("error: FILE: cannot read"), err.count("\n")) == (1, True, 1)
    code, _, err = cli("export", "--state", "sleeping")
    assert code == 2
    assert err.startswith("error: Invalid value for '--state'")
