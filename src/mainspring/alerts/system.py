"""System-wide rules: a worker offline, no scheduler alive, the recorder lagging, a long queue.

A condition alerts once per episode (a worker's silence, a scheduler outage), and a lasting
condition without episodes (lag, queue length) at most once per cooldown: the rate limit of
``alerts.delivery.raise_alert`` applies to all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mainspring.alerts.config import RuleKind, load_params
from mainspring.alerts.delivery import raise_alert
from mainspring.core.states import WorkerStatus
from mainspring.db.models import Alert, AlertRule, Worker
from mainspring.observability.probe import SCHEDULER_PREFIX, alive, recorder_lag_s

WORKER_MEMORY = timedelta(days=1)  # a worker silent for longer is gone, not offline


@dataclass
class SystemState:
    """What the evaluator remembers between ticks about outages."""

    started: datetime
    scheduler_seen: datetime | None = None
    queue_lengths: dict[str, int | None] = field(default_factory=dict)


def _alerted_since(session: Session, rule: AlertRule, key: str, since: datetime) -> bool:
    found = session.scalar(
        select(Alert.id)
        .where(Alert.rule_id == rule.id, Alert.dedup_key == key, Alert.created_at >= since)
        .limit(1)
    )
    return found is not None


def _payload(subject: str, now: datetime, **extra: Any) -> dict[str, Any]:
    return {"subject": subject, "at": now.isoformat(), "link": None, **extra}


def workers_offline(session: Session, rule: AlertRule, now: datetime) -> int:
    rows = session.execute(
        select(Worker.hostname, Worker.last_heartbeat_at, Worker.updated_at).where(
            Worker.status == WorkerStatus.OFFLINE.value,
            Worker.updated_at >= now - WORKER_MEMORY,
        )
    ).all()
    raised = 0
    for host, heartbeat, updated in rows:
        key = f"worker:{host}"
        since = heartbeat or updated
        if _alerted_since(session, rule, key, since):
            continue
        subject = f"worker {host} is offline (last heartbeat {since.isoformat(timespec='seconds')})"
        payload = _payload(subject, now, worker=host, link="/workers")
        raised += raise_alert(session, rule, key, payload, now) is not None
    return raised


def scheduler_down(session: Session, rule: AlertRule, now: datetime, state: SystemState) -> int:
    if alive(session, SCHEDULER_PREFIX, now):
        state.scheduler_seen = now
        return 0
    down_since = state.scheduler_seen or state.started
    params = load_params(rule.params)
    if (now - down_since).total_seconds() < params.grace_s:
        return 0
    if _alerted_since(session, rule, "scheduler", down_since):
        return 0
    subject = "no scheduler is alive: scheduled jobs are not firing"
    payload = _payload(subject, now, down_since=down_since.isoformat())
    return int(raise_alert(session, rule, "scheduler", payload, now) is not None)


def recorder_lag(session: Session, rule: AlertRule, now: datetime) -> int:
    lag = recorder_lag_s(session, now)
    params = load_params(rule.params)
    if lag is None or lag <= params.max_lag_s:
        return 0
    subject = f"recorder is {lag:.1f} s behind (max {params.max_lag_s:g} s)"
    payload = _payload(subject, now, lag_s=lag)
    return int(raise_alert(session, rule, "recorder", payload, now) is not None)


def long_queues(session: Session, rule: AlertRule, now: datetime, state: SystemState) -> int:
    params = load_params(rule.params)
    raised = 0
    for name, length in state.queue_lengths.items():
        if params.queue is not None and name != params.queue:
            continue
        if length is None or length <= params.max_length:
            continue
        subject = f"queue {name} holds {length} messages (max {params.max_length})"
        payload = _payload(subject, now, queue=name, length=length, link="/queues")
        raised += raise_alert(session, rule, f"queue:{name}", payload, now) is not None
    return raised


def evaluate_system(
    session: Session, rules: list[AlertRule], now: datetime, state: SystemState
) -> int:
    raised = 0
    for rule in rules:
        kind = RuleKind(rule.kind)
        if kind is RuleKind.WORKER_OFFLINE:
            raised += workers_offline(session, rule, now)
        elif kind is RuleKind.SCHEDULER_DOWN:
            raised += scheduler_down(session, rule, now, state)
        elif kind is RuleKind.RECORDER_LAG:
            raised += recorder_lag(session, rule, now)
        elif kind is RuleKind.QUEUE_LENGTH:
            raised += long_queues(session, rule, now, state)
    return raised
