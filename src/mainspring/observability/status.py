"""Readiness checks and the whole-system summary behind ``/readyz`` and ``mainspring status``.

Each ``Check`` says whether one thing is fine and, in one line, what was found. What can be
known from outside a process: the database and broker answer; the schema is at the newest
migration; schedulers and recorders have live heartbeat rows (a recorder beats only while its
alerts action runs, i.e. a recorder of this version); workers are online in the ``workers``
table (kept by the recorder, so with no recorder alive it may be stale); queue lengths come
from the broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from mainspring.context import AppContext
from mainspring.db.migrate import current_revision, head_revision
from mainspring.observability.probe import (
    RECORDER_PREFIX,
    SCHEDULER_PREFIX,
    alive,
    recorder_lag_s,
    worker_counts,
)
from mainspring.services.clock import utcnow
from mainspring.services.queues import broker_channel, broker_kind, known_queues, queue_lengths


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_database(ctx: AppContext) -> list[Check]:
    """The database answers, and its schema is at the newest migration."""
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current, head = current_revision(ctx.engine), head_revision(ctx.engine)
    except Exception as exc:
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Check("database", False, f"unreachable: {line[:300]}")]
    migrated = Check(
        "migrations",
        current == head,
        f"at {current}"
        if current == head
        else f"at {current}, newest is {head}: run 'mainspring db upgrade'",
    )
    return [Check("database", True, ctx.engine.dialect.name), migrated]


def check_broker(app: Any) -> Check:
    if app is None:
        return Check("broker", False, "not configured")
    try:
        with broker_channel(app) as (conn, _channel):
            return Check("broker", True, broker_kind(conn))
    except Exception as exc:
        return Check("broker", False, str(exc).splitlines()[0][:300] if str(exc) else "unreachable")


@dataclass
class Summary:
    checks: list[Check] = field(default_factory=list)
    queues: dict[str, int | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def summarise(ctx: AppContext, app: Any) -> Summary:
    """Database, broker, roles alive, recorder lag, workers and queue lengths."""
    summary = Summary(checks=check_database(ctx))
    if not summary.checks[0].ok:
        return summary
    now = utcnow()
    with ctx.session() as session:
        schedulers = alive(session, SCHEDULER_PREFIX, now)
        recorders = alive(session, RECORDER_PREFIX, now)
        lag = recorder_lag_s(session, now)
        workers = worker_counts(session)
        names = list(known_queues(session, ctx.settings))
    summary.checks += [
        Check("schedulers", bool(schedulers), _alive(schedulers)),
        Check("recorders", bool(recorders), _alive(recorders)),
        Check("recorder lag", True, "idle" if lag is None else f"{lag:.2f} s"),
        Check("workers", workers.online > 0, f"{workers.online} online, {workers.offline} offline"),
    ]
    broker = check_broker(app)
    summary.checks.append(broker)
    if broker.ok:
        try:
            _kind, lengths = queue_lengths(app, names)
            summary.queues = {q.name: q.messages for q in lengths}
        except Exception as exc:
            summary.checks.append(Check("queues", False, str(exc)[:300]))
    return summary


def _alive(holders: list[str]) -> str:
    if not holders:
        return "none alive"
    shown = ", ".join(holders[:5]) + (" …" if len(holders) > 5 else "")
    return f"{len(holders)} alive ({shown})"
