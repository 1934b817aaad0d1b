"""The next fire times of a trigger before a job is saved (the API's and console's preview).

It runs the scheduler's own rules (``core.triggers`` and ``core.policies``: daylight saving,
bounds, run limit), so what the preview shows is exactly what the scheduler will do. Jitter
is left out: it delays each publication by a fixed amount per fire, it does not move fires.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from croniter import CroniterBadCronError

from mainspring.core.policies import Bounds, next_bounded
from mainspring.core.triggers import parse_instant, parse_trigger, zone
from mainspring.errors import ValidationError
from mainspring.services.clock import utcnow

MAX_PREVIEW = 100


def preview_fires(
    trigger: dict[str, Any],
    timezone: str,
    n: int = 5,
    *,
    after: datetime | None = None,
    start_at: datetime | str | None = None,
    end_at: datetime | str | None = None,
    max_runs: int | None = None,
    name: str = "",
) -> list[datetime]:
    """Up to ``n`` fires strictly after ``after`` (default now), in UTC, within the bounds.

    ``name`` is the job's name: a cron ``H`` field is spread by it, so it is required then.
    Fewer than ``n`` come back when the trigger or its bounds end sooner.
    """
    if not 1 <= n <= MAX_PREVIEW:
        raise ValidationError("n", f"must be between 1 and {MAX_PREVIEW}")
    parsed = parse_trigger(trigger)
    tz = zone(timezone)
    bounds = Bounds(
        start_at=parse_instant(start_at, "start_at") if start_at is not None else None,
        end_at=parse_instant(end_at, "end_at") if end_at is not None else None,
        max_runs=max_runs,
    )
    bounds.check()
    fires: list[datetime] = []
    current = after or utcnow()
    while len(fires) < n:
        try:
            nxt = next_bounded(parsed, current, tz, name, bounds, fire_count=len(fires))
        except CroniterBadCronError as exc:  # only ``H`` without a name gets this far
            raise ValidationError(
                "name", f"give the job's name: {exc} (an H field is spread by job name)"
            ) from None
        if nxt is None:
            break
        fires.append(nxt)
        current = nxt
    return fires
