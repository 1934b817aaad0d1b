"""``POST /api/v1/jobs/preview``: the next fire times of a trigger, DST-exact, before saving."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from mainspring.core.states import Role

URL = "/api/v1/jobs/preview"
ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]


def _preview(client: TestClient, auth: dict, **body: Any) -> dict[str, Any]:
    response = client.post(URL, json=body, headers=auth[Role.VIEWER])
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("role", ROLES)
def test_anyone_logged_in_previews_five_fires_by_default(
    client: TestClient, auth: dict, role: Role | None
) -> None:
    body = {"trigger": {"kind": "cron", "expr": "0 2 * * *"}, "after": "2026-01-01T00:00:00Z"}
    response = client.post(URL, json=body, headers=auth[role])
    if role is None:
        assert response.status_code == 401
        return
    result = response.json()
    assert result["timezone"] == "Asia/Shanghai"  # the server's default
    assert [f["local"] for f in result["fire_times"]] == [
        f"2026-01-0{day}T02:00:00+08:00" for day in range(2, 7)
    ]
    assert result["fire_times"][0]["utc"] == "2026-01-01T18:00:00Z"


def test_spring_forward_fires_at_the_transition_in_new_york(client: TestClient, auth: dict) -> None:
    result = _preview(
        client, auth, trigger={"kind": "cron", "expr": "30 2 * * *"},
        timezone="America/New_York", after="2026-03-07T12:00:00Z", n=3,
    )  # fmt: skip
    assert [f["local"] for f in result["fire_times"]] == [
        "2026-03-08T03:00:00-04:00",  # 02:30 does not exist: the first valid instant after it
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


def test_fall_back_fires_once_in_berlin(client: TestClient, auth: dict) -> None:
    result = _preview(
        client, auth, trigger={"kind": "cron", "expr": "30 2 * * *"},
        timezone="Europe/Berlin", after="2026-10-24T12:00:00Z", n=3,
    )  # fmt: skip
    assert [f["utc"] for f in result["fire_times"]] == [
        "2026-10-25T00:30:00Z",  # 02:30 CEST, the first of the two 02:30s
        "2026-10-26T01:30:00Z",
        "2026-10-27T01:30:00Z",
    ]


def test_seconds_and_intervals_preview_to_the_millisecond(client: TestClient, auth: dict) -> None:
    seconds = _preview(client, auth, trigger={"kind": "cron", "expr": "*/10 * * * * *"},
                       timezone="UTC", after="2026-01-01T00:00:01Z", n=3)  # fmt: skip
    assert [f["utc"] for f in seconds["fire_times"]] == [
        "2026-01-01T00:00:10Z", "2026-01-01T00:00:20Z", "2026-01-01T00:00:30Z",
    ]  # fmt: skip
    every = {"kind": "interval", "every_ms": 500, "anchor": "2026-01-01T00:00:00Z"}
    interval = _preview(client, auth, trigger=every, timezone="UTC", n=2,
                        after="2026-01-01T00:00:00Z")  # fmt: skip
    assert [f["utc"] for f in interval["fire_times"]] == [
        "2026-01-01T00:00:00.500000Z", "2026-01-01T00:00:01Z",
    ]  # fmt: skip


def test_bounds_and_run_limit_cut_the_preview_short(client: TestClient, auth: dict) -> None:
    trigger = {"kind": "cron", "expr": "0 * * * *"}
    limited = _preview(client, auth, trigger=trigger, timezone="UTC", n=10, max_runs=2,
                       after="2026-01-01T00:30:00Z")  # fmt: skip
    assert len(limited["fire_times"]) == 2
    bounded = _preview(client, auth, trigger=trigger, timezone="UTC", n=10,
                       after="2026-01-01T00:30:00Z", start_at="2026-01-01T05:00:00Z",
                       end_at="2026-01-01T07:00:00Z")  # fmt: skip
    assert [f["utc"][11:16] for f in bounded["fire_times"]] == ["05:00", "06:00", "07:00"]
    once = _preview(client, auth, trigger={"kind": "once", "at": "2030-01-01T00:00:00Z"})
    assert len(once["fire_times"]) == 1
    assert _preview(client, auth, trigger={"kind": "manual"})["fire_times"] == []


def test_hashed_cron_needs_the_job_name_and_is_stable_for_it(
    client: TestClient, auth: dict
) -> None:
    body = {"trigger": {"kind": "cron", "expr": "H 2 * * *"}, "timezone": "UTC"}
    response = client.post(URL, json=body, headers=auth[Role.VIEWER])
    assert (response.status_code, response.json()["detail"]["field"]) == (422, "name")
    first = _preview(client, auth, **body, name="nightly backup", after="2026-01-01T00:00:00Z")
    again = _preview(client, auth, **body, name="nightly backup", after="2026-01-01T00:00:00Z")
    assert first == again
    assert all(f["utc"][11:13] == "02" for f in first["fire_times"])


def test_up_to_a_hundred_fires(client: TestClient, auth: dict) -> None:
    body = {"trigger": {"kind": "cron", "expr": "* * * * *"}, "n": 100}
    assert len(_preview(client, auth, **body)["fire_times"]) == 100
    response = client.post(URL, json={**body, "n": 101}, headers=auth[Role.VIEWER])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "n"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"trigger": {"kind": "cron", "expr": "0 25 * * *"}}, "trigger.expr"),
        ({"trigger": {"kind": "cron", "expr": "@sometimes"}}, "trigger.expr"),
        ({"trigger": {"kind": "cron", "expr": "0 2 * * *"}, "timezone": "Nowhere/City"},
         "timezone"),
        (
            {"trigger": {"kind": "cron", "expr": "0 2 * * *"},
             "start_at": "2026-02-01T00:00:00Z", "end_at": "2026-01-01T00:00:00Z"},
            "end_at",
        ),
    ],
)  # fmt: skip
def test_bad_triggers_are_422_naming_the_field(
    client: TestClient, auth: dict, body: dict[str, Any], field: str
) -> None:
    response = client.post(URL, json=body, headers=auth[Role.VIEWER])
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == field


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"trigger": {"kind": "cron", "cron": "0 2 * * *"}}, ["body", "trigger", "cron", "expr"]),
        ({"trigger": {"kind": "interval", "every_ms": 1}},
         ["body", "trigger", "interval", "every_ms"]),
        ({"trigger": {"kind": "once", "at": "9999-12-31T23:59:59-01:00"}},
         ["body", "trigger", "once", "at"]),
        ({"trigger": {"kind": "manual"}, "after": "2026-01-01T00:00:00"}, ["body", "after"]),
    ],
)  # fmt: skip
def test_schema_errors_name_the_field(
    client: TestClient, auth: dict, body: dict[str, Any], loc: list[str]
) -> None:
    response = client.post(URL, json=body, headers=auth[Role.VIEWER])
    assert response.status_code == 422
    assert loc in [error["loc"] for error in response.json()["detail"]]
