"""``/api/v1/stats`` on SQLite, PostgreSQL and MariaDB: runs by state per local hour or day
(DST and half-hour zones included), per job, and scheduler lateness percentiles."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role, RunState
from mainspring.db.models import Run
from mainspring.services.jobs import JobSpec, create_job
from mainspring.settings import Settings

Auth = dict[Role | None, dict[str, str]]
_ids = itertools.count()
# Tests where the SQL dialect cannot matter run on SQLite only.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def settings(data_dir: Any, database_url: str) -> Settings:
    return Settings(
        data_dir=data_dir, secret_key="k", timezone="Asia/Shanghai", database_url=database_url
    )


@pytest.fixture
def client(ctx: AppContext, tokens: dict[Role, str]) -> Iterator[TestClient]:
    with TestClient(create_app(ctx)) as client:
        yield client


def add_runs(ctx: AppContext, at: datetime, state: RunState, n: int = 1, **values: Any) -> None:
    with ctx.session() as s:
        for _ in range(n):
            s.add(
                Run(
                    id=f"run-{next(_ids)}",
                    task="t",
                    options={},
                    state=state.value,
                    attempt=0,
                    trigger="schedule",
                    created_at=at,
                    updated_at=at,
                    log_bytes=0,
                    log_truncated=False,
                    **values,
                )
            )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def get(client: TestClient, auth: Auth, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params, headers=auth[Role.VIEWER])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@sqlite_only
@pytest.mark.parametrize(
    "path", ["/api/v1/stats/runs", "/api/v1/stats/jobs", "/api/v1/stats/lateness"]
)
def test_stats_are_read_by_every_role_but_not_anonymously(
    client: TestClient, auth: Auth, path: str
) -> None:
    for role, status in [(Role.ADMIN, 200), (Role.OPERATOR, 200), (Role.VIEWER, 200), (None, 401)]:
        assert client.get(path, headers=auth[role]).status_code == status


def test_day_buckets_are_local_days_with_counts_by_state(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    # Asia/Shanghai days start at 16:00 UTC.
    add_runs(ctx, utc(2025, 3, 1, 15, 59), RunState.SUCCESS, 2)  # 3-01 23:59 local
    add_runs(ctx, utc(2025, 3, 1, 16, 0), RunState.SUCCESS)  # 3-02 00:00 local
    add_runs(ctx, utc(2025, 3, 2, 3, 0), RunState.FAILURE, 3)  # 3-02 11:00 local
    add_runs(ctx, utc(2025, 3, 5, 0, 0), RunState.SUCCESS)  # outside the range
    since, until = "2025-03-01T00:00:00+08:00", "2025-03-04T00:00:00+08:00"
    body = get(client, auth, "/api/v1/stats/runs", bucket="day", since=since, until=until)
    assert body["timezone"] == "Asia/Shanghai"
    assert (body["total"], body["counts"]) == (6, {"SUCCESS": 3, "FAILURE": 3})
    starts = [datetime.fromisoformat(b["start"]) for b in body["buckets"]]
    assert starts == [utc(2025, 2, 28, 16), utc(2025, 3, 1, 16), utc(2025, 3, 2, 16)]
    assert [b["counts"] for b in body["buckets"]] == [
        {"SUCCESS": 2},
        {"SUCCESS": 1, "FAILURE": 3},
        {},
    ]


def test_half_hour_zones_split_days_at_their_own_midnight(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    add_runs(ctx, utc(2025, 3, 1, 18, 20), RunState.SUCCESS)  # 23:50 in Kolkata
    add_runs(ctx, utc(2025, 3, 1, 18, 40), RunState.SUCCESS)  # 00:10 the next day
    body = get(
        client,
        auth,
        "/api/v1/stats/runs",
        bucket="day",
        timezone="Asia/Kolkata",
        since="2025-03-01T00:00:00+05:30",
        until="2025-03-03T00:00:00+05:30",
    )
    assert [b["total"] for b in body["buckets"]] == [1, 1]


def test_the_repeated_hour_of_a_dst_change_is_two_buckets(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    add_runs(ctx, utc(2025, 10, 26, 0, 30), RunState.SUCCESS)  # 02:30 CEST
    add_runs(ctx, utc(2025, 10, 26, 1, 30), RunState.FAILURE, 2)  # 02:30 CET, an hour later
    body = get(
        client,
        auth,
        "/api/v1/stats/runs",
        bucket="hour",
        timezone="Europe/Berlin",
        since="2025-10-26T00:00:00Z",
        until="2025-10-26T02:00:00Z",
    )
    buckets = [(datetime.fromisoformat(b["start"]), b["counts"]) for b in body["buckets"]]
    assert buckets == [
        (utc(2025, 10, 26, 0), {"SUCCESS": 1}),
        (utc(2025, 10, 26, 1), {"FAILURE": 2}),
    ]


def test_stats_of_one_job_and_per_job(client: TestClient, auth: Auth, ctx: AppContext) -> None:
    with ctx.session() as s:
        trigger = {"kind": "cron", "expr": "0 3 * * *"}
        ids = [
            create_job(s, JobSpec(name=n, task="t", trigger=trigger, timezone="UTC")).id
            for n in ("backup", "report")
        ]
    at = datetime.now(UTC) - timedelta(hours=1)
    add_runs(ctx, at, RunState.SUCCESS, 3, job_id=ids[0])
    add_runs(ctx, at, RunState.FAILURE, 1, job_id=ids[0])
    add_runs(ctx, at, RunState.SUCCESS, 1, job_id=ids[1])
    add_runs(ctx, at, RunState.SUCCESS, 2)
    one = get(client, auth, "/api/v1/stats/runs", job_id=ids[1])
    assert (one["job_id"], one["total"]) == (ids[1], 1)
    assert len(one["buckets"]) in (24, 25)  # the last day, hour by hour (partial ends)
    jobs = get(client, auth, "/api/v1/stats/jobs")["items"]
    assert [(j["name"], j["total"], j["counts"]) for j in jobs] == [
        ("backup", 4, {"SUCCESS": 3, "FAILURE": 1}),
        (None, 2, {"SUCCESS": 2}),
        ("report", 1, {"SUCCESS": 1}),
    ]


def test_lateness_percentiles_are_nearest_rank(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    for ms in range(100, 0, -1):
        add_runs(ctx, at, RunState.SUCCESS, lateness_ms=float(ms))
    add_runs(ctx, at, RunState.SUCCESS)  # no lateness (sent by the API): not counted
    body = get(client, auth, "/api/v1/stats/lateness")
    assert (body["count"], body["p50_ms"], body["p95_ms"], body["max_ms"]) == (100, 50, 95, 100)
    empty = get(client, auth, "/api/v1/stats/lateness", since="2020-01-01T00:00:00Z",
                until="2020-01-02T00:00:00Z")  # fmt: skip
    assert (empty["count"], empty["p50_ms"]) == (0, None)


@sqlite_only
@pytest.mark.parametrize(
    ("params", "field"),
    [
        (
            {"bucket": "hour", "since": "2025-01-01T00:00:00Z", "until": "2025-03-01T00:00:00Z"},
            "since",
        ),
        ({"since": "2025-03-02T00:00:00Z", "until": "2025-03-01T00:00:00Z"}, "since"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"until": "0001-01-01T00:00:00Z"}, "until"),
        ({"since": "2025-03-01T00:00:00"}, ["query", "since"]),
        ({"bucket": "week"}, ["query", "bucket"]),
    ],
)
def test_bad_stats_parameters_are_422s_naming_the_field(
    client: TestClient, auth: Auth, params: dict[str, str], field: str | list[str]
) -> None:
    response = client.get("/api/v1/stats/runs", params=params, headers=auth[Role.VIEWER])
    assert response.status_code == 422
    detail = response.json()["detail"]
    if isinstance(field, str):
        assert detail["field"] == field
    else:
        assert detail[0]["loc"] == field
