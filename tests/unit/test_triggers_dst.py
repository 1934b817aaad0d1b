"""Cron on wall-clock time: daylight saving, L/W/#/H, leap years, month ends, long intervals."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mainspring.core.triggers import next_fire, parse_trigger, preview, previous_fire, zone
from mainspring.errors import ValidationError

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def cron(expr: str):
    return parse_trigger({"kind": "cron", "expr": expr})


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "day_before", "transition_utc"),
    [
        (NEW_YORK, utc(2024, 3, 9, 12), utc(2024, 3, 10, 7)),  # 02:00 EST -> 03:00 EDT
        (BERLIN, utc(2024, 3, 30, 12), utc(2024, 3, 31, 1)),  # 02:00 CET -> 03:00 CEST
    ],
)
def test_nonexistent_local_time_fires_at_the_transition(tz, day_before, transition_utc):
    fires = preview(cron("30 2 * * *"), day_before - timedelta(days=1), tz, 3)
    assert fires[1].astimezone(UTC) == transition_utc  # 02:30 does not exist: fires at 03:00
    assert (fires[1].hour, fires[1].minute) == (3, 0)
    assert [(f.hour, f.minute) for f in (fires[0], fires[2])] == [(2, 30), (2, 30)]


@pytest.mark.parametrize(
    ("tz", "start", "first_pass_utc"),
    [
        (NEW_YORK, utc(2024, 11, 2, 12), utc(2024, 11, 3, 5, 30)),  # 01:30 EDT
        (BERLIN, utc(2024, 10, 26, 12), utc(2024, 10, 27, 0, 30)),  # 02:30 CEST
    ],
)
def test_repeated_local_time_fires_once_at_its_first_occurrence(tz, start, first_pass_utc):
    hour = first_pass_utc.astimezone(tz).hour
    fires = preview(cron(f"30 {hour} * * *"), start, tz, 2)
    assert fires[0].astimezone(UTC) == first_pass_utc
    assert fires[1].astimezone(UTC) - fires[0].astimezone(UTC) == timedelta(hours=25)


def test_sub_hourly_cron_skips_the_repeated_hour_and_never_fires_twice():
    start = utc(2024, 11, 3, 4)  # 00:00 EDT on fall-back day
    fires = [f.astimezone(UTC) for f in preview(cron("*/30 * * * *"), start, NEW_YORK, 6)]
    assert fires == [
        utc(2024, 11, 3, 4, 30),
        utc(2024, 11, 3, 5, 0),  # 01:00 EDT
        utc(2024, 11, 3, 5, 30),  # 01:30 EDT; 01:00/01:30 EST do not fire again
        utc(2024, 11, 3, 7, 0),  # 02:00 EST
        utc(2024, 11, 3, 7, 30),
        utc(2024, 11, 3, 8, 0),
    ]
    assert len({f.astimezone(NEW_YORK).replace(tzinfo=None) for f in fires}) == 6


def test_every_minute_through_spring_forward_fires_once_at_the_transition():
    start = utc(2024, 3, 10, 6, 58)  # 01:58 EST
    fires = [f.astimezone(UTC) for f in preview(cron("* * * * *"), start, NEW_YORK, 3)]
    assert fires == [utc(2024, 3, 10, 6, 59), utc(2024, 3, 10, 7, 0), utc(2024, 3, 10, 7, 1)]


def test_zone_without_dst_keeps_a_plain_daily_rhythm():
    fires = preview(cron("0 8 * * *"), utc(2024, 3, 9), SHANGHAI, 3)
    assert [f.astimezone(UTC) for f in fires] == [
        utc(2024, 3, 10, 0),
        utc(2024, 3, 11, 0),
        utc(2024, 3, 12, 0),
    ]


def test_last_day_of_month_handles_leap_years_and_month_ends():
    fires = preview(cron("0 12 L * *"), utc(2024, 1, 15), ZoneInfo("UTC"), 4)
    assert [f.date().isoformat() for f in fires] == [
        "2024-01-31",
        "2024-02-29",
        "2024-03-31",
        "2024-04-30",
    ]


def test_february_29_fires_only_in_leap_years():
    fires = preview(cron("0 0 29 2 *"), utc(2023, 1, 1), ZoneInfo("UTC"), 2)
    assert [f.year for f in fires] == [2024, 2028]


def test_nearest_weekday_and_nth_weekday():
    # 2024-06-15 is a Saturday: 15W fires on Friday the 14th.
    assert preview(cron("0 9 15W * *"), utc(2024, 6, 1), ZoneInfo("UTC"), 1)[0].day == 14
    # Third Friday of March 2024 is the 15th; L5 is the last Friday (the 29th).
    assert preview(cron("0 9 * * 5#3"), utc(2024, 3, 1), ZoneInfo("UTC"), 1)[0].day == 15
    assert preview(cron("0 9 * * L5"), utc(2024, 3, 1), ZoneInfo("UTC"), 1)[0].day == 29


def test_hashed_hour_field_is_stable_and_spreads_jobs():
    trigger = cron("0 H * * *")
    after = utc(2024, 1, 1)
    hours = {next_fire(trigger, after, ZoneInfo("UTC"), f"job-{i}").hour for i in range(30)}  # type: ignore[union-attr]
    assert len(hours) > 5
    again = next_fire(trigger, after, ZoneInfo("UTC"), "job-1")
    assert again == next_fire(trigger, after, ZoneInfo("UTC"), "job-1")


def test_macros_mean_what_crontab_means_not_hashed():
    fire = next_fire(cron("@hourly"), utc(2024, 1, 1, 10, 20), ZoneInfo("UTC"), "some-job")
    assert fire == utc(2024, 1, 1, 11, 0)
    assert next_fire(cron("@daily"), utc(2024, 1, 1, 10), SHANGHAI) == utc(2024, 1, 1, 16)


def test_six_field_cron_every_ten_seconds_in_berlin():
    fires = preview(cron("*/10 * * * * *"), utc(2024, 3, 31, 0, 59, 55), BERLIN, 2)
    assert [f.astimezone(UTC) for f in fires] == [
        utc(2024, 3, 31, 1, 0, 0),
        utc(2024, 3, 31, 1, 0, 10),
    ]


def test_interval_over_a_year_is_exact_to_the_millisecond():
    anchor = utc(2024, 1, 1)
    trigger = parse_trigger({"kind": "interval", "every_ms": 10, "anchor": anchor.isoformat()})
    later = anchor + timedelta(days=366, milliseconds=5)
    assert next_fire(trigger, later, SHANGHAI) == anchor + timedelta(days=366, milliseconds=10)
    assert previous_fire(trigger, later, SHANGHAI) == anchor + timedelta(days=366)


def test_previous_fire_of_weekly_cron_is_a_week_earlier():
    trigger = cron("0 8 * * 3")
    due = datetime(2025, 10, 1, 8, tzinfo=SHANGHAI)
    assert previous_fire(trigger, due, SHANGHAI) == due - timedelta(days=7)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"kind": "cron", "expr": "@fortnightly"}, "trigger.expr"),
        ({"kind": "cron", "expr": "0 0 30 2 *"}, "trigger.expr"),
        ({"kind": "interval", "every_ms": 9}, "trigger.every_ms"),
        ({"kind": "interval", "every_ms": 100, "anchor": "soon"}, "trigger.anchor"),
    ],
)
def test_bad_trigger_names_its_field(spec, field):
    with pytest.raises(ValidationError) as info:
        parse_trigger(spec)
    assert info.value.field == field


def test_unknown_timezone_names_the_field():
    with pytest.raises(ValidationError) as info:
        zone("Mars/Olympus_Mons")
    assert info.value.field == "timezone"
