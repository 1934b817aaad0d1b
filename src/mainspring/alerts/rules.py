"""Which runs a rule is about, and what an alert about a run says.

``run_verdict`` decides, for a run that just changed, whether a run rule fires on it; the
periodic rules (a fire not started in time, a run running too long) are found by queries in
``alerts.evaluate``. Every alert about a run carries the console path of the run
(``/runs/<id>``), the error and the tail of its log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mainspring.alerts.config import RuleKind, RuleParams
from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import AlertRule, Job, Run
from mainspring.services.runs import run_log_text

FAILED = frozenset({RunState.FAILURE.value, RunState.LOST.value})
ENDED = frozenset(s.value for s in RunState if s.is_final)
LOG_TAIL_CHARS = 2000


def in_scope(rule: AlertRule, run: Run, tags: dict[int, list[str]]) -> bool:
    """A global rule covers every run; a job rule that job's; a tag rule its jobs' runs."""
    if rule.job_id is not None:
        return run.job_id == rule.job_id
    if rule.tag is not None:
        return run.job_id is not None and rule.tag in tags.get(run.job_id, [])
    return True


def retries_of(run: Run) -> int:
    retry = (run.options or {}).get("retry") or {}
    try:
        return int(retry.get("retries") or 0)
    except (TypeError, ValueError, AttributeError):
        return 0


def previous_ended_state(session: Session, run: Run) -> str | None:
    """How the run of the same job before this one ended (None when there was none)."""
    if run.job_id is None:
        return None
    state: str | None = session.scalar(
        select(Run.state)
        .where(
            Run.job_id == run.job_id,
            Run.created_at < run.created_at,
            Run.state.in_(ENDED),
            Run.state != RunState.SKIPPED.value,
        )
        .order_by(Run.created_at.desc())
        .limit(1)
    )
    return state


def run_verdict(session: Session, kind: RuleKind, params: RuleParams, run: Run) -> str | None:
    """The alert's subject when rule ``kind`` fires on this changed run, else None."""
    name = run.task
    if kind is RuleKind.RUN_FAILED and run.state in FAILED:
        return f"run of {name} ended {run.state}"
    if kind is RuleKind.RETRIES_EXHAUSTED and run.state == RunState.FAILURE.value:
        retries = retries_of(run)
        if retries and run.attempt >= retries:
            return f"run of {name} failed after {retries} retries"
    limit_ms = params.max_duration_s * 1000
    if kind is RuleKind.DURATION_EXCEEDED and (run.runtime_ms or 0) > limit_ms:
        took = (run.runtime_ms or 0) / 1000
        return f"run of {name} took {took:.1f} s (max {params.max_duration_s:g} s)"
    if (
        kind is RuleKind.FIRE_MISSED
        and run.state == RunState.SKIPPED.value
        and run.trigger == TriggerSource.SCHEDULE.value
    ):
        return f"fire of {name} at {_at(run.scheduled_for)} was skipped: {run.reason or '?'}"
    if (
        kind is RuleKind.RECOVERED
        and run.state == RunState.SUCCESS.value
        and previous_ended_state(session, run) in FAILED
    ):
        return f"{name} recovered: first success after failures"
    return None


def _at(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "?"


def run_payload(session: Session, run: Run, subject: str, now: datetime) -> dict[str, Any]:
    """What channels receive about a run (the rule name and kind are added on raising)."""
    job = session.get(Job, run.job_id) if run.job_id is not None else None
    if job is not None:
        subject = f"[{job.name}] {subject}"
    log, _ = run_log_text(session, run.id)
    tail = log[-LOG_TAIL_CHARS:] or (run.traceback or "")[-LOG_TAIL_CHARS:]
    error = None
    if run.exception_type or run.exception_message:
        error = f"{run.exception_type or 'error'}: {run.exception_message or ''}".strip()
    return {
        "subject": subject[:500],
        "at": now.isoformat(),
        "link": f"/runs/{run.id}",
        "job": {"id": job.id, "name": job.name} if job else None,
        "run": {
            "id": run.id,
            "task": run.task,
            "state": run.state,
            "queue": run.queue,
            "worker": run.worker,
            "attempt": run.attempt,
            "scheduled_for": run.scheduled_for.isoformat() if run.scheduled_for else None,
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "runtime_ms": run.runtime_ms,
        },
        "error": error,
        "log_tail": tail,
    }


def run_key(run: Run) -> str:
    """Rate-limit key of a run alert: its job (one alert per flapping job), else its task."""
    return f"job:{run.job_id}" if run.job_id is not None else f"task:{run.task}"
