"""The job form's fields: from a posted form to a ``JobSpec`` (with errors by field), and
from a stored job back to the form's values.

The form is flat text, as browsers post it: the trigger is a kind plus the fields of that
kind, times are ``datetime-local`` values read in the job's own time zone, the task is
either a built-in type with its parameters as fields or a registered name with ``args`` and
``kwargs`` as JSON. Everything here checks shape only; ``services.jobs`` checks the rest and
its errors are mapped back to the field they belong to (``service_field``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from mainspring.console import builtin_fields
from mainspring.console.i18n import N_
from mainspring.core.states import MisfirePolicy, OverlapPolicy
from mainspring.core.triggers import zone
from mainspring.db.models import Job
from mainspring.errors import ValidationError
from mainspring.services.jobs import JobSpec
from mainspring.worker.schemas import BUILTIN_PARAMS

Values = dict[str, str]
Errors = dict[str, str]
FORM_ERROR = "_form"
TRIGGER_KINDS = ("cron", "interval", "once", "manual")
UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
LOCAL_FORMAT = "%Y-%m-%dT%H:%M:%S"
CHECKBOXES = ("enabled", "broadcast", "window", "window_as_kwargs", "retry_jitter")

# Service field names (``ValidationError.field``) -> the form input showing that value.
_SERVICE_FIELDS = {
    "trigger": "trigger_kind",
    "trigger.kind": "trigger_kind",
    "trigger.expr": "cron_expr",
    "trigger.every_ms": "every",
    "trigger.anchor": "every",
    "trigger.at": "once_at",
    "data_window": "window_lookback_s",
    "data_window.lookback_s": "window_lookback_s",
    "data_window.as_kwargs": "window_as_kwargs",
    "options": "retries",
    "options.retry": "retries",
}


def service_field(field: str, task_mode: str, task: str) -> str:
    """The input that shows a service error on ``field``."""
    if field in _SERVICE_FIELDS:
        return _SERVICE_FIELDS[field]
    if field.startswith("options."):
        name = field.split(".")[1]
        return (
            name if name in ("soft_time_limit", "time_limit", "expires", "priority") else "retries"
        )
    head = field.split(".", 1)[0]
    if head in ("args", "kwargs"):  # e.g. kwargs.definition.steps of a workflow job
        return f"param:{task}:" if task_mode == "builtin" else head
    return field if field in SHOWN_INPUTS else FORM_ERROR


# Inputs that show their own error; a service error on any other field goes to the form's top.
SHOWN_INPUTS = frozenset(
    {"name", "description", "tags", "trigger_kind", "cron_expr", "every", "once_at",
     "timezone", "builtin", "task", "args", "kwargs", "queue", "target_worker", "broadcast",
     "misfire_policy", "misfire_grace_s", "overlap_policy", "jitter_ms", "start_at", "end_at",
     "max_runs", "window_lookback_s", "window_as_kwargs", "retries", "soft_time_limit",
     "time_limit", "expires", "priority"}
)  # fmt: skip


def new_values(timezone: str, queue: str) -> Values:
    """A blank form: enabled, cron, the reader's zone, the default queue and policies."""
    values = {
        "enabled": "on",
        "trigger_kind": "cron",
        "every_unit": "s",
        "timezone": timezone,
        "task_mode": "builtin",
        "builtin": "mainspring.shell",
        "args": "[]",
        "kwargs": "{}",
        "queue": queue,
        "misfire_policy": MisfirePolicy.RUN_ONCE.value,
        "misfire_grace_s": "60",
        "overlap_policy": OverlapPolicy.ALLOW.value,
        "jitter_ms": "0",
        "retry_jitter": "on",
    }
    for fields in builtin_fields.all_param_fields().values():
        for field in fields:
            if field.kind == "bool" and field.default:
                values[field.input_name] = "on"
    return values


def job_values(job: Job) -> Values:
    """A stored job as the form shows it."""
    tz = ZoneInfo(job.timezone)
    values = new_values(job.timezone, job.queue)
    values.update(
        name=job.name,
        description=job.description,
        enabled="on" if job.enabled else "",
        tags=", ".join(job.tags or []),
        args=json.dumps(job.args, ensure_ascii=False),
        kwargs=json.dumps(job.kwargs, ensure_ascii=False),
        target_worker=job.target_worker or "",
        broadcast="on" if job.broadcast else "",
        misfire_policy=job.misfire_policy,
        misfire_grace_s=str(job.misfire_grace_s),
        overlap_policy=job.overlap_policy,
        jitter_ms=str(job.jitter_ms),
        start_at=_local(job.start_at, tz),
        end_at=_local(job.end_at, tz),
        max_runs="" if job.max_runs is None else str(job.max_runs),
        version=str(job.version),
    )
    values.update(_trigger_values(job.trigger, tz))
    values.update(_task_values(job.task, job.kwargs))
    values.update(_window_values(job.data_window))
    values.update(_option_values(job.options or {}))
    return values


