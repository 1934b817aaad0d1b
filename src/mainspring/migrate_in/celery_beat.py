"""Reading a Celery ``beat_schedule`` into jobs that call the same tasks on the same schedule.

``crontab`` becomes a cron expression built from the sets Celery itself expanded (so what
Celery would run is what is imported), a ``timedelta``/number/``schedule`` an interval in
milliseconds; ``solar`` and custom schedule classes cannot be converted and are reported.
Celery runs a crontab only on days that match *both* ``day_of_month`` and ``day_of_week``;
Mainspring's cron (like cron's) runs on days matching either, so an entry restricting both is
reported rather than imported with another schedule.

``args``, ``kwargs`` and the ``options`` Mainspring has (``queue``, ``expires``, ``priority``,
time limits) carry over; the rest (``exchange``, ``routing_key``, ``headers``…) are noted.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from mainspring.core.triggers import parse_trigger
from mainspring.errors import ValidationError
from mainspring.migrate_in import Imported, Problem
from mainspring.services.jobs import NAME_RE, JobSpec, validate_queue
from mainspring.services.jobs_code import normalized

_NOT_NAME = re.compile(r"[^\w.\-: ]+")
_CRON_FIELDS = (  # the celery attribute and its full range, in cron order
    ("minute", range(60)),
    ("hour", range(24)),
    ("day_of_month", range(1, 32)),
    ("month_of_year", range(1, 13)),
    ("day_of_week", range(7)),
)
TIME_OPTIONS = ("soft_time_limit", "time_limit")


@dataclass(frozen=True)
class BeatOptions:
    timezone: str  # the zone crontab entries are read in (the Celery app's ``timezone``)
    queue: str  # for entries whose options name none
    prefix: str = ""
    enabled: bool = True
    source: str = "celery-beat"  # a tag on every job, and the word used in descriptions


def load_app_schedule(ref: str) -> tuple[dict[str, Any], str | None]:
    """``module:attribute`` → (its ``beat_schedule``, the app's time zone). The attribute is a
    Celery app, or the schedule dict itself. Imported as ``celery -A`` does, from the
    current directory."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ValidationError("--app", f"{ref!r}: give module:attribute, e.g. proj.celery:app")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # the user's code may raise anything while importing
        raise ValidationError(
            "--app", f"cannot import {ref!r}: {type(exc).__name__}: {exc}"
        ) from None
    if isinstance(obj, Mapping):
        return dict(obj), None
    conf = getattr(obj, "conf", None)
    if conf is None:
        raise ValidationError("--app", f"{ref!r} is neither a Celery app nor a dict")
    return dict(conf.beat_schedule or {}), conf.timezone or ("UTC" if conf.enable_utc else None)


def read_beat_schedule(schedule: Mapping[str, Any], options: BeatOptions) -> Imported:
    result = Imported()
    for key, raw in schedule.items():
        where = f"entry {key!r}"
        try:
            spec, notes = _entry(str(key), raw, options)
        except ValidationError as exc:
            result.skipped.append(Problem(where, exc.message))
            continue
        result.specs.append(spec)
        result.notes.extend(Problem(where, note) for note in notes)
    return result


def _entry(key: str, raw: Any, options: BeatOptions) -> tuple[JobSpec, list[str]]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("task"), str):
        raise ValidationError("task", "an entry needs 'task' (a task name) and 'schedule'")
    trigger = schedule_trigger(raw.get("schedule"))
    notes = ["'relative' is not carried over"] if raw.get("relative") else []
    entry = BeatEntry(
        name=key,
        task=raw["task"],
        trigger=trigger,
        timezone=options.timezone,
        args=list(raw.get("args") or ()),
        kwargs=dict(raw.get("kwargs") or {}),
        options=dict(raw.get("options") or {}),
    )
    spec, more = entry.spec(options)
    return spec, notes + more


