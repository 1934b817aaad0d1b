"""When a job fires: pure functions over trigger specs, no I/O, tested with fixed instants.

A trigger is stored as versioned JSON (``{"v": 1, "kind": "cron", ...}``); ``parse_trigger``
turns it into one of the dataclasses below and rejects anything invalid with a
``ValidationError`` naming the field.

Cron is evaluated on local wall-clock time (croniter on naive datetimes) and each wall time is
then mapped to an instant by our daylight-saving rule (see ``resolve_local``):

- a local time that does not exist (spring forward) fires at the first valid instant after it,
  i.e. the instant of the transition (02:30 on a 02:00→03:00 day fires at 03:00);
- a local time that occurs twice (fall back) fires once, at its first occurrence.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from mainspring.core.states import TriggerKind
from mainspring.errors import ValidationError

TRIGGER_VERSION = 1
MIN_INTERVAL_MS = 10
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Candidates skipped in a row before giving up (a repeated hour of a per-second cron is 3,600).
_MAX_SKIPPED = 10_000


@dataclass(frozen=True)
class CronTrigger:
    """Five fields, or six with a leading seconds field; macros, ``L``, ``W``, ``#`` and ``H``."""

    expr: str

    @functools.cached_property
    def expanded(self) -> str:
        """The expression as croniter gets it: a macro replaced by its fields (so ``H`` is
        never implied) and one-value ranges (``5-5``, ``mon-mon``) written as the value, which
        croniter 7 would otherwise take as the whole field."""
        fields = MACROS.get(self.expr.lower(), self.expr).split()
        return " ".join(_one_value_ranges(field) for field in fields)

    @property
    def has_seconds(self) -> bool:
        return len(self.expanded.split()) == 6


_RANGE = re.compile(r"^(\w+)-(\w+)(/\d+)?$")


def _one_value_ranges(field: str) -> str:
    """``5-5`` → ``5`` in each comma-separated item of a cron field (a step is moot then)."""
    items = []
    for item in field.split(","):
        match = _RANGE.match(item)
        if match and match.group(1).lower() == match.group(2).lower():
            item = match.group(1)
        items.append(item)
    return ",".join(items)


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
    if not isinstance(spec, dict):
        raise ValidationError("trigger", "must be an object with a 'kind'")
    kind = spec.get("kind")
    if kind == TriggerKind.CRON:
        return _parse_cron(spec.get("expr"))
    if kind == TriggerKind.INTERVAL:
        return _parse_interval(spec)
    if kind == TriggerKind.ONCE:
        return OnceTrigger(at=parse_instant(spec.get("at"), "trigger.at"))
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
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationError("timezone", f"unknown IANA time zone {name!r}") from None


def next_fire(
    trigger: Trigger, after: datetime, tz: ZoneInfo, hash_id: str = ""
) -> datetime | None:
    """The first fire strictly after ``after`` (aware), in UTC; None when it never fires again."""
    if isinstance(trigger, CronTrigger):
        return _next_cron(trigger, after, tz, _hash_key(trigger, hash_id))
    if isinstance(trigger, IntervalTrigger):
        return _next_interval(trigger, after)
    if isinstance(trigger, OnceTrigger):
        return trigger.at if trigger.at > after else None
    return None


