"""Reading django-celery-beat's tables (``PeriodicTask`` with its interval, crontab, clocked
and solar schedules) straight from the Django database, without Django.

The tables are reflected with SQLAlchemy and read with plain selects, so any
django-celery-beat version works: a column an older version lacks reads as unset. Each row
becomes a ``BeatEntry`` and then a job exactly as a ``beat_schedule`` entry does (see
``celery_beat``): a crontab is expanded by Celery's own ``crontab`` in its row's time zone,
an interval becomes milliseconds, a clocked schedule a one-off trigger, ``one_off`` one run at
most, ``expires`` the end of the schedule and ``expire_seconds`` each run's expiry. Naive
date-times are read as UTC (Django stores UTC when ``USE_TZ`` is on, its default).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, MetaData, Table, create_engine, select
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

from mainspring.core.triggers import zone
from mainspring.db.engine import mask_url, normalize_url
from mainspring.errors import ServiceUnavailableError, ValidationError
from mainspring.migrate_in import Imported, Problem
from mainspring.migrate_in.celery_beat import BeatEntry, BeatOptions, crontab_expr, interval_spec
from mainspring.services.jobs import JobSpec

PREFIX = "django_celery_beat_"
SCHEDULES = ("interval", "crontab", "clocked", "solar")
PERIODS = ("days", "hours", "minutes", "seconds", "microseconds")

Row = Mapping[str, Any]


def read_django_beat(url: str, options: BeatOptions) -> Imported:
    """Every ``PeriodicTask`` in the database at ``url`` (a SQLAlchemy URL) as a job."""
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            tasks, schedules = _read(conn, url)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ServiceUnavailableError(f"cannot read {mask_url(url)}: {reason}") from None
    finally:
        engine.dispose()
    result = Imported()
    for row in tasks:
        where = f"periodic task {row['name']!r}"
        try:
            spec, notes = _job(row, schedules, options)
        except ValidationError as exc:
            result.skipped.append(Problem(where, exc.message))
            continue
        result.specs.append(spec)
        result.notes.extend(Problem(where, note) for note in notes)
    return result


def _read(conn: Connection, url: str) -> tuple[list[Row], dict[str, dict[Any, Row]]]:
    meta = MetaData()
    try:
        task_table = Table(f"{PREFIX}periodictask", meta, autoload_with=conn)
    except NoSuchTableError:
        raise ValidationError(
            "--django-db",
            f"{mask_url(url)} has no {PREFIX}periodictask table: give the database of the "
            "Django project where django-celery-beat's migrations ran",
        ) from None
    rows = conn.execute(select(task_table).order_by(task_table.c.name)).mappings()
    tasks: list[Row] = [dict(r) for r in rows]
    schedules: dict[str, dict[Any, Row]] = {}
    for kind in SCHEDULES:
        try:
            table = Table(f"{PREFIX}{kind}schedule", meta, autoload_with=conn)
        except NoSuchTableError:  # e.g. no clocked schedules before django-celery-beat 2.0
            schedules[kind] = {}
            continue
        schedules[kind] = {r["id"]: dict(r) for r in conn.execute(select(table)).mappings()}
    return tasks, schedules


def _job(
    row: Row, schedules: dict[str, dict[Any, Row]], opts: BeatOptions
) -> tuple[JobSpec, list[str]]:
    trigger, tz = _trigger(row, schedules, opts.timezone)
    options: dict[str, Any] = {
        "queue": row.get("queue") or None,
        "exchange": row.get("exchange") or None,
        "routing_key": row.get("routing_key") or None,
        "priority": row.get("priority"),
    }
    if row.get("expires") is not None:
        options["expires"] = _aware(row["expires"])
    elif row.get("expire_seconds"):
        options["expires"] = row["expire_seconds"]
    headers = _json(row.get("headers"), "headers", dict, {})
    if headers:
        options["headers"] = headers
    entry = BeatEntry(
        name=str(row["name"]),
        task=str(row["task"]),
        trigger=trigger,
        timezone=tz,
        args=_json(row.get("args"), "args", list, []),
        kwargs=_json(row.get("kwargs"), "kwargs", dict, {}),
        options=options,
        description=str(row.get("description") or ""),
        enabled=bool(row.get("enabled", True)),
        one_off=bool(row.get("one_off", False)),
        start_at=_aware(row["start_time"]) if row.get("start_time") else None,
    )
    return entry.spec(opts)


def _trigger(
    row: Row, schedules: dict[str, dict[Any, Row]], default_tz: str
) -> tuple[dict[str, Any], str]:
    """The trigger spec and the zone it is read in."""
    from celery.schedules import crontab

    kind = next((k for k in SCHEDULES if row.get(f"{k}_id") is not None), None)
    if kind is None:
        raise ValidationError("schedule", "it has no schedule")
    schedule = schedules[kind].get(row[f"{kind}_id"])
    if schedule is None:
        raise ValidationError("schedule", f"its {kind} schedule {row[f'{kind}_id']} is missing")
    if kind == "solar":
        raise ValidationError("schedule", "solar schedules (sunrise, sunset…) cannot be converted")
    if kind == "clocked":
        return {"kind": "once", "at": _aware(schedule["clocked_time"]).isoformat()}, default_tz
    if kind == "interval":
        period = schedule["period"]
        if period not in PERIODS:
            raise ValidationError("schedule", f"unknown interval period {period!r}")
        return interval_spec(timedelta(**{period: schedule["every"]})), default_tz
    tz = str(schedule.get("timezone") or default_tz)
    zone(tz)
    fields = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
    try:
        parsed = crontab(**{f: str(schedule[f]) for f in fields})
    except (ValueError, TypeError) as exc:  # Celery's own parser refused a field
        raise ValidationError("schedule", f"invalid crontab: {exc}") from None
    return {"kind": "cron", "expr": crontab_expr(parsed)}, tz


def _json(text: Any, name: str, kind: type, default: Any) -> Any:
    if text in (None, ""):
        return default
    try:
        value = json.loads(text) if isinstance(text, str | bytes) else text
    except json.JSONDecodeError as exc:
        raise ValidationError(name, f"{name} is not valid JSON ({exc.msg})") from None
    if not isinstance(value, kind):
        shape = "array" if kind is list else "object"
        raise ValidationError(name, f"{name} must be a JSON {shape}")
    return value


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
