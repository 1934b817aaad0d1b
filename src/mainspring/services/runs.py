"""Reading run history: filters and keyset pagination that stay fast at millions of rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from mainspring.core.states import RunState
from mainspring.db.models import Run, RunLog
from mainspring.errors import NotFoundError, ValidationError


@dataclass(frozen=True)
class RunFilter:
    job_id: int | None = None
    task: str | None = None
    state: str | None = None
    worker: str | None = None
    queue: str | None = None


@dataclass(frozen=True)
class RunCursor:
    """Position after the last run of a page: newest first by (created_at, id)."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        return f"{self.created_at.isoformat()}|{self.id}"

    @classmethod
    def decode(cls, raw: str) -> RunCursor:
        try:
            at, run_id = raw.split("|", 1)
            return cls(created_at=datetime.fromisoformat(at), id=run_id)
        except ValueError:
            raise ValidationError("cursor", "is not a cursor returned by a previous page") from None


def _filtered(flt: RunFilter) -> Select[Run]:
    stmt = select(Run)
    if flt.job_id is not None:
        stmt = stmt.where(Run.job_id == flt.job_id)
    if flt.task:
        stmt = stmt.where(Run.task == flt.task)
    if flt.state:
        try:
            stmt = stmt.where(Run.state == RunState(flt.state.upper()).value)
        except ValueError:
            allowed = ", ".join(s.value for s in RunState)
            raise ValidationError("state", f"must be one of {allowed}") from None
    if flt.worker:
        stmt = stmt.where(Run.worker == flt.worker)
    if flt.queue:
        stmt = stmt.where(Run.queue == flt.queue)
    return stmt


def list_runs(
    session: Session, flt: RunFilter, limit: int = 50, cursor: RunCursor | None = None
) -> tuple[list[Run], RunCursor | None]:
    """A page of runs, newest first, and the cursor of the next page (None at the end)."""
    if not 1 <= limit <= 500:
        raise ValidationError("limit", "must be between 1 and 500")
    stmt = _filtered(flt)
    if cursor is not None:
        stmt = stmt.where(
            or_(
                Run.created_at < cursor.created_at,
                and_(Run.created_at == cursor.created_at, Run.id < cursor.id),
            )
        )
    stmt = stmt.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = RunCursor(created_at=last.created_at, id=last.id)
    return rows, next_cursor


def get_run(session: Session, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"no run with id {run_id!r}")
    return run


def run_log_text(session: Session, run_id: str, after_seq: int = -1) -> tuple[str, int]:
    """The run's log from ``after_seq`` on, and the last sequence number read."""
    rows = session.execute(
        select(RunLog.seq, RunLog.text)
        .where(RunLog.run_id == run_id, RunLog.seq > after_seq)
        .order_by(RunLog.seq)
    ).all()
    last = rows[-1][0] if rows else after_seq
    return "".join(text for _seq, text in rows), last