def previous_fire(
    trigger: Trigger, before: datetime, tz: ZoneInfo, hash_id: str = ""
) -> datetime | None:
    """The last fire strictly before ``before``, in UTC (the default data-window start)."""
    if isinstance(trigger, CronTrigger):
        return _previous_cron(trigger, before, tz, _hash_key(trigger, hash_id))
    if isinstance(trigger, IntervalTrigger):
        if before <= trigger.anchor:
            return None
        step = timedelta(milliseconds=trigger.every_ms)
        n = -((trigger.anchor - before) // step) - 1  # ceil((before - anchor) / step) - 1
        return trigger.anchor + n * step
    if isinstance(trigger, OnceTrigger):
        return trigger.at if trigger.at < before else None
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


def resolve_local(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of naive local time ``wall``: its first occurrence when it is repeated,
    the transition instant (first valid instant after it) when it does not exist."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = int(min(first, second).timestamp()), int(max(first, second).timestamp())
    while lo < hi:  # the first whole second whose wall time is past ``wall``
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid + 1
    return datetime.fromtimestamp(lo, UTC)


def parse_instant(value: Any, field: str) -> datetime:
    """An aware ISO 8601 date-time (or datetime) as UTC, or a ValidationError on ``field``."""
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


def _parse_cron(expr: Any) -> CronTrigger:
    if not isinstance(expr, str) or not expr.strip():
        raise ValidationError("trigger.expr", "a cron expression is required")
    return _checked_cron(" ".join(expr.split()))


@functools.lru_cache(maxsize=4096)
def _checked_cron(expr: str) -> CronTrigger:
    """A validated cron trigger; cached, since a scheduler parses the same stored expressions
    for every fire (a failed check raises and is not cached)."""
    if expr.startswith("@") and expr.lower() not in MACROS:
        raise ValidationError(
            "trigger.expr", f"unknown macro {expr!r}; use one of {', '.join(MACROS)}"
        )
    trigger = CronTrigger(expr=expr)
    fields = len(trigger.expanded.split())
    if fields not in (5, 6):
        raise ValidationError(
            "trigger.expr", f"{expr!r} has {fields} fields; use 5, or 6 with leading seconds"
        )
    try:
        croniter(
            trigger.expanded, datetime(2000, 1, 1), second_at_beginning=fields == 6, hash_id="x"
        ).get_next(datetime)
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise ValidationError("trigger.expr", f"invalid cron expression {expr!r}: {exc}") from None
    return trigger


def _parse_interval(spec: dict[str, Any]) -> IntervalTrigger:
    every = spec.get("every_ms")
    if not isinstance(every, int) or isinstance(every, bool):
        raise ValidationError("trigger.every_ms", "must be an integer number of milliseconds")
    if every < MIN_INTERVAL_MS:
        raise ValidationError("trigger.every_ms", f"must be at least {MIN_INTERVAL_MS} ms")
    anchor_raw = spec.get("anchor")
    anchor = (
        parse_instant(anchor_raw, "trigger.anchor")
        if anchor_raw is not None
        else datetime.now(UTC).replace(microsecond=0)
    )
    return IntervalTrigger(every_ms=every, anchor=anchor)


def _cron_candidates(
    trigger: CronTrigger, start: datetime, tz: ZoneInfo, hash_id: str, backwards: bool = False
) -> Iterator[datetime]:
    """Instants of successive local wall times after (or before) ``start``'s wall time."""
    wall = start.astimezone(tz).replace(tzinfo=None)
    it = copy.copy(_template(trigger.expanded, trigger.has_seconds, hash_id))
    it.set_current(wall, force=True)
    step = it.get_prev if backwards else it.get_next
    for _ in range(_MAX_SKIPPED):
        try:
            local: datetime = step(datetime)
        except CroniterBadDateError:
            return
        yield resolve_local(local, tz)


@functools.lru_cache(maxsize=4096)
def _template(expr: str, seconds: bool, hash_id: str) -> croniter:
    """A parsed expression to copy (parsing costs more than the search itself); ``hash_id``
    matters only for ``H`` fields, so jobs with the same plain expression share one."""
    return croniter(
        expr, datetime(2000, 1, 1), second_at_beginning=seconds, hash_id=hash_id or None
    )


def _hash_key(trigger: CronTrigger, hash_id: str) -> str:
    """The job's hash id where an ``H`` field uses it, else "" (so equal plain expressions
    share cached parses and results)."""
    return hash_id if "H" in trigger.expanded else ""


@functools.lru_cache(maxsize=8192)
def _next_cron(
    trigger: CronTrigger, after: datetime, tz: ZoneInfo, hash_id: str
) -> datetime | None:
    """Cached: many jobs share an expression, so a burst of them at one instant (all due at
    02:00) asks the same question thousands of times."""
    # Candidates at or before ``after`` are repeated wall times already fired in the first pass.
    for candidate in _cron_candidates(trigger, after, tz, hash_id):
        if candidate > after:
            return candidate
    return None


@functools.lru_cache(maxsize=8192)
def _previous_cron(
    trigger: CronTrigger, before: datetime, tz: ZoneInfo, hash_id: str
) -> datetime | None:
    # Wall order and instant order differ by at most a DST shift: search from a margin past it.
    best: datetime | None = None
    margin = timedelta(hours=3)
    for candidate in _cron_candidates(trigger, before + margin, tz, hash_id, backwards=True):
        if candidate < before and (best is None or candidate > best):
            best = candidate
        if best is not None and candidate < best - margin:
            break
    return best


def _next_interval(trigger: IntervalTrigger, after: datetime) -> datetime:
    if after < trigger.anchor:
        return trigger.anchor
    step = timedelta(milliseconds=trigger.every_ms)
    elapsed = after - trigger.anchor
    n = elapsed // step + 1
    return trigger.anchor + n * step
