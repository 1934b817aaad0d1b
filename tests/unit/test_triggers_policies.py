"""Bounds, jitter, data windows and misfire plans: pure rules over fixed instants."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mainspring.core.policies import (
    RUN_ALL_CAP,
    Bounds,
    WindowSpec,
    data_window,
    jitter_ms,
    next_bounded,
    plan_misfire,
    window_kwargs,
)
from mainspring.core.states import MisfirePolicy
from mainspring.core.triggers import parse_trigger
from mainspring.errors import ValidationError

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVERY_MINUTE = parse_trigger({"kind": "interval", "every_ms": 60_000, "anchor": T0.isoformat()})


def test_start_bound_allows_a_fire_exactly_at_start():
    bounds = Bounds(start_at=T0 + timedelta(minutes=5))
    assert next_bounded(EVERY_MINUTE, T0, SHANGHAI, "j", bounds) == T0 + timedelta(minutes=5)


def test_end_bound_and_max_runs_end_the_schedule():
    bounds = Bounds(end_at=T0 + timedelta(minutes=2))
    assert next_bounded(EVERY_MINUTE, T0 + timedelta(minutes=1), SHANGHAI, "j", bounds) == (
        T0 + timedelta(minutes=2)
    )
    assert next_bounded(EVERY_MINUTE, T0 + timedelta(minutes=2), SHANGHAI, "j", bounds) is None
    limited = Bounds(max_runs=3)
    assert next_bounded(EVERY_MINUTE, T0, SHANGHAI, "j", limited, fire_count=2) is not None
    assert next_bounded(EVERY_MINUTE, T0, SHANGHAI, "j", limited, fire_count=3) is None


def test_end_before_start_names_end_at():
    with pytest.raises(ValidationError) as info:
        Bounds(start_at=T0, end_at=T0 - timedelta(seconds=1)).check()
    assert info.value.field == "end_at"


def test_jitter_is_bounded_fixed_per_fire_and_spread():
    values = [jitter_ms(f"7:{i}", 1000) for i in range(200)]
    assert all(0 <= v <= 1000 for v in values)
    assert len(set(values)) > 100
    assert jitter_ms("7:1", 1000) == values[1]
    assert jitter_ms("7:1", 0) == 0


def test_seed_004_weekly_window_with_three_day_lookback():
    trigger = parse_trigger({"kind": "cron", "expr": "0 8 * * 3"})
    due = datetime(2025, 10, 1, 8, tzinfo=SHANGHAI)
    spec = WindowSpec.parse({"v": 1, "lookback_s": 3 * 86400, "as_kwargs": True})
    start, end = data_window(spec, due, None, trigger, SHANGHAI, "inspect")
    kwargs = window_kwargs({"site": "a"}, start, end, due, SHANGHAI)
    assert kwargs == {
        "site": "a",
        "window_start": "2025-09-28T08:00:00+08:00",
        "window_end": "2025-10-01T08:00:00+08:00",
        "scheduled_for": "2025-10-01T08:00:00+08:00",
    }


def test_default_window_runs_from_the_previous_fire():
    trigger = parse_trigger({"kind": "cron", "expr": "0 8 * * 3"})
    due = datetime(2025, 10, 1, 8, tzinfo=SHANGHAI)
    first = data_window(WindowSpec(), due, None, trigger, SHANGHAI, "j")
    assert first == (due - timedelta(days=7), due)
    after_gap = data_window(WindowSpec(), due, due - timedelta(days=21), trigger, SHANGHAI, "j")
    assert after_gap == (due - timedelta(days=21), due)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"lookback_s": -1}, "data_window.lookback_s"),
        ({"lookback_s": 10, "as_kwargs": "yes"}, "data_window.as_kwargs"),
        ({"lookback": 10}, "data_window"),
    ],
)
def test_bad_window_names_the_field(raw, field):
    with pytest.raises(ValidationError) as info:
        WindowSpec.parse(raw)
    assert info.value.field == field


def test_misfire_plans():
    missed = [T0 + timedelta(minutes=i) for i in range(150)]
    skip = plan_misfire(MisfirePolicy.SKIP, missed, False, None)
    assert (skip.run, len(skip.skip)) == ([], 150)
    once = plan_misfire(MisfirePolicy.RUN_ONCE, missed, False, None)
    assert once.run == [missed[-1]]
    assert once.skip == missed[:-1]
    everything = plan_misfire(MisfirePolicy.RUN_ALL, missed, False, None)
    assert everything.run == missed[:RUN_ALL_CAP]
    assert everything.skip == missed[RUN_ALL_CAP:]
