"""Reading a Celery ``beat_schedule``: crontab, timedelta, numbers, ``schedule`` and solar;
args, kwargs and options; and crontabs fire at the minutes Celery itself would run them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab, schedule, solar

from mainspring.core.triggers import next_fire, parse_trigger
from mainspring.migrate_in.celery_beat import BeatOptions, crontab_expr, read_beat_schedule

OPTIONS = BeatOptions(timezone="Asia/Shanghai", queue="default")
CRONTABS = {
    "monday morning": crontab(hour=7, minute=30, day_of_week=1),
    "office quarter hours": crontab(minute="*/15", hour="9-17", day_of_week="mon-fri"),
    "quarterly": crontab(0, 0, day_of_month="1", month_of_year="*/3"),
    "twice a day": crontab(minute=[0, 30], hour=[1, 13]),
    "even days": crontab(0, 0, day_of_month="2-30/2"),
    "weekends": crontab(0, 12, day_of_week="sat,sun"),
    "every minute": crontab(),
    "one-value range": crontab(minute="5-5", hour="3"),
    "from string": crontab.from_string("10 4 * * 0"),
}


class EveryOtherTuesday(schedule):  # a custom class: its rule is code, not data
    pass


def _solar() -> solar:
    """A solar schedule as an app that has ``ephem`` holds it (built without ``ephem`` here)."""
    sunset = solar.__new__(solar)
    sunset.event, sunset.lat, sunset.lon = "sunset", -37.81753, 144.96715
    return sunset


def _beat() -> dict[str, Any]:
    return {
        "add every 10 seconds": {"task": "tasks.add", "schedule": 10.0, "args": (16, 16)},
        "every 30 s": {"task": "tasks.ping", "schedule": timedelta(seconds=30)},
        "half a second": {"task": "tasks.tick", "schedule": 0.5},
        "five minutes": {"task": "tasks.tick", "schedule": schedule(timedelta(minutes=5))},
        "weekly report": {
            "task": "reports.weekly",
            "schedule": crontab(hour=8, minute=0, day_of_week="wed"),
            "kwargs": {"window_days": 3},
            "options": {"queue": "reports", "expires": 600, "priority": 7, "routing_key": "r"},
        },
        "until new year": {
            "task": "tasks.tick",
            "schedule": 60,
            "options": {"expires": datetime(2027, 1, 1, tzinfo=UTC), "time_limit": 30},
            "relative": True,
        },
        "a/b (c)": {"task": "tasks.add", "schedule": 60},
        "sunset": {"task": "lights.on", "schedule": _solar()},
        "first monday": {
            "task": "tasks.meeting",
            "schedule": crontab(0, 9, day_of_week=1, day_of_month="1-7"),
        },
        "custom": {"task": "tasks.custom", "schedule": EveryOtherTuesday(timedelta(days=14))},
        "no task": {"schedule": 10},
        "bad args": {"task": "tasks.add", "schedule": 10, "args": (object(),)},
        "bad queue": {"task": "tasks.add", "schedule": 10, "options": {"queue": "a b"}},
        "bad task": {"task": "not a task!", "schedule": 10},
        "too fine": {"task": "tasks.add", "schedule": 0.0001},
    }


def test_a_beat_schedule_imports_with_the_same_schedules() -> None:
    result = read_beat_schedule(_beat(), OPTIONS)
    specs = {s.name: s for s in result.specs}
    assert specs["add every 10 seconds"].trigger == {"kind": "interval", "every_ms": 10_000}
    assert specs["add every 10 seconds"].args == [16, 16]
    assert specs["every 30 s"].trigger["every_ms"] == 30_000
    assert specs["half a second"].trigger["every_ms"] == 500
    assert specs["five minutes"].trigger["every_ms"] == 300_000
    weekly = specs["weekly report"]
    assert (weekly.task, weekly.trigger, weekly.timezone) == (
        "reports.weekly",
        {"kind": "cron", "expr": "0 8 * * wed"},
        "Asia/Shanghai",
    )
    assert (weekly.kwargs, weekly.queue) == ({"window_days": 3}, "reports")
    assert weekly.options == {"expires": 600.0, "priority": 7}
    assert weekly.tags == ["celery-beat"]
    until = specs["until new year"]
    assert until.end_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert until.options == {"time_limit": 30.0}
    assert "a-b -c" in specs


def test_what_cannot_be_converted_is_reported_by_entry() -> None:
    result = read_beat_schedule(_beat(), OPTIONS)
    skipped = {p.where: p.reason for p in result.skipped}
    assert set(skipped) == {
        "entry 'sunset'",
        "entry 'first monday'",
        "entry 'custom'",
        "entry 'no task'",
        "entry 'bad args'",
        "entry 'bad queue'",
        "entry 'bad task'",
        "entry 'too fine'",
    }
    assert "solar" in skipped["entry 'sunset'"]
    assert "both" in skipped["entry 'first monday'"]
    assert "EveryOtherTuesday" in skipped["entry 'custom'"]
    assert "not JSON" in skipped["entry 'bad args'"]
    assert "'a b'" in skipped["entry 'bad queue'"]
    assert "not a valid task name" in skipped["entry 'bad task'"]
    assert "milliseconds" in skipped["entry 'too fine'"]
    notes = [str(n) for n in result.notes]
    assert "entry 'weekly report': option routing_key='r' is not carried over" in notes
    assert "entry 'until new year': 'relative' is not carried over" in notes
    assert any(n.startswith("entry 'a/b (c)': renamed to 'a-b -c'") for n in notes)


def test_crontab_fields_keep_celery_text_when_it_means_the_same() -> None:
    assert crontab_expr(CRONTABS["office quarter hours"]) == "*/15 9-17 * * mon-fri"
    assert crontab_expr(CRONTABS["twice a day"]) == "0,30 1,13 * * *"
    assert crontab_expr(CRONTABS["every minute"]) == "* * * * *"
    # croniter reads "5-5" as every minute: the set Celery expanded is written out instead.
    assert crontab_expr(CRONTABS["one-value range"]) == "5 3 * * *"


def _celery_runs(entry: crontab, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The minutes Celery's crontab matches (all five expanded sets, as its docs say)."""
    runs = []
    local = start.astimezone(tz).replace(second=0, microsecond=0) + timedelta(minutes=1)
    while local.astimezone(UTC) <= end:
        if (
            local.minute in entry.minute
            and local.hour in entry.hour
            and local.day in entry.day_of_month
            and local.month in entry.month_of_year
            and local.isoweekday() % 7 in entry.day_of_week
        ):
            runs.append(local.astimezone(UTC))
        local += timedelta(minutes=1)
    return runs


@pytest.mark.parametrize("name", sorted(CRONTABS))
def test_imported_crontabs_fire_when_celery_would_over_a_week(name: str) -> None:
    beat = {name: {"task": "tasks.x", "schedule": CRONTABS[name]}}
    [spec] = read_beat_schedule(beat, OPTIONS).specs
    tz = ZoneInfo(spec.timezone)
    trigger = parse_trigger(spec.trigger)
    start = datetime(2026, 3, 26, 0, 0, 30, tzinfo=UTC)  # the week crosses into April (Q2)
    end = start + timedelta(days=7)
    fires, current = [], start
    while (nxt := next_fire(trigger, current, tz)) is not None and nxt <= end:
        fires.append(nxt)
        current = nxt
    assert fires == _celery_runs(CRONTABS[name], tz, start, end)