def _local(value: datetime | None, tz: ZoneInfo) -> str:
    return "" if value is None else value.astimezone(tz).strftime(LOCAL_FORMAT)


def _trigger_values(trigger: dict[str, Any], tz: ZoneInfo) -> Values:
    kind = str(trigger.get("kind", "manual"))
    values = {"trigger_kind": kind}
    if kind == "cron":
        values["cron_expr"] = str(trigger.get("expr", ""))
    elif kind == "interval":
        every_ms = int(trigger.get("every_ms", 0))
        unit = next(u for u in ("h", "min", "s", "ms") if every_ms % UNITS_MS[u] == 0)
        values.update(every=str(every_ms // UNITS_MS[unit]), every_unit=unit)
        values["anchor"] = str(trigger.get("anchor") or "")  # an edit keeps the phase
    elif kind == "once":
        values["once_at"] = _local(datetime.fromisoformat(str(trigger["at"])), tz)
    return values


def _task_values(task: str, kwargs: dict[str, Any]) -> Values:
    if task in BUILTIN_PARAMS:
        return {"task_mode": "builtin", "builtin": task, **builtin_fields.form_values(task, kwargs)}
    return {"task_mode": "registered", "task": task}


def _window_values(window: dict[str, Any] | None) -> Values:
    if window is None:
        return {}
    lookback = window.get("lookback_s")
    return {
        "window": "on",
        "window_lookback_s": "" if lookback is None else str(lookback),
        "window_as_kwargs": "on" if window.get("as_kwargs") else "",
    }


def _option_values(options: dict[str, Any]) -> Values:
    values = {k: str(options[k]) for k in ("soft_time_limit", "time_limit", "expires", "priority")
              if options.get(k) is not None}  # fmt: skip
    retry = options.get("retry")
    if isinstance(retry, dict):
        values.update(
            retries=str(retry.get("retries", 0)),
            backoff=str(retry.get("backoff", "")),
            backoff_max=str(retry.get("backoff_max", "")),
            retry_jitter="on" if retry.get("jitter", True) else "",
        )
    else:
        values["retry_jitter"] = "on"
    return values


# --- parsing ------------------------------------------------------------------------------


class _Reader:
    """Typed reads of the posted values that collect errors instead of stopping at one."""

    def __init__(self, values: Values, gettext: Callable[[str], str]) -> None:
        self.values = values
        self.errors: Errors = {}
        self.tr = gettext

    def text(self, name: str) -> str:
        return self.values.get(name, "").strip()

    def checked(self, name: str) -> bool:
        return self.values.get(name) == "on"

    def whole(self, name: str, low: int, high: int) -> int | None:
        raw = self.text(name)
        if not raw:
            return None
        try:
            number = int(raw)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            self.errors[name] = self.tr(N_("must be a whole number in the allowed range"))
            return None
        return number

    def number(self, name: str, low: float, high: float) -> float | None:
        raw = self.text(name)
        if not raw:
            return None
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and low < number <= high):
            self.errors[name] = self.tr(N_("must be a positive number in the allowed range"))
            return None
        return number

    def instant(self, name: str, timezone: str) -> str | None:
        """A ``datetime-local`` value read in ``timezone``, as ISO 8601 with its offset."""
        raw = self.text(name)
        if not raw:
            return None
        try:
            local = datetime.fromisoformat(raw)
        except ValueError:
            self.errors[name] = self.tr(N_("must be a date and time"))
            return None
        if local.tzinfo is None:
            try:
                local = local.replace(tzinfo=zone(timezone))
            except ValidationError:
                return None  # the time zone field has the error
        return local.isoformat()

    def json(self, name: str, kind: type) -> Any:
        raw = self.text(name) or ("[]" if kind is list else "{}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            where = f" ({exc.msg}, {exc.lineno}:{exc.colno})"
            self.errors[name] = self.tr(N_("is not valid JSON")) + where
            return kind()
        if not isinstance(value, kind):
            message = N_("must be a JSON array") if kind is list else N_("must be a JSON object")
            self.errors[name] = self.tr(message)
            return kind()
        return value


def parse_job_form(values: Values, gettext: Callable[[str], str]) -> tuple[JobSpec | None, Errors]:
    """A ``JobSpec`` from the posted values, or None and the errors (translated by
    ``gettext``) by input name."""
    read = _Reader(values, gettext)
    timezone = read.text("timezone")
    try:
        zone(timezone)
    except ValidationError:
        read.errors["timezone"] = read.tr(N_("unknown time zone (e.g. Asia/Shanghai)"))
    trigger = _parse_trigger(read, timezone)
    task, args, kwargs = _parse_task(read)
    spec_values: dict[str, Any] = {
        "name": values.get("name", "").strip(),
        "description": values.get("description", ""),
        "enabled": read.checked("enabled"),
        "tags": [t.strip() for t in values.get("tags", "").split(",") if t.strip()],
        "task": task,
        "trigger": trigger,
        "timezone": timezone,
        "args": args,
        "kwargs": kwargs,
        "queue": read.text("queue"),
        "target_worker": read.text("target_worker") or None,
        "broadcast": read.checked("broadcast"),
        "misfire_policy": read.text("misfire_policy"),
        "misfire_grace_s": _default(read.whole("misfire_grace_s", 0, 7 * 86_400), 60),
        "overlap_policy": read.text("overlap_policy"),
        "jitter_ms": _default(read.whole("jitter_ms", 0, 3_600_000), 0),
        "start_at": read.instant("start_at", timezone),
        "end_at": read.instant("end_at", timezone),
        "max_runs": read.whole("max_runs", 1, 2**31 - 1),
        "data_window": _parse_window(read),
        "options": _parse_options(read),
    }
    if read.errors:
        return None, read.errors
    return JobSpec(**spec_values), {}


def trigger_from(values: Values, gettext: Callable[[str], str]) -> tuple[dict[str, Any], Errors]:
    """Only the trigger of the posted values (for the preview), and its errors."""
    read = _Reader(values, gettext)
    trigger = _parse_trigger(read, read.text("timezone"))
    return trigger, read.errors


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


def _parse_trigger(read: _Reader, timezone: str) -> dict[str, Any]:
    kind = read.text("trigger_kind")
    if kind == "cron":
        return {"kind": "cron", "expr": read.text("cron_expr")}
    if kind == "interval":
        every = read.number("every", 0, 10 * 366 * 86_400_000)
        factor = UNITS_MS.get(read.text("every_unit"), 0)
        if every is None or not factor:
            read.errors.setdefault("every", read.tr(N_("give a number and a unit")))
            return {"kind": "interval", "every_ms": 0}
        trigger: dict[str, Any] = {"kind": "interval", "every_ms": round(every * factor)}
        if read.text("anchor"):
            trigger["anchor"] = read.text("anchor")
        return trigger
    if kind == "once":
        at = read.instant("once_at", timezone)
        if at is None:
            read.errors.setdefault("once_at", read.tr(N_("must be a date and time")))
        return {"kind": "once", "at": at or ""}
    if kind != "manual":
        read.errors["trigger_kind"] = read.tr(N_("choose cron, interval, once or manual"))
    return {"kind": "manual"}


def _parse_task(read: _Reader) -> tuple[str, list[Any], dict[str, Any]]:
    """The task name and its arguments: a built-in type's fields, or JSON args/kwargs."""
    if read.text("task_mode") == "builtin":
        task = read.text("builtin")
        if task not in BUILTIN_PARAMS:
            read.errors["builtin"] = read.tr(N_("choose a built-in task type"))
            return task, [], {}
        kwargs, errors = builtin_fields.parse_params(task, read.values)
        read.errors.update({name: read.tr(message) for name, message in errors.items()})
        return task, [], kwargs
    task = read.text("task")
    if not task:
        read.errors["task"] = read.tr(N_("give the task's name"))
    return task, read.json("args", list), read.json("kwargs", dict)


def _parse_window(read: _Reader) -> dict[str, Any] | None:
    if not read.checked("window"):
        return None
    window: dict[str, Any] = {"as_kwargs": read.checked("window_as_kwargs")}
    lookback = read.whole("window_lookback_s", 1, 10 * 366 * 86_400)
    if lookback is not None:
        window["lookback_s"] = lookback
    return window


def _parse_options(read: _Reader) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in ("soft_time_limit", "time_limit"):
        options[name] = read.number(name, 0, 7 * 86_400)
    options["expires"] = read.number("expires", 0, 366 * 86_400)
    options["priority"] = read.whole("priority", 0, 9)
    retries = read.whole("retries", 0, 100)
    if retries is not None:
        retry: dict[str, Any] = {"retries": retries, "jitter": read.checked("retry_jitter")}
        backoff = read.number("backoff", 0, 3600)
        backoff_max = read.number("backoff_max", 0, 86_400)
        if backoff is not None:
            retry["backoff"] = backoff
        if backoff_max is not None:
            retry["backoff_max"] = backoff_max
        options["retry"] = retry
    return {k: v for k, v in options.items() if v is not None}
