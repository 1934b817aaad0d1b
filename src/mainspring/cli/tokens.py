"""``mainspring tokens``: API tokens for scripts, created and revoked from the server's shell.

``tokens create`` prints only the secret on standard output (so ``TOKEN=$(mainspring tokens
create ...)`` works) and says what it made on standard error. The secret is never shown again.
"""

from __future__ import annotations

import click

from mainspring.cli.main import CliState, pass_state
from mainspring.cli.users import ROLE_CHOICE, db_session, when
from mainspring.core.states import Role
from mainspring.services import tokens as token_service
from mainspring.services.audit import Actor
from mainspring.services.tokens import Caller
from mainspring.services.users import get_user_by_name

# The shell user already holds the database credentials: they act as an admin.
CLI_CALLER = Caller(user_id=0, role=Role.ADMIN)


@click.group()
def tokens() -> None:
    """API tokens (Authorization: Bearer ...)."""


@tokens.command()
@click.option("--user", "username", required=True, help="Owner of the token.")
@click.option("--name", required=True, help="What the token is for, e.g. 'ci-deploy'.")
@click.option("--role", type=ROLE_CHOICE, help="At most the owner's role (default: theirs).")
@click.option("--expires-days", type=click.IntRange(1, token_service.MAX_EXPIRY_DAYS))
@pass_state
def create(
    state: CliState, username: str, name: str, role: str | None, expires_days: int | None
) -> None:
    """Create a token and print its secret once."""
    with db_session(state) as session:
        owner = get_user_by_name(session, username)
        secret, token = token_service.create_token(
            session,
            owner,
            name,
            Actor.cli(),
            caller_role=Role.ADMIN,
            role=Role(role) if role else None,
            expires_at=token_service.expiry(None, expires_days),
        )
        summary = (
            f"created token {token.id} {name!r} for {username!r} (role {token.role}, "
            f"expires {when(token.expires_at)}); store the secret now, it is not shown again"
        )
    click.echo(summary, err=True)
    click.echo(secret)


@tokens.command("list")
@click.option("--user", "username", help="Only this user's tokens.")
@pass_state
def list_(state: CliState, username: str | None) -> None:
    """List tokens (never their secrets), newest first; times in UTC."""
    with db_session(state) as session:
        owner_id = get_user_by_name(session, username).id if username else None
        rows = token_service.list_tokens(session, CLI_CALLER, owner_id=owner_id)
        click.echo(
            f"{'ID':>5} {'NAME':<20} {'USER':<16} {'ROLE':<9} {'PREFIX':<13} {'STATUS':<8} "
            f"{'LAST USED':<26} EXPIRES"
        )
        for token, owner in rows:
            click.echo(
                f"{token.id:>5} {token.name[:20]:<20} {owner[:16]:<16} {token.role:<9} "
                f"{token.prefix:<13} {token_service.token_status(token):<8} "
                f"{when(token.last_used_at):<26} {when(token.expires_at)}"
            )


@tokens.command()
@click.argument("token_id", type=click.IntRange(1, 2**63 - 1))
@pass_state
def revoke(state: CliState, token_id: int) -> None:
    """Revoke a token at once (it stays in the list as revoked)."""
    with db_session(state) as session:
        token_service.revoke_token(session, token_id, CLI_CALLER, Actor.cli())
    click.echo(f"token {token_id} revoked")
