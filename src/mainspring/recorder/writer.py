"""Writing a batch of folded events: runs, their log chunks and the workers registry.

Idempotent, so two recorders, or one replaying events, leave the same rows. The stored rows
of a batch are read once (locked on PostgreSQL and MySQL, so two recorders merge instead of
overwriting each other), merged with the patches in Python by the rules of ``fold`` (first
value wins, earliest instant wins, the state only moves forward), and written back with one
bulk upsert (``recorder.upsert``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from mainspring.core.states import FINAL_STATES, RunState, TriggerSource, WorkerStatus, advances
from mainspring.db.models import Job, Run, RunLog, Worker
from mainspring.recorder.fold import RunPatch
from mainspring.recorder.masking import mask_value
from mainspring.recorder.upsert import upsert
from mainspring.worker.runlog import DEFAULT_CAP_BYTES, TRUNCATION_MARKER
from mainspring.workflows.definition import WORKFLOW_TASK

RESULT_CAP_BYTES = 64 * 1024
LOG_CAP_BYTES = DEFAULT_CAP_BYTES
MARKER_ROOM = 4 * 1024
WRITE_LOCK_KEY = 0x6D73_7265_636F  # PostgreSQL advisory lock of run writes ("msreco")
RUNS = cast(Table, Run.__table__)
JOBS = cast(Table, Job.__table__)
LOGS = cast(Table, RunLog.__table__)
# What the recorder writes on a stored run; the rest (job, trigger, lease…) belongs to others.
MANAGED = (
    "task",
    "args",
    "kwargs",
    "options",
    "queue",
    "routing_key",
    "worker",
    "worker_pid",
    "state",
    "attempt",
    "sent_at",
    "received_at",
    "started_at",
    "finished_at",
    "updated_at",
    "runtime_ms",
    "result",
    "exception_type",
    "exception_message",
    "traceback",
    "parent_id",
    "root_id",
    "log_bytes",
    "log_truncated",
)
_READ = ("id", "job_id", "trigger", "created_at", *MANAGED)
_VALUE_COLUMNS = frozenset(MANAGED) - {"options", "state", "updated_at", "log_bytes"}
_FINAL = frozenset(s.value for s in FINAL_STATES)


def write_runs(
    session: Session, patches: dict[str, RunPatch], now: datetime, log_cap: int = LOG_CAP_BYTES
) -> list[str]:
    """Merge patches into ``runs`` (creating rows for runs sent by plain Celery clients) and
    append their log chunks. Returns the ids the workflow and dependency hooks must see."""
    if not patches:
        return []
    stored = _read_rows(session, sorted(patches))
    rows: dict[str, dict[str, Any]] = {}
    job_states: list[dict[str, Any]] = []
    for run_id, patch in patches.items():
        row = stored.get(run_id)
        if row is None:
            row = _new_external_row(patch, now)
        rows[run_id] = row
        _apply(row, patch, now)
        if row["job_id"] is not None and patch.state is not None and row["state"] == patch.state:
            job_states.append({"b_job": row["job_id"], "b_run": run_id, "b_state": row["state"]})
    logs = _new_logs(session, [p for p in patches.values() if p.logs], rows, log_cap)
    upsert(session, RUNS, list(rows.values()), MANAGED)
    if logs:
        session.execute(LOGS.insert(), logs)
    if job_states:
        _update_job_last_states(session, job_states)
    return [run_id for run_id, row in rows.items() if _hooks_care(row)]


def _read_rows(session: Session, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored rows of the batch, locked until the batch commits, so that recorders
    sharing the queue merge rather than overwrite: SQLite writes one transaction at a time;
    MySQL locks the rows and the gaps of absent ones (a second inserter waits or deadlocks
    and retries); PostgreSQL locks no gaps, so its recorders take turns on an advisory lock."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))
    stmt = select(*(RUNS.c[name] for name in _READ)).where(RUNS.c.id.in_(ids)).order_by(RUNS.c.id)
    if dialect != "sqlite":
        stmt = stmt.with_for_update()
    return {row.id: dict(row._mapping) for row in session.execute(stmt)}


def _new_external_row(patch: RunPatch, now: datetime) -> dict[str, Any]:
    created = min(
        (v for k, v in patch.values.items() if k.endswith("_at") and isinstance(v, datetime)),
        default=now,
    )
    row: dict[str, Any] = dict.fromkeys(_READ)
    row.update(
        id=patch.run_id,
        task="unknown",
        state=(patch.state or RunState.SENT).value,
        trigger=TriggerSource.EXTERNAL.value,
        attempt=0,
        options={},
        created_at=created,
        log_bytes=0,
        log_truncated=False,
    )
    return row


def _apply(row: dict[str, Any], patch: RunPatch, now: datetime) -> None:
    for key, value in patch.values.items():
        if key in ("args_repr", "kwargs_repr", "retry_exception"):
            if key != "retry_exception" and (row["options"] or {}).get(key) is None:
                row["options"] = {**(row["options"] or {}), key: value}
            continue
        if key not in _VALUE_COLUMNS:
            continue
        if key == "attempt":
            row["attempt"] = max(row["attempt"] or 0, int(value))
        elif _replaces(row[key], value) or (key == "task" and row["task"] == "unknown"):
            row[key] = value
    if patch.state is not None and advances(RunState(row["state"]), patch.state):
        row["state"] = patch.state.value
    if row["started_at"] and row["finished_at"] and row["runtime_ms"] is None:
        row["runtime_ms"] = (row["finished_at"] - row["started_at"]).total_seconds() * 1000
    for column in ("args", "kwargs"):  # secrets never stay, whoever wrote them
        row[column] = mask_value(row[column])
    row["updated_at"] = now


def _replaces(current: Any, value: Any) -> bool:
    """A column takes a value when empty; an instant also when the new one is earlier."""
    if current is None:
        return True
    return isinstance(value, datetime) and isinstance(current, datetime) and value < current


def _hooks_care(row: dict[str, Any]) -> bool:
    """Workflow steps and roots, and job runs that ended (dependencies may start)."""
    if row["task"] == WORKFLOW_TASK or (row["root_id"] and row["root_id"] != row["id"]):
        return True
    return row["job_id"] is not None and row["state"] in _FINAL


def _update_job_last_states(session: Session, params: list[dict[str, Any]]) -> None:
    """A job shows the state of its newest run (the one it points at, or its first)."""
    run: Any = bindparam("b_run")
    stmt = (
        update(JOBS)
        .where(
            JOBS.c.id == bindparam("b_job"),
            or_(JOBS.c.last_run_id.is_(None), JOBS.c.last_run_id == run),
        )
        .values(last_state=bindparam("b_state"), last_run_id=run)
    )
    session.execute(stmt, params)


def _new_logs(
    session: Session, patches: list[RunPatch], rows: dict[str, dict[str, Any]], log_cap: int
) -> list[dict[str, Any]]:
    """Chunks to store, in order, once each; past ``log_cap`` (plus room for the worker's own
    marker) one marker is stored and the rest dropped. Updates the rows' byte counts."""
    if not patches:
        return []
    keys = [(p.run_id, c.seq) for p in patches for c in p.logs]
    stmt = select(LOGS.c.run_id, LOGS.c.seq).where(tuple_(LOGS.c.run_id, LOGS.c.seq).in_(keys))
    seen: set[tuple[str, int]] = {(row[0], row[1]) for row in session.execute(stmt)}
    out = []
    for patch in patches:
        row = rows[patch.run_id]
        for chunk in sorted(patch.logs, key=lambda c: c.seq):
            if (patch.run_id, chunk.seq) in seen or row["log_truncated"]:
                continue
            seen.add((patch.run_id, chunk.seq))  # a chunk delivered twice in one batch
            size = len(chunk.text.encode("utf-8", "replace"))
            text = chunk.text
            if row["log_bytes"] + size > log_cap + MARKER_ROOM:
                text = TRUNCATION_MARKER.format(cap=log_cap)
                row["log_truncated"] = True
            elif chunk.truncated:
                row["log_truncated"] = True  # the worker hit its cap and sent its marker
            out.append(
                {"run_id": patch.run_id, "seq": chunk.seq, "at": chunk.at}
                | {"stream": chunk.stream, "text": text}
            )
            row["log_bytes"] += size
    return out


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
