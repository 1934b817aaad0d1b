"""The systemd units and the supervisor config in ``deploy/`` start real commands: every
command line parses with the CLI as it is today (a renamed option breaks this test)."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import click
import pytest

from mainspring.cli.main import cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BINARY = "/opt/mainspring/venv/bin/mainspring"


def _commands() -> list[tuple[str, str]]:
    found = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                found.append((unit.name, line.removeprefix("ExecStart=")))
    supervisor = configparser.RawConfigParser()
    supervisor.read(DEPLOY / "supervisor" / "mainspring.conf")
    for section in supervisor.sections():
        if section.startswith("program:"):
            found.append((section, supervisor.get(section, "command")))
    return found


def test_every_role_has_a_unit_and_a_supervisor_program() -> None:
    commands = " ".join(command for _, command in _commands())
    for role in ("web", "scheduler", "recorder", "worker"):
        assert commands.count(f"{BINARY} {role}") == 2, role


@pytest.mark.parametrize(("where", "command"), _commands())
def test_command_line_parses(where: str, command: str) -> None:
    # systemd specifiers and supervisor expansions stand for plain words
    for placeholder in ("%i", "%H", "%(host_node_name)s"):
        command = command.replace(placeholder, "x")
    binary, name, *args = shlex.split(command)
    assert binary == BINARY, where
    group_ctx = cli.make_context("mainspring", [name], resilient_parsing=True)
    subcommand = cli.get_command(group_ctx, name)
    assert subcommand is not None, f"{where}: unknown command {name!r}"
    try:
        subcommand.make_context(name, list(args), parent=group_ctx)
    except click.UsageError as exc:
        pytest.fail(f"{where}: {exc.format_message()}")
