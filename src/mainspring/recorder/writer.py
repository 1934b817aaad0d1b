"""Writing a batch of folded events: runs, their log chunks and the workers registry.

Idempotent, so two recorders, or one replaying events, leave the same rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from mainspring.core.states import RunState, TriggerSource, WorkerStatus, advances
from mainspring.db.models import Job, Run, RunLog, Worker
from mainspring.recorder.fold import RunPatch
from mainspring.recorder.masking import mask_value
from mainspring.worker.runlog import DEFAULT_CAP_BYTES, TRUNCATION_MARKER

RESULT_CAP_BYTES = 64 * 1024
LOG_CAP_BYTES = DEFAULT_CAP_BYTES
MARKER_ROOM = 4 * 1024
_RUN_COLUMNS = set(Run.__table__.columns.keys())


def write_runs(
    session: Session, patches: dict[str, RunPatch], now: datetime, log_cap: int = LOG_CAP_BYTES
) -> None:
    """Merge patches into ``runs`` (creating rows for runs sent by plain Celery clients)."""
    if not patches:
        return
    existing = {
        run.id: run for run in session.scalars(select(Run).where(Run.id.in_(list(patches))))
    }
    for run_id, patch in patches.items():
        run = existing.get(run_id)
        if run is None:
            run = existing[run_id] = _new_external_run(session, patch, now)
        _apply(run, patch, now)
        if run.job_id is not None and patch.state is not None and run.state == patch.state.value:
            _update_job_last_state(session, run)
    session.flush()
    _append_logs(session, [p for p in patches.values() if p.logs], existing, log_cap)


def _new_external_run(session: Session, patch: RunPatch, now: datetime) -> Run:
    created = min(
        (v for k, v in patch.values.items() if k.endswith("_at") and isinstance(v, datetime)),
        default=now,
    )
    run = Run(
        id=patch.run_id,
        task=patch.values.get("task", "unknown"),
        state=(patch.state or RunState.SENT).value,
        trigger=TriggerSource.EXTERNAL.value,
        attempt=0,
        options={},
        created_at=created,
        updated_at=now,
        log_bytes=0,
        log_truncated=False,
    )
    session.add(run)
    return run


def _apply(run: Run, patch: RunPatch, now: datetime) -> None:
    for key, value in patch.values.items():
        if key in ("args_repr", "kwargs_repr", "retry_exception"):
            if key != "retry_exception" and run.options.get(key) is None:
                run.options = {**run.options, key: value}
            continue
        if key not in _RUN_COLUMNS:
            continue
        if key == "attempt":
            run.attempt = max(run.attempt or 0, int(value))
        elif _replaces(getattr(run, key), value) or (key == "task" and run.task == "unknown"):
            setattr(run, key, value)
    if patch.state is not None and advances(RunState(run.state), patch.state):
        run.state = patch.state.value
    if run.started_at and run.finished_at and run.runtime_ms is None:
        run.runtime_ms = (run.finished_at - run.started_at).total_seconds() * 1000
    _mask_arguments(run)
    run.updated_at = now


def _replaces(current: Any, value: Any) -> bool:
    """A column takes a value when empty; an instant also when the new one is earlier."""
    if current is None:
        return True
    return isinstance(value, datetime) and isinstance(current, datetime) and value < current


def _mask_arguments(run: Run) -> None:
    """Secrets never stay in stored arguments, whoever wrote them (assign only on change, so
    an untouched row is not rewritten)."""
    for column in ("args", "kwargs"):
        value = getattr(run, column)
        masked = mask_value(value)
        if masked != value:
            setattr(run, column, masked)


def _update_job_last_state(session: Session, run: Run) -> None:
    job = session.get(Job, run.job_id)
    if job is not None and job.last_run_id in (None, run.id):
        job.last_state = run.state
        job.last_run_id = run.id


def _append_logs(
    session: Session, patches: list[RunPatch], runs: dict[str, Run], log_cap: int
) -> None:
    """Store chunks in order, once each; past ``log_cap`` (plus room for the worker's own
    marker) one marker is stored and the rest dropped."""
    if not patches:
        return
    keys = [(p.run_id, c.seq) for p in patches for c in p.logs]
    seen = set(
        session.execute(
            select(RunLog.run_id, RunLog.seq).where(tuple_(RunLog.run_id, RunLog.seq).in_(keys))
        ).all()
    )
    for patch in patches:
        run = runs.get(patch.run_id) or session.get(Run, patch.run_id)
        if run is None:
            continue
        for chunk in sorted(patch.logs, key=lambda c: c.seq):
            if (patch.run_id, chunk.seq) in seen or run.log_truncated:
                continue
            size = len(chunk.text.encode("utf-8", "replace"))
            text = chunk.text
            if run.log_bytes + size > log_cap + MARKER_ROOM:
                text = TRUNCATION_MARKER.format(cap=log_cap)
                run.log_truncated = True
            elif chunk.truncated:
                run.log_truncated = True  # the worker hit its cap and sent its marker
            session.add(
                RunLog(run_id=run.id, seq=chunk.seq, at=chunk.at, stream=chunk.stream, text=text)
            )
            run.log_bytes += size


def capped_result(value: Any) -> Any:
    """A JSON-able result no larger than the cap; bigger ones become a marked prefix."""
    import json

    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError):
        encoded = json.dumps(repr(value))
        value = repr(value)
    if len(encoded) <= RESULT_CAP_BYTES:
        return value
    return {"truncated": True, "prefix": encoded[:RESULT_CAP_BYTES]}


def write_workers(session: Session, events: list[dict[str, Any]], now: datetime) -> None:
    """Fold worker-online / heartbeat / offline events into the registry, newest wins."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        host = event.get("hostname")
        if host and event.get("timestamp", 0) >= latest.get(host, {}).get("timestamp", 0):
            latest[host] = event
    for host, event in latest.items():
        worker = session.get(Worker, host)
        at = datetime.fromtimestamp(float(event.get("timestamp") or now.timestamp()), UTC)
        if worker is None:
            worker = Worker(
                hostname=host,
                first_seen_at=at,
                queues=[],
                registered_tasks=[],
                software={},
                capabilities={},
                active=0,
                processed=0,
            )
            session.add(worker)
        elif worker.last_heartbeat_at and worker.last_heartbeat_at > at:
            continue
        offline = event.get("type") == "worker-offline"
        worker.status = (WorkerStatus.OFFLINE if offline else WorkerStatus.ONLINE).value
        worker.last_heartbeat_at = at
        worker.pid = event.get("pid") or worker.pid
        worker.active = int(event.get("active") or 0)
        worker.processed = int(event.get("processed") or worker.processed or 0)
        worker.loadavg = event.get("loadavg")
        worker.software = {k: event.get(k) for k in ("sw_ident", "sw_ver", "sw_sys")}
        worker.updated_at = now
