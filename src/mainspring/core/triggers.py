"""When a job fires: pure functions over trigger specs, no I/O, tested with fixed instants.

A trigger is stored as versioned JSON (``{"v": 1, "kind": "cron", ...}``); ``parse_trigger``
turns it into one of the dataclasses below and rejects anything invalid with a
``ValidationError`` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from mainspring.core.states import TriggerKind
from mainspring.errors import ValidationError

TRIGGER_VERSION = 1
MIN_INTERVAL_MS = 10


@dataclass(frozen=True)
class CronTrigger:
    """Five fields, or six with a leading seconds field; macros, ``L``, ``W``, ``#`` and ``H``."""

    expr: str

    @property
    def has_seconds(self) -> bool:
        return len(self.expr.split()) == 6


@dataclass(frozen=True)
class IntervalTrigger:
    """Every ``every_ms`` milliseconds, the n-th fire due at ``anchor + n x every``: no drift."""

    every_ms: int
    anchor: datetime


@dataclass(frozen=True)
class OnceTrigger:
    at: datetime


@dataclass(frozen=True)
class ManualTrigger:
    """Fires only when someone asks."""


Trigger = CronTrigger | IntervalTrigger | OnceTrigger | ManualTrigger


def parse_trigger(spec: dict[str, Any]) -> Trigger:
    """Validate a stored or submitted trigger spec."""
    kind = spec.get("kind")
    if kind == TriggerKind.CRON:
        return _parse_cron(spec.get("expr"))
    if kind == TriggerKind.INTERVAL:
        return _parse_interval(spec)
    if kind == TriggerKind.ONCE:
        return OnceTrigger(at=_parse_instant(spec.get("at"), "trigger.at"))
    if kind == TriggerKind.MANUAL:
        return ManualTrigger()
    allowed = ", ".join(k.value for k in TriggerKind)
    raise ValidationError("trigger.kind", f"must be one of {allowed}, not {kind!r}")


def trigger_to_spec(trigger: Trigger) -> dict[str, Any]:
    """The JSON form stored in ``jobs.trigger``."""
    if isinstance(trigger, CronTrigger):
        return {"v": TRIGGER_VERSION, "kind": "cron", "expr": trigger.expr}
    if isinstance(trigger, IntervalTrigger):
        return {
            "v": TRIGGER_VERSION,
            "kind": "interval",
            "every_ms": trigger.every_ms,
            "anchor": trigger.anchor.isoformat(),
        }
    if isinstance(trigger, OnceTrigger):
        return {"v": TRIGGER_VERSION, "kind": "once", "at": trigger.at.isoformat()}
    return {"v": TRIGGER_VERSION, "kind": "manual"}


def trigger_kind(trigger: Trigger) -> TriggerKind:
    if isinstance(trigger, CronTrigger):
        return TriggerKind.CRON
    if isinstance(trigger, IntervalTrigger):
        return TriggerKind.INTERVAL
    if isinstance(trigger, OnceTrigger):
        return TriggerKind.ONCE
    return TriggerKind.MANUAL


def zone(name: str) -> ZoneInfo:
    """An IANA zone, or a ValidationError on ``timezone``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("timezone", f"unknown IANA time zone {name!r}") from None


def next_fire(
    trigger: Trigger, after: datetime, tz: ZoneInfo, hash_id: str = ""
) -> datetime | None:
    """The first fire strictly after ``after`` (aware), in UTC; None when it never fires again."""
    if isinstance(trigger, CronTrigger):
        return _next_cron(trigger, after, tz, hash_id)
    if isinstance(trigger, IntervalTrigger):
        return _next_interval(trigger, after)
    if isinstance(trigger, OnceTrigger):
        return trigger.at if trigger.at > after else None
    return None


def preview(
    trigger: Trigger, after: datetime, tz: ZoneInfo, count: int, hash_id: str = ""
) -> list[datetime]:
    """The next ``count`` fire times after ``after``, in the trigger's time zone."""
    fires: list[datetime] = []
    current = after
    while len(fires) < count:
        nxt = next_fire(trigger, current, tz, hash_id)
        if nxt is None:
            break
        fires.append(nxt.astimezone(tz))
        current = nxt
    return fires


def _parse_cron(expr: Any) -> CronTrigger:
    if not isinstance(expr, str) or not expr.strip():
        raise ValidationError("trigger.expr", "a cron expression is required")
    expr = " ".join(expr.split())
    fields = len(expr.split())
    if not expr.startswith("@") and fields not in (5, 6):
        raise ValidationError(
            "trigger.expr", f"{expr!r} has {fields} fields; use 5, or 6 with leading seconds"
        )
    try:
        croniter(
            expr, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=fields == 6, hash_id="x"
        ).get_next(datetime)
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise ValidationError("trigger.expr", f"invalid cron expression {expr!r}: {exc}") from None
    return CronTrigger(expr=expr)


def _parse_interval(spec: dict[str, Any]) -> IntervalTrigger:
    every = spec.get("every_ms")
    if not isinstance(every, int) or isinstance(every, bool):
        raise ValidationError("trigger.every_ms", "must be an integer number of milliseconds")
    if every < MIN_INTERVAL_MS:
        raise ValidationError("trigger.every_ms", f"must be at least {MIN_INTERVAL_MS} ms")
    anchor_raw = spec.get("anchor")
    anchor = (
        _parse_instant(anchor_raw, "trigger.anchor")
        if anchor_raw is not None
        else datetime.now(UTC).replace(microsecond=0)
    )
    return IntervalTrigger(every_ms=every, anchor=anchor)


def _parse_instant(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(field, f"{value!r} is not an ISO 8601 date-time") from None
    else:
        raise ValidationError(field, "an ISO 8601 date-time is required")
    if parsed.tzinfo is None:
        raise ValidationError(field, "must include a UTC offset (e.g. 2026-01-01T02:00:00+08:00)")
    return parsed.astimezone(UTC)


def _next_cron(trigger: CronTrigger, after: datetime, tz: ZoneInfo, hash_id: str) -> datetime:
    local = after.astimezone(tz)
    it = croniter(
        trigger.expr, local, second_at_beginning=trigger.has_seconds, hash_id=hash_id or None
    )
    nxt: datetime = it.get_next(datetime)
    return nxt.astimezone(UTC)


def _next_interval(trigger: IntervalTrigger, after: datetime) -> datetime:
    if after < trigger.anchor:
        return trigger.anchor
    step = timedelta(milliseconds=trigger.every_ms)
    elapsed = after - trigger.anchor
    n = elapsed // step + 1
    return trigger.anchor + n * step
