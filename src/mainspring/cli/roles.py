"""The long-running roles, each runnable on its own host: web, scheduler, recorder, worker."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import click

from mainspring.cli.main import CliState, pass_state
from mainspring.context import AppContext
from mainspring.errors import ServiceUnavailableError
from mainspring.services.users import ensure_admin
from mainspring.settings import Settings


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT, so a role finishes its batch and exits cleanly."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check_broker(settings: Settings) -> None:
    """Fail with one clear line when the broker cannot be reached."""
    from kombu.connection import Connection

    url = settings.resolved_broker_url
    try:
        with Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:
        raise ServiceUnavailableError(
            f"cannot reach broker {_mask(url)}: {exc}; check MAINSPRING_BROKER_URL"
        ) from None


def _mask(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


def print_first_admin(ctx: AppContext) -> None:
    with ctx.session() as session:
        generated = ensure_admin(session, ctx.settings.admin_password)
    if generated:
        click.echo(f"created user 'admin' with password: {generated}  (shown only once)")


@click.command()
@click.option("--processes", type=click.IntRange(1, 64), help="Web processes sharing the port.")
@pass_state
def web(state: CliState, processes: int | None) -> None:
    """Serve the HTTP API and the web console."""
    from mainspring.api.server import serve

    ctx = AppContext.open(state.settings(web_processes=processes).with_secret_key())
    print_first_admin(ctx)
    serve(ctx, state.config)


@click.command()
@pass_state
def scheduler(state: CliState) -> None:
    """Fire due jobs (run as many as you like for high availability)."""
    from mainspring.scheduler.publisher import CeleryPublisher
    from mainspring.scheduler.service import Scheduler
    from mainspring.services.tasks import live_queues
    from mainspring.worker.app import make_celery

    settings = state.settings()
    check_broker(settings)
    ctx = AppContext.open(settings)
    app = make_celery(settings)
    publisher = CeleryPublisher(app)
    # Asked only when a broadcast job is due, on an app (connections) of its own.
    live = partial(live_queues, make_celery(settings), 0.5)
    with stop_on_signals() as stop:
        Scheduler(ctx, publisher, revoker=publisher, live_workers=live).run(stop)
    publisher.close()
    ctx.close()


@click.command()
@click.option("--retention-days", type=click.IntRange(1), help="Keep runs this many days (30).")
@click.option("--retention-max-runs", type=click.IntRange(1), help="Keep at most N runs per job.")
@click.option("--log-cap", type=click.IntRange(1024), help="Bytes of log kept per run (1 MiB).")
@pass_state
def recorder(
    state: CliState,
    retention_days: int | None,
    retention_max_runs: int | None,
    log_cap: int | None,
) -> None:
    """Record every run, log line and worker from Celery events."""
    from mainspring.recorder.service import Recorder, RecorderOptions
    from mainspring.services.retention import RetentionPolicy
    from mainspring.worker.app import make_celery

    settings = state.settings()
    check_broker(settings)
    ctx = AppContext.open(settings)
    app = make_celery(settings)
    policy = RetentionPolicy(
        days=retention_days or settings.retention_days,
        max_runs_per_job=retention_max_runs or settings.retention_max_runs,
    )
    options = RecorderOptions(
        retention=policy,
        log_cap_bytes=log_cap or settings.run_log_cap_bytes,
    )
    with stop_on_signals() as stop:
        Recorder(ctx, app, options=options).run(stop)
    ctx.close()


@click.command()
@click.option("-Q", "--queues", help="Comma-separated queues to consume (default: default).")
@click.option("-n", "--hostname", help="Worker name (default: mainspring@<host>).")
@click.option("-c", "--concurrency", type=click.IntRange(1, 512), help="Parallel tasks.")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads", "solo"]), default=None)
@click.option("--max-tasks-per-child", type=click.IntRange(1), help="Recycle a pool process.")
@click.option("--max-memory-per-child", type=click.IntRange(1024), help="KiB; recycle above.")
@click.option("-I", "--include", multiple=True, help="Module with your tasks (repeatable).")
@click.option("--allow-shell", is_flag=True, help="Allow shell tasks (remote code execution).")
@click.option("--shell-allow", multiple=True, metavar="PREFIX", help="Allowed command prefix.")
@click.option("--acks-late", is_flag=True, help="Acknowledge after the run: redeliver if we die.")
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@pass_state
def worker(
    state: CliState,
    queues: str | None,
    hostname: str | None,
    concurrency: int | None,
    pool: str | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    include: tuple[str, ...],
    allow_shell: bool,
    shell_allow: tuple[str, ...],
    acks_late: bool,
    loglevel: str,
) -> None:
    """Run tasks from the given queues (and this worker's own host queue).

    Needs only the broker and the result backend, no database.
    """
    from mainspring.worker.app import make_celery

    settings = state.settings(
        worker_queues=queues,
        worker_hostname=hostname,
        worker_concurrency=concurrency,
        worker_pool=pool,
        worker_max_tasks_per_child=max_tasks_per_child,
        worker_max_memory_per_child=max_memory_per_child,
        worker_allow_shell=True if allow_shell else None,
        worker_shell_allow=list(shell_allow) or None,
        worker_acks_late=True if acks_late else None,
    )
    check_broker(settings)
    _import_from_cwd()
    app = make_celery(settings, include=list(include))
    app.worker_main(argv=_worker_argv(settings, loglevel))


def _worker_argv(settings: Settings, loglevel: str) -> list[str]:
    """Celery's worker arguments; the host queue is added to the queues asked for."""
    from celery.utils.nodenames import default_nodename, host_format

    from mainspring.errors import ConfigError
    from mainspring.worker.routing import check_hostname, worker_queues

    name = host_format(default_nodename(settings.worker_hostname or "mainspring@%h"))
    try:
        check_hostname(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return [
        "worker",
        f"--hostname={name}",
        f"--queues={','.join(worker_queues(settings.worker_queues, name))}",
        f"--concurrency={settings.worker_concurrency}",
        f"--pool={settings.worker_pool}",
        f"--loglevel={loglevel}",
        "--without-mingle",
        "--without-gossip",
    ]


def _import_from_cwd() -> None:
    """Like ``celery worker``: task modules in the current directory are importable."""
    import os
    import sys

    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