@dataclass
class BeatEntry:
    """One periodic task from either source, before it becomes a ``JobSpec``."""

    name: str
    task: str
    trigger: dict[str, Any]
    timezone: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    description: str = ""
    enabled: bool = True
    one_off: bool = False
    start_at: datetime | None = None

    def spec(self, opts: BeatOptions) -> tuple[JobSpec, list[str]]:
        """The job, and the notes on what did not carry over."""
        try:
            json.dumps([self.args, self.kwargs], allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValidationError("args", f"arguments are not JSON: {exc}") from None
        name, notes = job_name(opts.prefix + self.name)
        job_options, end_at, more = convert_options(self.options)
        queue = self.options.get("queue") or opts.queue
        validate_queue(queue)
        described = f"Imported from {opts.source} entry {self.name!r}."
        spec = JobSpec(
            name=name,
            task=self.task,
            trigger=self.trigger,
            timezone=self.timezone,
            args=self.args,
            kwargs=self.kwargs,
            queue=queue,
            description="\n".join(filter(None, [described, self.description]))[:10_000],
            enabled=self.enabled and opts.enabled,
            tags=[opts.source],
            start_at=self.start_at,
            end_at=end_at,
            max_runs=1 if self.one_off else None,
            options=job_options,
        )
        normalized(spec)  # every check a job gets when stored
        return spec, notes + more


def job_name(name: str) -> tuple[str, list[str]]:
    """``name`` if Mainspring accepts it, else with the other characters replaced by ``-``."""
    if NAME_RE.match(name) and name == name.strip():
        return name, []
    fixed = _NOT_NAME.sub("-", name).strip(" -")[:200] or "beat-entry"
    return fixed, [f"renamed to {fixed!r} (names allow letters, digits, spaces and _ . - :)"]


def convert_options(raw: Mapping[str, Any]) -> tuple[dict[str, Any], datetime | None, list[str]]:
    """Celery ``apply_async`` options → (job options, end of the schedule, notes)."""
    out: dict[str, Any] = {}
    end_at: datetime | None = None
    notes: list[str] = []
    for key, value in raw.items():
        if key == "queue" or value is None:
            continue
        if key == "expires" and isinstance(value, datetime):
            end_at = value if value.tzinfo else value.replace(tzinfo=ZoneInfo("UTC"))
        elif key == "expires" and isinstance(value, int | float) and value > 0:
            out["expires"] = float(value)
        elif key == "priority" and isinstance(value, int) and 0 <= value <= 9:
            out["priority"] = value
            notes.append(f"priority {value} means 0 lowest … 9 highest on every broker")
        elif key in TIME_OPTIONS and isinstance(value, int | float) and value > 0:
            out[key] = float(value)
        else:
            notes.append(f"option {key}={value!r} is not carried over")
    return out, end_at, notes


def schedule_trigger(schedule: Any) -> dict[str, Any]:
    """A Celery schedule as a trigger spec, checked by the scheduler's parser."""
    from celery.schedules import crontab, solar
    from celery.schedules import schedule as interval

    if isinstance(schedule, solar):
        raise ValidationError("schedule", "solar schedules (sunrise, sunset…) cannot be converted")
    if isinstance(schedule, crontab):
        spec = {"kind": "cron", "expr": crontab_expr(schedule)}
    elif isinstance(schedule, interval) and type(schedule) is interval:
        spec = interval_spec(schedule.run_every)
    elif isinstance(schedule, timedelta | int | float) and not isinstance(schedule, bool):
        spec = interval_spec(schedule)
    else:
        raise ValidationError(
            "schedule", f"a schedule of type {type(schedule).__name__} cannot be converted"
        )
    parse_trigger(spec)
    return spec


def interval_spec(every: timedelta | float) -> dict[str, Any]:
    seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
    ms = seconds * 1000
    if ms <= 0 or ms != int(ms):
        raise ValidationError(
            "schedule", f"every {seconds} s is not a whole number of milliseconds"
        )
    return {"kind": "interval", "every_ms": int(ms)}


def crontab_expr(schedule: Any) -> str:
    """The five cron fields of a Celery ``crontab``, each Celery's own text when croniter reads
    it as the same set, else the expanded list."""
    fields = []
    for position, (attr, full) in enumerate(_CRON_FIELDS):
        values: set[int] = set(getattr(schedule, attr))
        if values == set(full):
            fields.append("*")
            continue
        original = getattr(schedule, f"_orig_{attr}")
        text = str(original) if isinstance(original, str | int) else None
        if text is None or _expanded(text, position) != values:
            text = ",".join(str(v) for v in sorted(values))
        fields.append(text)
    if fields[2] != "*" and fields[4] != "*":
        raise ValidationError(
            "schedule",
            f"crontab {' '.join(fields)!r} restricts both day_of_month and day_of_week: Celery "
            "runs it on days matching both, Mainspring's cron on days matching either; split it",
        )
    return " ".join(fields)


def _expanded(text: str, position: int) -> set[int] | None:
    """The set croniter reads ``text`` as in field ``position``, or None when it refuses it."""
    probe = ["*"] * 5
    probe[position] = text
    try:
        expanded = croniter.expand(" ".join(probe))[0][position]
    except Exception:  # croniter raises several unrelated types for a bad field
        return None
    if expanded == ["*"]:
        return set(_CRON_FIELDS[position][1])
    return {int(v) % 7 if position == 4 else int(v) for v in expanded}
