"""Reading jobs: one by id or name, locked for a versioned change, or pages with filters.

``lock_job`` is how writers avoid lost updates: the row is read fresh and locked until the
transaction ends (``FOR UPDATE`` on PostgreSQL/MySQL; SQLite takes its write lock at BEGIN),
and when the caller says which ``version`` it read, any other stored version is refused with
a ``StaleVersionError``. So of two edits made from the same read, exactly one succeeds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from mainspring.core.states import RunState
from mainspring.db.models import Job
from mainspring.errors import ConflictError, NotFoundError, ValidationError


class StaleVersionError(ConflictError):
    """The job changed since the caller read it: read it again and reapply the change."""

    field = "version"

    def __init__(self, sent: int, current: int) -> None:
        self.message = (
            f"you sent {sent} but the job is at version {current}: it was changed since "
            "you read it; read it again and reapply your change"
        )
        super().__init__(f"{self.field}: {self.message}")
        self.sent = sent
        self.current = current


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job with id {job_id}")
    return job


def get_job_by_name(session: Session, name: str) -> Job:
    job = session.scalar(select(Job).where(Job.name == name))
    if job is None:
        raise NotFoundError(f"no job named {name!r}")
    return job


def job_names(session: Session, job_ids: Iterable[int]) -> dict[int, str]:
    """The names of the jobs among ``job_ids`` that exist, in one query (for run lists)."""
    wanted = sorted(set(job_ids))
    if not wanted:
        return {}
    rows = session.execute(select(Job.id, Job.name).where(Job.id.in_(wanted)))
    return {job_id: name for job_id, name in rows}  # noqa: C416 - typed Row unpacking


def lock_job(
    session: Session, job_id: int | None = None, name: str | None = None, version: int | None = None
) -> Job:
    """The job by id (or name), freshly read and locked until the transaction ends; with
    ``version``, a ``StaleVersionError`` unless that is the stored version."""
    cond = Job.id == job_id if job_id is not None else Job.name == name
    stmt = select(Job).where(cond).with_for_update().execution_options(populate_existing=True)
    job = session.scalar(stmt)
    if job is None:
        raise NotFoundError(f"no job with id {job_id}" if job_id else f"no job named {name!r}")
    if version is not None and job.version != version:
        raise StaleVersionError(version, job.version)
    return job


@dataclass(frozen=True)
class JobFilter:
    """Jobs whose tags include ``tag``, enabled (or paused), whose last run ended in
    ``last_state``, on ``queue``, running ``task``, with ``text`` in name or description."""

    tag: str | None = None
    enabled: bool | None = None
    last_state: str | None = None
    queue: str | None = None
    task: str | None = None
    text: str | None = None


def _has_tag(session: Session, tag: str) -> ColumnElement[bool]:
    """JSON-array membership, in each database's own idiom."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        contains: ColumnElement[bool] = Job.tags.cast(JSONB).contains([tag])
        return contains
    if dialect in ("mysql", "mariadb"):
        return func.json_contains(Job.tags, json.dumps(tag)) == 1
    values = func.json_each(Job.tags).table_valued("value")
    return exists(select(1).select_from(values).where(values.c.value == tag))


def _filtered(session: Session, stmt: Select[Any], flt: JobFilter) -> Select[Any]:
    if flt.tag is not None:
        stmt = stmt.where(_has_tag(session, flt.tag))
    if flt.enabled is not None:
        stmt = stmt.where(Job.enabled.is_(flt.enabled))
    if flt.last_state is not None:
        try:
            stmt = stmt.where(Job.last_state == RunState(flt.last_state.upper()).value)
        except ValueError:
            allowed = ", ".join(s.value for s in RunState)
            raise ValidationError("last_state", f"must be one of {allowed}") from None
    if flt.queue is not None:
        stmt = stmt.where(Job.queue == flt.queue)
    if flt.task is not None:
        stmt = stmt.where(Job.task == flt.task)
    if flt.text:
        needle = flt.text.lower()
        stmt = stmt.where(
            func.lower(Job.name).contains(needle, autoescape=True)
            | func.lower(Job.description).contains(needle, autoescape=True)
        )
    return stmt


SORT_COLUMNS: dict[str, Any] = {
    "name": Job.name,
    "next_fire_at": Job.next_fire_at,
    "last_fire_at": Job.last_fire_at,
    "last_state": Job.last_state,
    "task": Job.task,
    "queue": Job.queue,
}


def _ordered(stmt: Select[Any], order: str) -> Select[Any]:
    """``order`` is a ``SORT_COLUMNS`` key, ``-key`` for descending; empty values come last
    either way (``IS NULL`` first in the key: MySQL has no ``NULLS LAST``), then by name."""
    key = order.removeprefix("-")
    column = SORT_COLUMNS.get(key)
    if column is None:
        raise ValidationError("sort", f"must be one of {', '.join(SORT_COLUMNS)}, or -name…")
    direction = column.desc() if order.startswith("-") else column.asc()
    return stmt.order_by(column.is_(None), direction, Job.name, Job.id)


def list_jobs(
    session: Session,
    limit: int = 100,
    offset: int = 0,
    flt: JobFilter | None = None,
    order: str = "name",
) -> list[Job]:
    """A page of the jobs matching ``flt``, in ``order`` (by name unless told)."""
    stmt = _ordered(_filtered(session, select(Job), flt or JobFilter()), order)
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def count_jobs(session: Session, flt: JobFilter | None = None) -> int:
    stmt = _filtered(session, select(func.count(Job.id)), flt or JobFilter())
    return int(session.scalar(stmt) or 0)
