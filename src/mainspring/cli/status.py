"""``mainspring status``: the whole system in a few lines; exit code 1 when something is down.

Checks the database and its migrations, the broker, live schedulers and recorders (their
heartbeat rows), the recorder's lag, workers online, and queue lengths. Meant for people and
for scripts (``mainspring status || page-someone``).
"""

from __future__ import annotations

import json
from typing import Any

import click

from mainspring.cli.main import CliState, pass_state
from mainspring.context import AppContext
from mainspring.errors import ConfigError
from mainspring.observability.status import Summary, summarise


def _celery(state: CliState) -> Any:
    from mainspring.worker.app import make_celery

    settings = state.settings()
    try:
        settings.resolved_broker_url  # noqa: B018 - raises when no broker is known
    except ConfigError:
        return None
    return make_celery(settings)


def _print(summary: Summary) -> None:
    width = max(len(c.name) for c in summary.checks)
    for check in summary.checks:
        mark = "ok  " if check.ok else "DOWN"
        click.echo(f"{check.name:<{width}}  {mark}  {check.detail}")
    if summary.queues:
        shown = ", ".join(f"{name}={'?' if n is None else n}" for name, n in summary.queues.items())
        click.echo(f"{'queues':<{width}}  ok    {shown}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_state
def status(state: CliState, as_json: bool) -> None:
    """Summarise the system: roles alive, lag, queues, workers (exit 1 if something is down)."""
    ctx = AppContext.open(state.settings(), migrate=False)
    app = _celery(state)
    try:
        summary = summarise(ctx, app)
    finally:
        if app is not None:
            app.close()
        ctx.close()
    if as_json:
        body = {
            "ok": summary.ok,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in summary.checks},
            "queues": summary.queues,
        }
        click.echo(json.dumps(body, indent=2))
    else:
        _print(summary)
    if not summary.ok:
        raise click.exceptions.Exit(1)
