"""Run statistics: runs by state over time buckets (overall or for one job), per job, and
how late the scheduler published.

Bucketing choice: the database groups, Python labels. One ``GROUP BY (slot, state)`` query
counts runs per fixed UTC slot of ``created_at`` (15 minutes, or an hour when the time zone's
offsets are whole hours), through an epoch-seconds expression compiled per dialect
(``strftime('%s')`` on SQLite, ``date_part('epoch')`` on PostgreSQL, ``TIMESTAMPDIFF`` on
MySQL/MariaDB, which ignores the session time zone). Only the few hundred or thousand
(slot, state) counts leave the database, however many runs the range holds, and the scan
uses the ``created_at`` index. Python then adds slots into local hours or days of the asked
time zone with ``zoneinfo``, which is where DST, half-hour offsets and 23- or 25-hour days
are handled correctly; SQL date functions differ on all three points between the databases.
Every real time-zone offset is a multiple of 15 minutes, so a slot never straddles a bucket.

Lateness percentiles are nearest-rank, read with ``ORDER BY lateness_ms LIMIT 1 OFFSET k``
(portable; PostgreSQL's ``percentile_cont`` has no MySQL or SQLite counterpart).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, Select, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import FunctionElement

from mainspring.core.triggers import zone
from mainspring.db.models import Job, Run
from mainspring.errors import ValidationError
from mainspring.services.clock import utcnow

Bucket = Literal["hour", "day"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
MAX_RANGE = {"hour": timedelta(days=31), "day": timedelta(days=400)}
DEFAULT_RANGE = {"hour": timedelta(hours=24), "day": timedelta(days=30)}
S = TypeVar("S", bound="Select[*tuple[Any, ...]]")


class epoch_slot(FunctionElement[int]):
    """``floor(seconds since 1970 UTC / width)`` of a naive-UTC or aware timestamp column."""

    type = Integer()
    inherit_cache = True

    def __init__(self, column: Any, width: int) -> None:
        super().__init__(column)
        self.width = int(width)


@compiles(epoch_slot, "sqlite")
def _slot_sqlite(element: epoch_slot, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', {column}) AS INTEGER) / {element.width})"


@compiles(epoch_slot, "postgresql")
def _slot_postgresql(element: epoch_slot, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    # date_part gives a float; extract (PostgreSQL 14+) a numeric, ~35 % slower over 30k rows.
    return f"CAST(floor(date_part('epoch', {column}) / {element.width}) AS BIGINT)"


@compiles(epoch_slot, "mysql")
def _slot_mysql(element: epoch_slot, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"(TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {column}) DIV {element.width})"


@dataclass(frozen=True)
class Range:
    since: datetime
    until: datetime


@dataclass
class StateCounts:
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, state: str, n: int) -> None:
        self.counts[state] = self.counts.get(state, 0) + n
        self.total += n


def time_range(
    since: datetime | None, until: datetime | None, bucket: Bucket | None = None
) -> Range:
    """The asked range, defaulting to the last day (hours) or 30 days (days), bounded so an
    answer stays small."""
    kind = bucket or "day"
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValidationError(name, "needs a time zone, e.g. 2025-03-01T00:00:00+08:00")
        if value is not None and not EPOCH <= value < LATEST:
            raise ValidationError(name, "must be between 1970 and 9998")
    end = until or utcnow()
    start = since or end - DEFAULT_RANGE[kind]
    if start >= end:
        raise ValidationError("since", "must be earlier than until")
    if bucket is not None and end - start > MAX_RANGE[kind]:
        days = MAX_RANGE[kind].days
        raise ValidationError("since", f"{kind} buckets cover at most {days} days; narrow it")
    return Range(start.astimezone(UTC), end.astimezone(UTC))


def _in_range(stmt: S, rng: Range, job_id: int | None) -> S:
    stmt = stmt.where(Run.created_at >= rng.since, Run.created_at < rng.until)
    return stmt.where(Run.job_id == job_id) if job_id is not None else stmt


def bucket_start(at: datetime, bucket: Bucket, tz: ZoneInfo) -> datetime:
    """The UTC instant at which ``at``'s local hour or day (in ``tz``) began."""
    local = at.astimezone(tz)
    if bucket == "hour":
        floor = local.replace(minute=0, second=0, microsecond=0)
    else:
        floor = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    return floor.astimezone(UTC)


