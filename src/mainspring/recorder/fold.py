"""Folding Celery events into per-run changes. Pure: no I/O, any order, any repetition.

A ``RunPatch`` gathers what a batch of events says about one run. Timestamps keep the earliest
value seen (a retried run started when its first attempt did), and the state only moves
forward along the lifecycle (``core.states.advances``), so replaying or reordering events
yields the same record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mainspring.core.states import RunState, advances
from mainspring.recorder.exceptions import split_exception
from mainspring.recorder.masking import mask_repr

TASK_EVENT_STATES = {
    "task-sent": RunState.SENT,
    "task-received": RunState.RECEIVED,
    "task-started": RunState.STARTED,
    "task-succeeded": RunState.SUCCESS,
    "task-failed": RunState.FAILURE,
    "task-retried": RunState.RETRY,
    "task-revoked": RunState.REVOKED,
    "task-rejected": RunState.FAILURE,
}

TIME_FIELD = {
    "task-sent": "sent_at",
    "task-received": "received_at",
    "task-started": "started_at",
    "task-succeeded": "finished_at",
    "task-failed": "finished_at",
    "task-revoked": "finished_at",
    "task-rejected": "finished_at",
}


COPIED_FIELDS = {
    "name": "task",
    "queue": "queue",
    "routing_key": "routing_key",
    "hostname": "worker",
    "pid": "worker_pid",
    "root_id": "root_id",
    "parent_id": "parent_id",
}


@dataclass
class LogChunk:
    seq: int
    at: datetime
    stream: str
    text: str
    truncated: bool = False


@dataclass
class RunPatch:
    run_id: str
    state: RunState | None = None
    values: dict[str, Any] = field(default_factory=dict)
    logs: list[LogChunk] = field(default_factory=list)

    def set_first(self, key: str, value: Any) -> None:
        """Keep the first value seen; for instants, the earliest (so order does not matter)."""
        if value is None:
            return
        current = self.values.get(key)
        if current is None or (
            isinstance(value, datetime) and isinstance(current, datetime) and value < current
        ):
            self.values[key] = value

    def move_to(self, state: RunState) -> None:
        if advances(self.state, state):
            self.state = state

    def merge(self, other: RunPatch) -> None:
        """Take in what ``other`` says (a batch that could not be written, say)."""
        for key, value in other.values.items():
            if key == "attempt":
                self.values[key] = max(int(value), int(self.values.get(key, 0)))
            else:
                self.set_first(key, value)
        if other.state is not None:
            self.move_to(other.state)
        self.logs.extend(other.logs)


def event_time(event: dict[str, Any]) -> datetime:
    ts = event.get("timestamp")
    if isinstance(ts, int | float):
        return datetime.fromtimestamp(ts, UTC)
    return datetime.now(UTC)


def _chunk_time(event: dict[str, Any]) -> datetime:
    """When the chunk's first line was written (``at``), else when the event was sent."""
    at = event.get("at")
    if isinstance(at, str):
        try:
            parsed = datetime.fromisoformat(at)
        except ValueError:
            return event_time(event)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return event_time(event)


def fold(patches: dict[str, RunPatch], event: dict[str, Any]) -> None:
    """Apply one task event to the patch of its run (creating the patch if needed)."""
    etype = event.get("type", "")
    run_id = event.get("uuid")
    if not run_id or not etype.startswith("task-"):
        return
    patch = patches.setdefault(run_id, RunPatch(run_id=run_id))
    if etype == "task-log":
        patch.logs.append(
            LogChunk(
                seq=int(event.get("seq", 0)),
                at=_chunk_time(event),
                stream=str(event.get("stream", "stdout"))[:16],
                text=str(event.get("text", "")),
                truncated=bool(event.get("truncated")),
            )
        )
        return
    state = TASK_EVENT_STATES.get(etype)
    if state is None:
        return
    at = event_time(event)
    _copy_fields(patch, event, etype)
    if etype in TIME_FIELD:
        patch.set_first(TIME_FIELD[etype], at)
    if etype == "task-failed":
        traceback = event.get("traceback")
        kind, message = split_exception(str(event.get("exception") or ""), traceback)
        patch.set_first("exception_type", kind)
        patch.set_first("exception_message", message)
        patch.set_first("traceback", traceback)
    if etype == "task-revoked" and event.get("expired"):
        state = RunState.EXPIRED
    if etype == "task-retried":
        patch.values["retry_exception"] = event.get("exception")
    if etype in ("task-received", "task-retried"):
        patch.values["attempt"] = max(
            int(event.get("retries") or 0), patch.values.get("attempt", 0)
        )
    if etype == "task-succeeded" and event.get("runtime") is not None:
        patch.set_first("runtime_ms", float(event["runtime"]) * 1000)
    patch.move_to(state)


def _copy_fields(patch: RunPatch, event: dict[str, Any], etype: str) -> None:
    for source, target in COPIED_FIELDS.items():
        value = event.get(source)
        if value in (None, ""):
            continue
        if source == "hostname" and etype == "task-sent":
            continue  # the sender's host, not the worker's
        patch.set_first(target, value)
    for source in ("args", "kwargs"):
        if event.get(source) is not None:
            patch.set_first(f"{source}_repr", mask_repr(str(event[source])))
