"""``mainspring users``: accounts for the console and the API, managed from the server's shell.

Changes are audited as ``cli:<os user>``. Passwords are asked twice without echo, or read
from one line of standard input with ``--password-stdin`` (for scripts).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import click
from sqlalchemy.orm import Session

from mainspring.cli.main import CliState, pass_state
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.services import users as user_service
from mainspring.services.audit import Actor

ROLE_CHOICE = click.Choice([role.value for role in Role])
password_stdin_option = click.option(
    "--password-stdin", is_flag=True, help="Read the password from one line of standard input."
)


@contextmanager
def db_session(state: CliState) -> Iterator[Session]:
    """One transaction on the configured database, closed whatever happens."""
    ctx = AppContext.open(state.settings())
    try:
        with ctx.session() as session:
            yield session
    finally:
        ctx.close()


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt="Repeat password")
    return password


def when(instant: datetime | None) -> str:
    return instant.isoformat(timespec="seconds") if instant else "-"


@click.group()
def users() -> None:
    """Users of the console and the API."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=ROLE_CHOICE, required=True, help="What the user may do.")
@password_stdin_option
@pass_state
def add(state: CliState, name: str, role: str, password_stdin: bool) -> None:
    """Create a user."""
    user_service.check_username(name)
    password = read_password(password_stdin)
    with db_session(state) as session:
        user = user_service.create_user(session, name, password, Role(role), actor=Actor.cli())
        user_id = user.id
    click.echo(f"created user {name!r} (id {user_id}, role {role})")


@users.command("list")
@pass_state
def list_(state: CliState) -> None:
    """List users with their role and last login (UTC)."""
    with db_session(state) as session:
        click.echo(f"{'ID':>5} {'NAME':<24} {'ROLE':<9} {'ACTIVE':<7} {'LAST LOGIN':<26} CREATED")
        for user in user_service.list_users(session):
            click.echo(
                f"{user.id:>5} {user.username[:24]:<24} {user.role:<9} "
                f"{'yes' if user.is_active else 'no':<7} {when(user.last_login_at):<26} "
                f"{when(user.created_at)}"
            )


@users.command()
@click.argument("name")
@password_stdin_option
@pass_state
def passwd(state: CliState, name: str, password_stdin: bool) -> None:
    """Set a user's password (their console sessions end)."""
    with db_session(state) as session:
        user = user_service.get_user_by_name(session, name)
        password = read_password(password_stdin)
        update = user_service.UserUpdate(password=password)
        user_service.update_user(session, user, update, Actor.cli())
    click.echo(f"password of {name!r} changed")


@users.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def delete(state: CliState, name: str, yes: bool) -> None:
    """Delete a user and their API tokens (not the last active admin)."""
    if not yes:
        click.confirm(f"delete user {name!r} and their API tokens?", abort=True)
    with db_session(state) as session:
        user = user_service.get_user_by_name(session, name)
        user_service.delete_user(session, user, Actor.cli())
    click.echo(f"deleted user {name!r}")
