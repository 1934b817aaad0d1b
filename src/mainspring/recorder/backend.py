"""What the durable result backend knows about a run, as a patch. Pure: the caller reads meta.

Events can be missed (recorder down, events disabled, a client without ``task-sent``); the
result backend cannot: with ``result_extended`` it keeps the final state, result, traceback,
finish time, and the real (not repr'd) args, kwargs, task name, worker and queue.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mainspring.core.states import RunState
from mainspring.recorder.fold import RunPatch
from mainspring.recorder.masking import mask_value
from mainspring.recorder.writer import capped_result

BACKEND_STATES = {
    "SUCCESS": RunState.SUCCESS,
    "FAILURE": RunState.FAILURE,
    "REVOKED": RunState.REVOKED,
    "RETRY": RunState.RETRY,
    "STARTED": RunState.STARTED,
    "RECEIVED": RunState.RECEIVED,
}
EXTENDED_FIELDS = {"name": "task", "worker": "worker", "queue": "queue"}


def patch_from_meta(run_id: str, meta: dict[str, Any]) -> RunPatch | None:
    """The patch the backend's ``meta`` implies, or None when it knows nothing (PENDING)."""
    state = BACKEND_STATES.get(str(meta.get("status")))
    if state is None:
        return None
    patch = RunPatch(run_id=run_id)
    patch.values.update(extended_values(meta))
    result = meta.get("result")
    if state is RunState.SUCCESS:
        patch.values["result"] = capped_result(result)
    elif state is RunState.FAILURE:
        patch.values.update(_exception_values(result, meta.get("traceback")))
    elif state is RunState.STARTED and isinstance(result, dict):
        patch.set_first("worker", result.get("hostname"))
        patch.set_first("worker_pid", result.get("pid"))
    if state.is_final:
        patch.set_first("finished_at", parse_time(meta.get("date_done")))
    patch.move_to(state)
    return patch


def extended_values(meta: dict[str, Any]) -> dict[str, Any]:
    """Args, kwargs (masked), task name, worker and queue, when the backend stored them."""
    values: dict[str, Any] = {}
    if isinstance(meta.get("args"), list | tuple):
        values["args"] = mask_value(list(meta["args"]))
    if isinstance(meta.get("kwargs"), dict):
        values["kwargs"] = mask_value(meta["kwargs"])
    for source, target in EXTENDED_FIELDS.items():
        if meta.get(source):
            values[target] = str(meta[source])
    if isinstance(meta.get("retries"), int):
        values["attempt"] = meta["retries"]
    return values


def _exception_values(result: Any, traceback: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"traceback": traceback} if traceback else {}
    if isinstance(result, dict) and "exc_type" in result:
        message = result.get("exc_message")
        if isinstance(message, list | tuple):
            message = ", ".join(str(m) for m in message)
        values["exception_type"] = str(result["exc_type"])
        values["exception_message"] = "" if message is None else str(message)
    elif result is not None:
        values["exception_message"] = str(result)
    return values


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from a backend's ``date_done`` (datetime or ISO string)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
