"""Per-job firing rules, pure: bounds, jitter, data window and the misfire plan.

The scheduler calls these with values read from the job row; nothing here does I/O, so every
rule is unit-tested with fixed instants.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mainspring.core.states import MisfirePolicy, OverlapPolicy
from mainspring.core.triggers import Trigger, next_fire, previous_fire
from mainspring.errors import ValidationError

WINDOW_VERSION = 1
MAX_JITTER_MS = 3_600_000
RUN_ALL_CAP = 100  # run_all replays at most this many missed fires; the rest are skipped
MISFIRE_SCAN = 1_000  # missed fires enumerated one by one; beyond, the plan jumps ahead


@dataclass(frozen=True)
class Bounds:
    """When a job may fire at all: from ``start_at``, until ``end_at``, at most ``max_runs``."""

    start_at: datetime | None = None
    end_at: datetime | None = None
    max_runs: int | None = None

    def check(self) -> None:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValidationError("end_at", "must be after start_at")
        if self.max_runs is not None and self.max_runs < 1:
            raise ValidationError("max_runs", "must be at least 1 (or null for no limit)")


def next_bounded(
    trigger: Trigger,
    after: datetime,
    tz: ZoneInfo,
    hash_id: str,
    bounds: Bounds,
    fire_count: int = 0,
) -> datetime | None:
    """The first fire after ``after`` that the bounds allow; None when the job is done."""
    if bounds.max_runs is not None and fire_count >= bounds.max_runs:
        return None
    if bounds.start_at is not None and after < bounds.start_at:
        after = bounds.start_at - timedelta(microseconds=1)  # a fire at start_at counts
    nxt = next_fire(trigger, after, tz, hash_id)
    if nxt is not None and bounds.end_at is not None and nxt > bounds.end_at:
        return None
    return nxt


def jitter_ms(key: str, max_jitter_ms: int) -> int:
    """A random-looking delay in ``[0, max_jitter_ms]``, fixed per fire (key = job and due), so a
    scheduler that takes over a claimed run publishes it at the same instant."""
    if max_jitter_ms <= 0:
        return 0
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % (max_jitter_ms + 1)


@dataclass(frozen=True)
class WindowSpec:
    """``jobs.data_window``: a fixed lookback (else previous fire → this fire), and whether the
    task also receives it as keyword arguments."""

    lookback_s: int | None = None
    as_kwargs: bool = False

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> WindowSpec:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValidationError("data_window", "must be an object like {'lookback_s': 259200}")
        unknown = set(raw) - {"v", "lookback_s", "as_kwargs"}
        if unknown:
            raise ValidationError("data_window", f"unknown keys: {', '.join(sorted(unknown))}")
        lookback = raw.get("lookback_s")
        if lookback is not None and (
            not isinstance(lookback, int) or isinstance(lookback, bool) or lookback <= 0
        ):
            raise ValidationError("data_window.lookback_s", "must be a positive whole number")
        as_kwargs = raw.get("as_kwargs", False)
        if not isinstance(as_kwargs, bool):
            raise ValidationError("data_window.as_kwargs", "must be true or false")
        return cls(lookback_s=lookback, as_kwargs=as_kwargs)

    def to_json(self) -> dict[str, Any]:
        return {"v": WINDOW_VERSION, "lookback_s": self.lookback_s, "as_kwargs": self.as_kwargs}


def data_window(
    spec: WindowSpec,
    due: datetime,
    last_fire: datetime | None,
    trigger: Trigger,
    tz: ZoneInfo,
    hash_id: str,
) -> tuple[datetime | None, datetime]:
    """The window a fire covers: ``due - lookback``, else the previous fire (the last one
    claimed, or the trigger's previous instant for a first fire) up to ``due``."""
    if spec.lookback_s is not None:
        return due - timedelta(seconds=spec.lookback_s), due
    if last_fire is not None and last_fire < due:
        return last_fire, due
    return previous_fire(trigger, due, tz, hash_id), due


def window_kwargs(
    kwargs: dict[str, Any], start: datetime | None, end: datetime, due: datetime, tz: ZoneInfo
) -> dict[str, Any]:
    """``kwargs`` plus ``window_start``/``window_end``/``scheduled_for`` as local ISO strings."""
    merged = dict(kwargs)
    merged["window_start"] = start.astimezone(tz).isoformat() if start else None
    merged["window_end"] = end.astimezone(tz).isoformat()
    merged["scheduled_for"] = due.astimezone(tz).isoformat()
    return merged


@dataclass
class MisfirePlan:
    """What to do with fires found late: run these, record those as skipped, resume at next."""

    run: list[datetime] = field(default_factory=list)
    skip: list[datetime] = field(default_factory=list)
    skipped_beyond_scan: bool = False
    next_at: datetime | None = None


def plan_misfire(
    policy: MisfirePolicy,
    missed: list[datetime],
    more_missed: bool,
    resume_at: datetime | None,
) -> MisfirePlan:
    """Apply a misfire policy to fires missed beyond their grace (oldest first).

    ``skip`` runs none, ``run_once`` runs the latest and coalesces the rest, ``run_all`` runs
    the oldest ``RUN_ALL_CAP``. Fires not run are returned to be recorded as SKIPPED.
    """
    plan = MisfirePlan(skipped_beyond_scan=more_missed, next_at=resume_at)
    if policy is MisfirePolicy.RUN_ONCE and missed:
        plan.run, plan.skip = [missed[-1]], missed[:-1]
    elif policy is MisfirePolicy.RUN_ALL:
        plan.run, plan.skip = missed[:RUN_ALL_CAP], missed[RUN_ALL_CAP:]
    else:
        plan.skip = list(missed)
    return plan


def parse_policy(value: Any, kind: type[MisfirePolicy] | type[OverlapPolicy], field: str) -> Any:
    """A policy enum member, or a ValidationError naming the field and the allowed values."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(p.value for p in kind)
        raise ValidationError(field, f"must be one of {allowed}, not {value!r}") from None
