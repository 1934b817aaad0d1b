"""``mainspring db``: schema migrations."""

from __future__ import annotations

import click

from mainspring.cli.main import CliState, pass_state
from mainspring.context import AppContext
from mainspring.db.engine import mask_url
from mainspring.db.migrate import current_revision, head_revision


@click.group()
def db() -> None:
    """Database schema."""


@db.command()
@pass_state
def upgrade(state: CliState) -> None:
    """Apply all migrations (also done automatically when a role starts)."""
    settings = state.settings()
    ctx = AppContext.open(settings, migrate=True)
    click.echo(
        f"database {mask_url(settings.resolved_database_url)} is at {current_revision(ctx.engine)}"
    )
    ctx.close()


@db.command()
@pass_state
def current(state: CliState) -> None:
    """Show the schema revision of the database and of this code."""
    ctx = AppContext.open(state.settings(), migrate=False)
    click.echo(f"database: {current_revision(ctx.engine) or 'empty'}")
    click.echo(f"code:     {head_revision(ctx.engine)}")
    ctx.close()
