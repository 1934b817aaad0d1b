"""``mainspring runs``: the execution history."""

from __future__ import annotations

import json

import click

from mainspring.cli.main import CliState, pass_state
from mainspring.context import AppContext
from mainspring.db.models import Run
from mainspring.services import jobs as job_service
from mainspring.services import runs as run_service


@click.group(invoke_without_command=True)
@click.option("--job", "job_name", help="Only runs of this job.")
@click.option("--state", "state_filter", help="Only runs in this state (e.g. FAILURE).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@click.pass_context
def runs(ctx: click.Context, job_name: str | None, state_filter: str | None, limit: int) -> None:
    """List the newest runs (or `runs show ID` for one)."""
    if ctx.invoked_subcommand is not None:
        return
    state: CliState = ctx.obj
    app = AppContext.open(state.settings())
    with app.session() as session:
        job_id = job_service.get_job_by_name(session, job_name).id if job_name else None
        flt = run_service.RunFilter(job_id=job_id, state=state_filter)
        rows, _ = run_service.list_runs(session, flt, limit=limit)
        click.echo(f"{'ID':<36} {'STATE':<9} {'TASK':<22} {'WORKER':<28} {'CREATED (UTC)':<23} MS")
        for run in rows:
            click.echo(_row(run))
    app.close()


def _row(run: Run) -> str:
    created = run.created_at.isoformat(timespec="milliseconds")[:23]
    runtime = f"{run.runtime_ms:.0f}" if run.runtime_ms is not None else "-"
    return (
        f"{run.id:<36} {run.state:<9} {run.task[:22]:<22} {(run.worker or '-')[:28]:<28} "
        f"{created:<23} {runtime}"
    )


@runs.command()
@click.argument("run_id")
@pass_state
def show(state: CliState, run_id: str) -> None:
    """Show one run with its result and log."""
    app = AppContext.open(state.settings())
    with app.session() as session:
        run = run_service.get_run(session, run_id)
        log, _ = run_service.run_log_text(session, run_id)
    app.close()
    fields = {
        "id": run.id,
        "job_id": run.job_id,
        "task": run.task,
        "state": run.state,
        "worker": run.worker,
        "scheduled_for": run.scheduled_for,
        "sent_at": run.sent_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "lateness_ms": run.lateness_ms,
        "runtime_ms": run.runtime_ms,
        "result": json.dumps(run.result) if run.result is not None else None,
        "exception": run.exception_message,
    }
    for key, value in fields.items():
        click.echo(f"{key:<14} {value if value is not None else '-'}")
    click.echo("--- log ---")
    click.echo(log, nl=False)
