"""Runs shown as Flower shows tasks: ``celery.events.state.Task.as_dict()`` plus the worker's
host name, and Celery's state names.

Flower knows a task from its events, so arguments and results are the ``saferepr`` strings
those events carry (``"[1, 2]"``, ``"3"``) and instants are epoch seconds. Mainspring keeps the
real values in the run; this module renders them the way Flower does so that scripts parsing
Flower's answers keep working. Mainspring's own view of the run is added under ``mainspring``
(an extra key, which Flower clients ignore).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from celery.utils.saferepr import saferepr

from mainspring.core.states import RunState
from mainspring.db.models import Run, Worker

# Mainspring's states as Celery names them. A run still waiting (SCHEDULED) or published
# (SENT) is PENDING to Celery; a lost run failed; an expired or skipped one was revoked.
CELERY_STATE = {
    RunState.SCHEDULED: "PENDING",
    RunState.SENT: "PENDING",
    RunState.RECEIVED: "RECEIVED",
    RunState.STARTED: "STARTED",
    RunState.RETRY: "RETRY",
    RunState.SUCCESS: "SUCCESS",
    RunState.FAILURE: "FAILURE",
    RunState.REVOKED: "REVOKED",
    RunState.LOST: "FAILURE",
    RunState.EXPIRED: "REVOKED",
    RunState.SKIPPED: "REVOKED",
}


def celery_state(state: str) -> str:
    try:
        return CELERY_STATE[RunState(state)]
    except ValueError:
        return state


def run_states_for(name: str) -> frozenset[str] | None:
    """The run states a Flower ``state`` filter means (Celery's names, or Mainspring's own
    such as LOST); None when the name is neither."""
    upper = name.strip().upper()
    if upper in RunState.__members__ and CELERY_STATE[RunState(upper)] != upper:
        return frozenset({upper})
    states = frozenset(s.value for s, celery in CELERY_STATE.items() if celery == upper)
    return states or None


def epoch(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def safe_result(value: Any) -> Any:
    """A JSON-encodable value, else its repr (Flower's ``safe_result``)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _eta(run: Run) -> str | None:
    """Celery's ``eta``: only delayed submissions have one (not fires of a schedule)."""
    if run.job_id is None and run.scheduled_for is not None:
        return run.scheduled_for.isoformat()
    return None


def _expires(run: Run) -> str | None:
    seconds = (run.options or {}).get("expires")
    start = run.sent_at or run.scheduled_for
    if not isinstance(seconds, int | float) or start is None:
        return None
    return (start + timedelta(seconds=seconds)).isoformat()


def _timestamp(run: Run) -> float | None:
    """The time of the run's latest event, as Flower's ``timestamp``."""
    instants = [run.finished_at, run.started_at, run.received_at, run.sent_at]
    latest = max((at for at in instants if at is not None), default=None)
    return epoch(latest or run.created_at)


def _outcome_times(run: Run) -> dict[str, float | None]:
    celery = celery_state(run.state)
    finished = epoch(run.finished_at)
    return {
        "succeeded": finished if celery == "SUCCESS" else None,
        "failed": finished if celery == "FAILURE" else None,
        "retried": epoch(run.updated_at) if run.state == RunState.RETRY.value else None,
        "revoked": finished if celery == "REVOKED" else None,
    }


def task_dict(run: Run, children: list[str] | None = None) -> dict[str, Any]:
    """One run in the shape of Flower's task dict (``/api/tasks``, ``/api/task/info``)."""
    succeeded = run.state == RunState.SUCCESS.value
    exception = exception_repr(run)
    return {
        "uuid": run.id,
        "name": run.task,
        "state": celery_state(run.state),
        "received": epoch(run.received_at),
        "sent": epoch(run.sent_at),
        "started": epoch(run.started_at),
        "rejected": None,
        **_outcome_times(run),
        "args": saferepr(run.args) if run.args is not None else None,
        "kwargs": saferepr(run.kwargs) if run.kwargs is not None else None,
        "eta": _eta(run),
        "expires": _expires(run),
        "retries": run.attempt,
        "worker": run.worker,
        "result": saferepr(run.result) if succeeded else None,
        "exception": exception if not succeeded else None,
        "timestamp": _timestamp(run),
        "runtime": run.runtime_ms / 1000 if run.runtime_ms is not None else None,
        "traceback": run.traceback,
        "exchange": None,
        "routing_key": run.routing_key,
        "clock": 0,
        "client": None,
        "root": run.root_id,
        "root_id": run.root_id,
        "parent": run.parent_id,
        "parent_id": run.parent_id,
        "children": list(children or []),
        "mainspring": {
            "state": run.state,
            "queue": run.queue,
            "trigger": run.trigger,
            "job_id": run.job_id,
        },
    }


def worker_dict(worker: Worker) -> dict[str, Any]:
    """What the registry knows of a worker, in the keys of Flower's ``/api/workers``.

    Flower fills these from ``inspect`` replies; without ``refresh`` we answer from the
    workers table (the recorder keeps it from heartbeats and inspections)."""
    return {
        "stats": {
            "pid": worker.pid,
            "pool": {"max-concurrency": worker.concurrency},
        },
        "active_queues": [{"name": queue} for queue in worker.queues or []],
        "registered": sorted(worker.registered_tasks or []),
        "timestamp": epoch(worker.last_heartbeat_at or worker.updated_at),
        "mainspring": {
            "status": worker.status,
            "pool": worker.pool,
            "concurrency": worker.concurrency,
            "active": worker.active,
            "processed": worker.processed,
            "loadavg": worker.loadavg,
            "last_heartbeat": epoch(worker.last_heartbeat_at),
        },
    }


def exception_repr(run: Run) -> str | None:
    """The exception as Flower shows it, ``repr(exc)``: ``ValueError('boom')``."""
    if run.exception_type and run.exception_message is not None:
        return f"{run.exception_type}({run.exception_message!r})"
    return run.exception_message or run.exception_type
