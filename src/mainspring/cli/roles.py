"""The long-running roles, each runnable on its own host: web, scheduler, recorder, worker."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
@pass_state
def web(state: CliState) -> None:
    """Serve the HTTP API and the web console."""
    from mainspring.api.server import serve

    ctx = AppContext.open(state.settings().with_secret_key())
    print_first_admin(ctx)
    serve(ctx)


@click.command()
@pass_state
def scheduler(state: CliState) -> None:
    """Fire due jobs (run as many as you like for high availability)."""
    from mainspring.scheduler.publisher import CeleryPublisher
    from mainspring.scheduler.service import Scheduler
    from mainspring.worker.app import make_celery

    settings = state.settings()
    check_broker(settings)
    ctx = AppContext.open(settings)
    app = make_celery(settings)
    with stop_on_signals() as stop:
        Scheduler(ctx, CeleryPublisher(app)).run(stop)
    ctx.close()


@click.command()
@pass_state
def recorder(state: CliState) -> None:
    """Record every run, log line and worker from Celery events."""
    from mainspring.recorder.service import Recorder
    from mainspring.worker.app import make_celery

    settings = state.settings()
    check_broker(settings)
    ctx = AppContext.open(settings)
    app = make_celery(settings)
    with stop_on_signals() as stop:
        Recorder(ctx, app).run(stop)
    ctx.close()


@click.command()
@click.option("-Q", "--queues", help="Comma-separated queues to consume (default: default).")
@click.option("-n", "--hostname", help="Worker name (default: mainspring@<host>).")
@click.option("-c", "--concurrency", type=click.IntRange(1, 512), help="Parallel tasks.")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads", "solo"]), default="prefork")
@click.option("-I", "--include", multiple=True, help="Module with your tasks (repeatable).")
@click.option("--allow-shell", is_flag=True, help="Allow shell tasks (remote code execution).")
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@pass_state
def worker(
    state: CliState,
    queues: str | None,
    hostname: str | None,
    concurrency: int | None,
    pool: str,
    include: tuple[str, ...],
    allow_shell: bool,
    loglevel: str,
) -> None:
    """Run tasks from the given queues. Needs only the broker, no database."""
    from mainspring.worker.app import make_celery

    overrides: dict[str, object] = {}
    if queues:
        overrides["worker_queues"] = queues
    if allow_shell:
        overrides["worker_allow_shell"] = True
    if concurrency:
        overrides["worker_concurrency"] = concurrency
    settings = state.settings(**overrides)
    check_broker(settings)
    app = make_celery(settings, include=list(include))
    argv = [
        "worker",
        f"--hostname={hostname or 'mainspring@' + socket.gethostname()}",
        f"--queues={','.join(settings.worker_queues)}",
        f"--concurrency={settings.worker_concurrency}",
        f"--pool={pool}",
        f"--loglevel={loglevel}",
        "--without-mingle",
        "--without-gossip",
    ]
    app.worker_main(argv=argv)
