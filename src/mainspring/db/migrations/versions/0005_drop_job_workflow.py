"""jobs.workflow dropped: a workflow job is stored as the task ``mainspring.workflow`` with its
definition in ``kwargs`` (M7), the form its runs carry; a definition found in the column moves
there first.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOBS = sa.table(
    "jobs",
    sa.column("id", sa.BigInteger()),
    sa.column("task", sa.String(255)),
    sa.column("args", sa.JSON()),
    sa.column("kwargs", sa.JSON()),
    sa.column("workflow", sa.JSON()),
)


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(JOBS.c.id, JOBS.c.workflow).where(JOBS.c.workflow.is_not(None)))
    for job_id, workflow in rows.all():
        if workflow is None:  # a JSON null
            continue
        conn.execute(
            JOBS.update()
            .where(JOBS.c.id == job_id)
            .values(task="mainspring.workflow", args=[], kwargs={"definition": workflow})
        )
    # Not in batch mode: SQLite (3.35+) drops a column in place, where a batch would copy the
    # table and, with foreign keys on, detach the runs that reference it.
    op.drop_column("jobs", "workflow")


def downgrade() -> None:
    op.add_column("jobs", sa.Column("workflow", sa.JSON(), nullable=True))
