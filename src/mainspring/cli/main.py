"""Entry point: the command group, shared options and the one-line error contract.

Every user mistake ends as one ``error: ...`` line on stderr and a non-zero exit; a
traceback appears only with ``--debug``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from mainspring import __version__
from mainspring.errors import MainspringError
from mainspring.settings import Settings, load_settings


@dataclass
class CliState:
    config: Path | None = None
    debug: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self, **overrides: object) -> Settings:
        if self._settings is None or overrides:
            self._settings = load_settings(self.config, **overrides)
        return self._settings


pass_state = click.make_pass_decorator(CliState)


# Subcommands are imported when used: ``mainspring scheduler`` should not pay for importing
# the web app, the importers and Argon2 (click's documented lazy-group pattern).
_COMMANDS = {
    "up": "up:up",
    "web": "roles:web",
    "scheduler": "roles:scheduler",
    "recorder": "roles:recorder",
    "worker": "roles:worker",
    "db": "db:db",
    "jobs": "jobs:jobs",
    "runs": "runs:runs",
    "users": "users:users",
    "tokens": "tokens:tokens",
    "import": "importing:import_",
    "export": "importing:export",
    "apply": "importing:apply",
    "status": "status:status",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(f"mainspring.cli.{module}"), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    envvar="MAINSPRING_CONFIG",
    help="TOML settings file (also MAINSPRING_CONFIG).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(__version__, prog_name="mainspring")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, debug: bool) -> None:
    """Mainspring: schedule, run and watch tasks on Celery."""
    ctx.obj = CliState(config=config, debug=debug)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.DEBUG if debug else logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning every expected failure into one line and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv)
    try:
        code = cli.main(args=argv, prog_name="mainspring", standalone_mode=False)
    except click.Abort:
        sys.exit(130)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except MainspringError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
