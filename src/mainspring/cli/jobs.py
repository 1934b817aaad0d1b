"""``mainspring jobs``: create, list, pause, resume and delete schedules."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from mainspring.cli.main import CliState, pass_state
from mainspring.context import AppContext
from mainspring.core.triggers import parse_trigger, preview, zone
from mainspring.errors import ValidationError
from mainspring.services import jobs as job_service
from mainspring.services.audit import Actor
from mainspring.services.clock import utcnow

DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """``500ms``, ``10s``, ``5m``, ``1h``, ``2d`` → milliseconds."""
    match = DURATION.match(text.strip())
    if not match:
        raise ValidationError("--every", f"{text!r} is not a duration like 500ms, 10s, 5m, 1h")
    return int(match.group(1)) * UNIT_MS[match.group(2)]


def _json_option(value: str | None, field: str, kind: type) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValidationError(field, f"is not valid JSON ({exc.msg})") from None
    if not isinstance(parsed, kind):
        raise ValidationError(field, f"must be a JSON {'array' if kind is list else 'object'}")
    return parsed


def _trigger(cron: str | None, every: str | None, at: str | None, manual: bool) -> dict[str, Any]:
    given = [x for x in (cron, every, at) if x is not None] + ([True] if manual else [])
    if len(given) != 1:
        raise ValidationError("trigger", "give exactly one of --cron, --every, --at, --manual")
    if cron is not None:
        return {"kind": "cron", "expr": cron}
    if every is not None:
        return {"kind": "interval", "every_ms": parse_duration_ms(every)}
    if at is not None:
        return {"kind": "once", "at": at}
    return {"kind": "manual"}


@click.group()
def jobs() -> None:
    """Scheduled jobs."""


@jobs.command("add")
@click.argument("name")
@click.option("--cron", help="Cron expression: 5 fields, or 6 with leading seconds.")
@click.option("--every", help="Fixed interval: 500ms, 10s, 5m, 1h, 2d.")
@click.option("--at", help="Run once at an ISO 8601 date-time with offset.")
@click.option("--manual", is_flag=True, help="Fire only when asked.")
@click.option("--shell", "script", help="Shell script to run (needs a worker with --allow-shell).")
@click.option("--task", help="Celery task name to call, e.g. tasks.add.")
@click.option("--args", "args_json", help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@click.option("--queue", default="default", show_default=True)
@click.option("--tz", "timezone", help="IANA time zone (default: the configured one).")
@click.option("--paused", is_flag=True, help="Create it paused.")
@pass_state
def add(
    state: CliState,
    name: str,
    cron: str | None,
    every: str | None,
    at: str | None,
    manual: bool,
    script: str | None,
    task: str | None,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str,
    timezone: str | None,
    paused: bool,
) -> None:
    """Create a job that runs a shell script or a Celery task on a schedule."""
    if (script is None) == (task is None):
        raise ValidationError("target", "give exactly one of --shell or --task")
    settings = state.settings()
    spec = job_service.JobSpec(
        name=name,
        task=task or "mainspring.shell",
        trigger=_trigger(cron, every, at, manual),
        timezone=timezone or settings.timezone,
        args=_json_option(args_json, "--args", list),
        kwargs=_json_option(kwargs_json, "--kwargs", dict)
        if script is None
        else {"script": script},
        queue=queue,
        enabled=not paused,
    )
    ctx = AppContext.open(settings)
    with ctx.session() as session:
        job = job_service.create_job(session, spec, actor="cli", audit=Actor.cli())
        next_fires = preview(
            parse_trigger(job.trigger), utcnow(), zone(job.timezone), 3, hash_id=job.name
        )
    ctx.close()
    click.echo(f"created job {job.name!r} (id {job.id})")
    for fire in next_fires:
        click.echo(f"  next: {fire.isoformat()}")


@jobs.command("list")
@pass_state
def list_(state: CliState) -> None:
    """List jobs with their schedule and next fire time."""
    ctx = AppContext.open(state.settings())
    with ctx.session() as session:
        rows = job_service.list_jobs(session, limit=1000)
        click.echo(f"{'NAME':<30} {'STATE':<8} {'TRIGGER':<24} {'NEXT FIRE (UTC)':<26} LAST")
        for job in rows:
            trig = job.trigger.get("expr") or job.trigger.get("every_ms") or job.trigger_kind
            nxt = job.next_fire_at.isoformat(timespec="milliseconds") if job.next_fire_at else "-"
            click.echo(
                f"{job.name:<30} {'enabled' if job.enabled else 'paused':<8} "
                f"{trig!s:<24} {nxt:<26} {job.last_state or '-'}"
            )
    ctx.close()


def _toggle(state: CliState, name: str, enabled: bool) -> None:
    ctx = AppContext.open(state.settings())
    with ctx.session() as session:
        job = job_service.get_job_by_name(session, name)
        job_service.set_enabled(session, job, enabled, audit=Actor.cli())
    ctx.close()
    click.echo(f"job {name!r} {'resumed' if enabled else 'paused'}")


@jobs.command()
@click.argument("name")
@pass_state
def pause(state: CliState, name: str) -> None:
    """Stop a job from firing until it is resumed."""
    _toggle(state, name, False)


@jobs.command()
@click.argument("name")
@pass_state
def resume(state: CliState, name: str) -> None:
    """Let a paused job fire again, from its next time after now."""
    _toggle(state, name, True)


@jobs.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def delete(state: CliState, name: str, yes: bool) -> None:
    """Delete a job (its run history is kept)."""
    if not yes:
        click.confirm(f"delete job {name!r}?", abort=True)
    ctx = AppContext.open(state.settings())
    with ctx.session() as session:
        job_service.delete_job(
            session, job_service.get_job_by_name(session, name), audit=Actor.cli()
        )
    ctx.close()
    click.echo(f"deleted job {name!r}")
