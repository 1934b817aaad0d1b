"""Listing jobs: filters by tag, state, last run state, queue, task and text; paging."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import Job
from mainspring.services.jobs import JobSpec, create_job

ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]


def _spec(name: str, **values: Any) -> JobSpec:
    values.setdefault("trigger", {"kind": "cron", "expr": "0 2 * * *"})
    values.setdefault("timezone", "UTC")
    values.setdefault("task", "tasks.backup")
    return JobSpec(name=name, **values)


@pytest.fixture
def jobs(ctx: AppContext) -> None:
    """Five jobs with different tags, queues, tasks, states and last runs."""
    with ctx.session() as s:
        create_job(s, _spec("backup db", tags=["db", "nightly"], queue="backups"))
        create_job(s, _spec("backup files", tags=["files", "nightly"], queue="backups"))
        create_job(s, _spec("scan network", tags=["net"], task="tasks.scan", enabled=False))
        create_job(s, _spec("weekly report", description="sales_report, 100% done", tags=["db"]))
        create_job(s, _spec("报表 daily", description="每日报表", tags=["报表"]))
        s.flush()
        for name, state in (("backup db", "FAILURE"), ("scan network", "SUCCESS")):
            job = s.query(Job).filter_by(name=name).one()
            job.last_state = state


def _names(client: TestClient, auth: dict, **params: Any) -> list[str]:
    response = client.get("/api/v1/jobs", params=params, headers=auth[Role.VIEWER])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] >= len(body["items"])
    return [item["name"] for item in body["items"]]


@pytest.mark.parametrize("role", ROLES)
def test_everyone_logged_in_lists_jobs_by_name(
    client: TestClient, auth: dict, jobs: None, role: Role | None
) -> None:
    response = client.get("/api/v1/jobs", headers=auth[role])
    if role is None:
        assert response.status_code == 401
        return
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 5
    assert [item["name"] for item in body["items"]] == [
        "backup db", "backup files", "scan network", "weekly report", "报表 daily",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"tag": "db"}, ["backup db", "weekly report"]),
        ({"tag": "nightly"}, ["backup db", "backup files"]),
        ({"tag": "报表"}, ["报表 daily"]),
        ({"tag": "d"}, []),  # a whole tag, not a part of one
        ({"state": "paused"}, ["scan network"]),
        ({"state": "enabled", "tag": "net"}, []),
        ({"last_state": "failure"}, ["backup db"]),
        ({"last_state": "SUCCESS"}, ["scan network"]),
        ({"queue": "backups"}, ["backup db", "backup files"]),
        ({"task": "tasks.scan"}, ["scan network"]),
        ({"text": "BACKUP"}, ["backup db", "backup files"]),
        ({"text": "sales_rep"}, ["weekly report"]),  # in the description
        ({"text": "100%"}, ["weekly report"]),
        ({"text": "%"}, ["weekly report"]),  # LIKE wildcards are plain characters
        ({"text": "_"}, ["weekly report"]),
        ({"text": "报表"}, ["报表 daily"]),
        ({"tag": "nightly", "queue": "backups", "text": "files"}, ["backup files"]),
    ],
)
def test_filters_select_the_matching_jobs(
    client: TestClient, auth: dict, jobs: None, params: dict[str, str], expected: list[str]
) -> None:
    assert _names(client, auth, **params) == expected


def test_total_counts_every_match_while_a_page_holds_limit(
    client: TestClient, auth: dict, jobs: None
) -> None:
    seen: list[str] = []
    for offset in (0, 2, 4):
        params = {"limit": 2, "offset": offset}
        body = client.get("/api/v1/jobs", params=params, headers=auth[Role.VIEWER]).json()
        assert (body["total"], body["limit"], body["offset"]) == (5, 2, offset)
        seen += [item["name"] for item in body["items"]]
    assert len(seen) == len(set(seen)) == 5
    filtered = client.get(
        "/api/v1/jobs", params={"tag": "nightly", "limit": 1}, headers=auth[Role.VIEWER]
    ).json()
    assert (len(filtered["items"]), filtered["total"]) == (1, 2)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("state", "running"),
        ("limit", "0"),
        ("limit", "501"),
        ("offset", "-1"),
        ("text", "a\x00b"),
        ("tag", "x" * 201),
    ],
)
def test_bad_query_values_are_422_naming_the_parameter(
    client: TestClient, auth: dict, param: str, value: str
) -> None:
    response = client.get("/api/v1/jobs", params={param: value}, headers=auth[Role.VIEWER])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", param]


def test_unknown_last_state_is_a_422_listing_the_states(client: TestClient, auth: dict) -> None:
    response = client.get(
        "/api/v1/jobs", params={"last_state": "EXPLODED"}, headers=auth[Role.VIEWER]
    )
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "last_state"
    assert "FAILURE" in response.json()["detail"]["message"]
