"""The runs and jobs endpoints: pagination, filters, errors that name the field, 404s."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role, RunState
from mainspring.db.models import Run, RunLog
from mainspring.services.jobs import JobSpec, create_job
from mainspring.services.users import create_user

AUTH = ("viewer", "viewer-password")
BASE = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _run(run_id: str, minutes: int, state: RunState, job_id: int | None = None) -> Run:
    at = BASE + timedelta(minutes=minutes)
    return Run(
        id=run_id,
        job_id=job_id,
        task="mainspring.echo",
        args=[1, "two"],
        kwargs={"k": "v"},
        options={},
        queue="default",
        worker="w1@host",
        state=state.value,
        attempt=0,
        trigger="schedule",
        scheduled_for=at,
        created_at=at,
        sent_at=at + timedelta(milliseconds=5),
        started_at=at + timedelta(milliseconds=20),
        finished_at=at + timedelta(seconds=2) if state.is_final else None,
        updated_at=at,
        lateness_ms=20.0,
        runtime_ms=1980.0 if state.is_final else None,
        result={"ok": True} if state is RunState.SUCCESS else None,
        exception_type="ValueError" if state is RunState.FAILURE else None,
        exception_message="bad input" if state is RunState.FAILURE else None,
        log_bytes=0,
        log_truncated=False,
    )


@pytest.fixture
def job_id(ctx: AppContext) -> int:
    """Seven runs a minute apart (r0 oldest), every third one failed, and one job."""
    with ctx.session() as s:
        create_user(s, AUTH[0], AUTH[1], Role.VIEWER)
        job = create_job(
            s,
            JobSpec(
                name="nightly report",
                task="reports.build",
                trigger={"kind": "cron", "expr": "0 3 * * *"},
                timezone="Asia/Shanghai",
            ),
        )
        for i in range(7):
            state = RunState.FAILURE if i % 3 == 0 else RunState.SUCCESS
            s.add(_run(f"r{i}", i, state, job_id=job.id if i < 2 else None))
        s.flush()
        s.add_all(
            RunLog(run_id="r6", seq=seq, at=BASE, stream="log", text=f"line {seq}\n")
            for seq in range(3)
        )
        return job.id


@pytest.fixture
def client(ctx: AppContext, job_id: int) -> Iterator[TestClient]:
    with TestClient(create_app(ctx)) as client:
        yield client


def test_runs_are_paged_newest_first_with_a_cursor(client: TestClient) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/runs", params=params, auth=AUTH).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]
    assert cursor is None


def test_run_items_carry_the_whole_timeline(client: TestClient) -> None:
    item = client.get("/api/v1/runs", params={"limit": 1}, auth=AUTH).json()["items"][0]
    assert item["id"] == "r6"
    assert item["state"] == "FAILURE"
    assert item["args"] == [1, "two"]
    assert item["kwargs"] == {"k": "v"}
    assert item["exception_type"] == "ValueError"
    assert datetime.fromisoformat(item["created_at"]) == BASE + timedelta(minutes=6)
    assert datetime.fromisoformat(item["started_at"]).utcoffset() == timedelta(0)
    expected = {
        "id", "job_id", "task", "args", "kwargs", "queue", "worker", "state", "attempt",
        "trigger", "scheduled_for", "created_at", "sent_at", "received_at", "started_at",
        "finished_at", "lateness_ms", "runtime_ms", "result", "exception_type",
        "exception_message",
    }  # fmt: skip
    assert set(item) == expected


def test_runs_filter_by_state_case_insensitively(client: TestClient) -> None:
    page = client.get("/api/v1/runs", params={"state": "failure"}, auth=AUTH).json()
    assert [item["id"] for item in page["items"]] == ["r6", "r3", "r0"]


def test_runs_filter_by_job(client: TestClient, job_id: int) -> None:
    page = client.get("/api/v1/runs", params={"job_id": job_id}, auth=AUTH).json()
    assert [item["id"] for item in page["items"]] == ["r1", "r0"]


def test_unknown_state_is_a_422_naming_state(client: TestClient) -> None:
    response = client.get("/api/v1/runs", params={"state": "EXPLODED"}, auth=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "state"
    assert "SUCCESS" in response.json()["detail"]["message"]


@pytest.mark.parametrize("cursor", ["nonsense", "2025-03-01T12:00:00|r1"])
def test_garbage_cursor_is_a_422_naming_cursor(client: TestClient, cursor: str) -> None:
    response = client.get("/api/v1/runs", params={"cursor": cursor}, auth=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "cursor"


@pytest.mark.parametrize(("param", "value"), [("limit", "0"), ("limit", "501"), ("job_id", "x")])
def test_out_of_range_query_values_are_422_naming_the_field(
    client: TestClient, param: str, value: str
) -> None:
    response = client.get("/api/v1/runs", params={param: value}, auth=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", param]


def test_one_run_by_id(client: TestClient) -> None:
    response = client.get("/api/v1/runs/r4", auth=AUTH)
    assert response.status_code == 200
    assert response.json()["result"] == {"ok": True}


def test_missing_run_is_a_404_json(client: TestClient) -> None:
    response = client.get("/api/v1/runs/no-such-run", auth=AUTH)
    assert response.status_code == 404
    assert response.json() == {"detail": "no run with id 'no-such-run'"}
    assert client.get("/api/v1/runs/no-such-run/logs", auth=AUTH).status_code == 404


def test_run_log_reads_all_then_only_what_is_new(client: TestClient) -> None:
    first = client.get("/api/v1/runs/r6/logs", auth=AUTH).json()
    assert first == {"text": "line 0\nline 1\nline 2\n", "last_seq": 2}
    rest = client.get("/api/v1/runs/r6/logs", params={"after_seq": 1}, auth=AUTH).json()
    assert rest == {"text": "line 2\n", "last_seq": 2}
    nothing = client.get("/api/v1/runs/r6/logs", params={"after_seq": 2}, auth=AUTH).json()
    assert nothing == {"text": "", "last_seq": 2}


def test_jobs_list_with_total(client: TestClient, job_id: int) -> None:
    body = client.get("/api/v1/jobs", auth=AUTH).json()
    assert body["total"] == 1
    job = body["items"][0]
    assert job["id"] == job_id
    assert job["name"] == "nightly report"
    assert job["trigger"]["expr"] == "0 3 * * *"
    assert job["timezone"] == "Asia/Shanghai"
    assert job["enabled"] is True
    assert job["next_fire_at"] is not None
    assert job["last_state"] is None


def test_api_answers_are_not_cached(client: TestClient) -> None:
    assert client.get("/api/v1/runs", auth=AUTH).headers["cache-control"] == "no-store"
