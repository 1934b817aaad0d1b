from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mainspring.core.triggers import (
    CronTrigger,
    IntervalTrigger,
    ManualTrigger,
    OnceTrigger,
    next_fire,
    parse_trigger,
    preview,
    trigger_to_spec,
)
from mainspring.errors import ValidationError

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_six_field_cron_fires_every_five_seconds():
    trigger = parse_trigger({"kind": "cron", "expr": "*/5 * * * * *"})
    after = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    fires = preview(trigger, after, SHANGHAI, 3)
    assert [f.astimezone(UTC) for f in fires] == [
        datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 15, tzinfo=UTC),
    ]


def test_five_field_cron_is_read_in_the_jobs_time_zone():
    trigger = parse_trigger({"kind": "cron", "expr": "0 2 * * *"})
    nxt = next_fire(trigger, datetime(2026, 1, 1, tzinfo=UTC), SHANGHAI)
    assert nxt == datetime(2026, 1, 1, 18, 0, tzinfo=UTC)  # 02:00 on Jan 2 in Shanghai


def test_hashed_minute_is_stable_per_job_and_differs_between_jobs():
    trigger = parse_trigger({"kind": "cron", "expr": "H 2 * * *"})
    after = datetime(2026, 1, 1, tzinfo=UTC)
    first = next_fire(trigger, after, ZoneInfo("UTC"), hash_id="backup-a")
    again = next_fire(trigger, after, ZoneInfo("UTC"), hash_id="backup-a")
    minutes = {
        next_fire(trigger, after, ZoneInfo("UTC"), hash_id=f"job-{i}").minute  # type: ignore[union-attr]
        for i in range(20)
    }
    assert first == again
    assert first is not None
    assert first.hour == 2
    assert len(minutes) > 1


def test_interval_is_anchored_and_does_not_drift():
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = parse_trigger({"kind": "interval", "every_ms": 500, "anchor": anchor.isoformat()})
    late = anchor + timedelta(seconds=3600, milliseconds=777)
    assert next_fire(trigger, late, SHANGHAI) == anchor + timedelta(seconds=3601)
    assert next_fire(trigger, anchor - timedelta(days=1), SHANGHAI) == anchor


def test_once_fires_once_then_never():
    at = datetime(2026, 5, 1, 8, tzinfo=UTC)
    trigger = parse_trigger({"kind": "once", "at": "2026-05-01T16:00:00+08:00"})
    assert trigger == OnceTrigger(at=at)
    assert next_fire(trigger, at - timedelta(seconds=1), SHANGHAI) == at
    assert next_fire(trigger, at, SHANGHAI) is None


def test_manual_never_fires_by_itself():
    assert next_fire(ManualTrigger(), datetime(2026, 1, 1, tzinfo=UTC), SHANGHAI) is None


def test_spec_round_trips_with_a_version_key():
    for trigger in (
        CronTrigger("0 2 * * *"),
        IntervalTrigger(every_ms=250, anchor=datetime(2026, 1, 1, tzinfo=UTC)),
        OnceTrigger(at=datetime(2026, 1, 1, tzinfo=UTC)),
        ManualTrigger(),
    ):
        spec = trigger_to_spec(trigger)
        assert spec["v"] == 1
        assert parse_trigger(spec) == trigger


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"kind": "cron", "expr": "61 * * * *"}, "trigger.expr"),
        ({"kind": "cron", "expr": "* * *"}, "trigger.expr"),
        ({"kind": "cron", "expr": ""}, "trigger.expr"),
        ({"kind": "interval", "every_ms": 5}, "trigger.every_ms"),
        ({"kind": "interval", "every_ms": "10"}, "trigger.every_ms"),
        ({"kind": "once", "at": "2026-01-01T00:00:00"}, "trigger.at"),
        ({"kind": "once", "at": "tomorrow"}, "trigger.at"),
        ({"kind": "weekly"}, "trigger.kind"),
    ],
)
def test_invalid_trigger_names_the_field(spec, field):
    with pytest.raises(ValidationError) as info:
        parse_trigger(spec)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("expr", "weekdays"),
    [("0 0 * * 5-5", {"Fri"}), ("0 0 * * fri-fri", {"Fri"}), ("0 0 * * 1-1/2", {"Mon"})],
)
def test_one_value_range_is_that_value_not_every_value(expr: str, weekdays: set[str]) -> None:
    trigger = parse_trigger({"kind": "cron", "expr": expr})
    at, seen = datetime(2026, 11, 23, tzinfo=UTC), set()
    for _ in range(14):
        nxt = next_fire(trigger, at, ZoneInfo("UTC"))
        assert nxt is not None
        seen.add(nxt.strftime("%a"))
        at = nxt
    assert seen == weekdays
