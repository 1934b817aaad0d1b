"""Figures for a job's recent runs: success rate, durations, and a bar chart drawn as SVG.

The chart is plain SVG geometry computed here and written by the template (``rect`` with a
class per state, coloured by ``app.css``): no JavaScript, no inline style, so it obeys the
console's content security policy and follows the light or dark theme.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mainspring.core.states import RunState
from mainspring.db.models import Run

CHART_WIDTH = 640
CHART_HEIGHT = 120
AXIS_GAP = 4  # px between bars (shrinks to fit many bars)
MIN_SLOTS = 30  # a few runs make narrow bars on the left, not one wide block


@dataclass(frozen=True)
class RunStats:
    """Of the runs looked at: how many ended, succeeded, failed, and how long they took."""

    looked_at: int
    ended: int
    succeeded: int
    failed: int
    mean_ms: float | None
    p95_ms: float | None

    @property
    def success_rate(self) -> float | None:
        """Succeeded / ended, skipped fires left out; None when nothing has ended yet."""
        return self.succeeded / self.ended if self.ended else None


def run_stats(runs: list[Run]) -> RunStats:
    ended = [r for r in runs if _final(r.state) and r.state != RunState.SKIPPED.value]
    succeeded = sum(1 for r in ended if r.state == RunState.SUCCESS.value)
    durations = sorted(r.runtime_ms for r in ended if r.runtime_ms is not None)
    mean = sum(durations) / len(durations) if durations else None
    p95 = durations[min(len(durations) - 1, int(len(durations) * 0.95))] if durations else None
    return RunStats(len(runs), len(ended), succeeded, len(ended) - succeeded, mean, p95)


def _final(state: str) -> bool:
    try:
        return RunState(state).is_final
    except ValueError:
        return False


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    state: str
    run_id: str
    runtime_ms: float
    at: datetime | None


@dataclass(frozen=True)
class DurationChart:
    width: int
    height: int
    bars: list[Bar]
    max_ms: float


def duration_chart(
    runs: list[Run], width: int = CHART_WIDTH, height: int = CHART_HEIGHT
) -> DurationChart | None:
    """One bar per run with a duration, oldest on the left; None when there is none."""
    timed = [r for r in reversed(runs) if r.runtime_ms is not None]
    if not timed:
        return None
    top = max(r.runtime_ms or 0.0 for r in timed) or 1.0
    slot = width / max(len(timed), MIN_SLOTS)
    gap = min(AXIS_GAP, slot * 0.2)
    bars = []
    for index, run in enumerate(timed):
        runtime = run.runtime_ms or 0.0
        bar_height = max(1.0, runtime / top * (height - 2))
        bars.append(
            Bar(
                x=round(index * slot + gap / 2, 2),
                y=round(height - bar_height, 2),
                width=round(max(slot - gap, 0.5), 2),
                height=round(bar_height, 2),
                state=run.state.lower(),
                run_id=run.id,
                runtime_ms=runtime,
                at=run.started_at or run.created_at,
            )
        )
    return DurationChart(width=width, height=height, bars=bars, max_ms=top)


# --- runs per hour, stacked by state (the dashboard) ------------------------------------------

STACK_ORDER = ("SUCCESS", "FAILURE", "LOST", "RETRY", "REVOKED", "EXPIRED", "SKIPPED")


@dataclass(frozen=True)
class Segment:
    x: float
    y: float
    width: float
    height: float
    state: str
    count: int
    start: datetime


@dataclass(frozen=True)
class StackedChart:
    width: int
    height: int
    segments: list[Segment]
    max_total: int
    buckets: int


def stacked_chart(
    buckets: list[tuple[datetime, dict[str, int]]],
    width: int = CHART_WIDTH,
    height: int = CHART_HEIGHT,
) -> StackedChart | None:
    """One column per bucket (oldest left), a segment per state stacked from the bottom in
    ``STACK_ORDER`` (states still in flight on top); None when no bucket has a run."""
    top = max((sum(counts.values()) for _, counts in buckets), default=0)
    if not top:
        return None
    slot = width / max(len(buckets), 1)
    gap = min(AXIS_GAP, slot * 0.2)
    segments = []
    for index, (start, counts) in enumerate(buckets):
        base = float(height)
        ordered = [s for s in STACK_ORDER if s in counts] + sorted(set(counts) - set(STACK_ORDER))
        for state in ordered:
            part = counts[state] / top * (height - 2)
            base -= part
            segments.append(
                Segment(
                    x=round(index * slot + gap / 2, 2),
                    y=round(base, 2),
                    width=round(max(slot - gap, 0.5), 2),
                    height=round(part, 2),
                    state=state.lower(),
                    count=counts[state],
                    start=start,
                )
            )
    return StackedChart(width, height, segments, top, len(buckets))