def bucket_starts(rng: Range, bucket: Bucket, tz: ZoneInfo) -> list[datetime]:
    """Every bucket the range touches, as UTC instants, oldest first (empty ones too)."""
    step = timedelta(hours=1) if bucket == "hour" else timedelta(hours=26)
    starts, current = [], bucket_start(rng.since, bucket, tz)
    while current < rng.until:
        starts.append(current)
        nxt = bucket_start(current + step, bucket, tz)
        current = nxt if nxt > current else current + step
    return starts


def slot_width(tz: ZoneInfo, rng: Range) -> int:
    """An hour when every offset the zone uses in the range is whole hours, else 15 min."""
    at = rng.since
    while True:
        offset = at.astimezone(tz).utcoffset() or timedelta(0)
        if offset.total_seconds() % 3600:
            return 900
        if at >= rng.until:
            return 3600
        at = min(at + timedelta(days=7), rng.until)


def runs_by_state(
    session: Session, rng: Range, bucket: Bucket, tz_name: str, job_id: int | None = None
) -> tuple[StateCounts, list[tuple[datetime, StateCounts]]]:
    """Totals by state and, per local hour or day, counts by state (empty buckets included)."""
    tz = zone(tz_name)
    width = slot_width(tz, rng)
    slot = epoch_slot(Run.created_at, width)
    stmt = _in_range(select(slot, Run.state, func.count()), rng, job_id).group_by(slot, Run.state)
    buckets = {start: StateCounts() for start in bucket_starts(rng, bucket, tz)}
    totals = StateCounts()
    for index, state, n in session.execute(stmt):
        start = bucket_start(EPOCH + timedelta(seconds=int(index) * width), bucket, tz)
        buckets.setdefault(start, StateCounts()).add(state, n)
        totals.add(state, n)
    return totals, sorted(buckets.items())


def runs_by_job(
    session: Session, rng: Range, limit: int = 100
) -> list[tuple[int | None, str | None, StateCounts]]:
    """Per job (None: runs of no job), counts by state; most runs first."""
    stmt = _in_range(select(Run.job_id, Run.state, func.count()), rng, None)
    per_job: dict[int | None, StateCounts] = {}
    for job_id, state, n in session.execute(stmt.group_by(Run.job_id, Run.state)):
        per_job.setdefault(job_id, StateCounts()).add(state, n)
    top = sorted(per_job.items(), key=lambda item: (-item[1].total, item[0] or 0))[:limit]
    ids = [job_id for job_id, _ in top if job_id is not None]
    names = dict(session.execute(select(Job.id, Job.name).where(Job.id.in_(ids))).all())
    return [(job_id, names.get(job_id) if job_id else None, c) for job_id, c in top]


@dataclass(frozen=True)
class LatenessSummary:
    count: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None


def lateness(session: Session, rng: Range, job_id: int | None = None) -> LatenessSummary:
    """Nearest-rank p50/p95 and the maximum of ``lateness_ms`` of runs created in the range."""
    value = Run.lateness_ms
    base = _in_range(select(value), rng, job_id).where(value.is_not(None))
    count, top = session.execute(
        _in_range(select(func.count(value), func.max(value)), rng, job_id).where(value.is_not(None))
    ).one()
    if not count:
        return LatenessSummary(0, None, None, None)

    def percentile(p: float) -> float:
        offset = max(math.ceil(p / 100 * count) - 1, 0)
        return float(session.scalar(base.order_by(value).limit(1).offset(offset)) or 0.0)

    return LatenessSummary(int(count), percentile(50), percentile(95), float(top or 0.0))
