"""Jobs: pause, resume, run now, history, and upsert/delete by name (seed 004)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import Role, RunState
from mainspring.db.models import AuditEntry, Job, Run

ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]
WRITERS = (Role.ADMIN, Role.OPERATOR)
DENIED = {Role.VIEWER: 403, None: 401}
INSPECTION: dict[str, Any] = {
    "task": "inspect.run",
    "trigger": {"kind": "cron", "expr": "0 8 * * 3"},
    "kwargs": {"site": "a"},
    "data_window": {"lookback_s": 259200, "as_kwargs": True},
}


@pytest.fixture
def job(client: TestClient, auth: dict) -> dict[str, Any]:
    body = {"name": "nightly", "task": "t.backup", "trigger": {"kind": "cron", "expr": "0 2 * * *"},
            "args": ["db"], "options": {"priority": 3}}  # fmt: skip
    response = client.post("/api/v1/jobs", json=body, headers=auth[Role.ADMIN])
    assert response.status_code == 201
    created: dict[str, Any] = response.json()
    return created


def _actions(ctx: AppContext) -> list[str]:
    with ctx.session() as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


@pytest.mark.parametrize("role", ROLES)
def test_writers_pause_and_resume_and_both_are_audited(
    ctx: AppContext, client: TestClient, auth: dict, job: dict, role: Role | None
) -> None:
    base = f"/api/v1/jobs/{job['id']}"
    paused = client.post(f"{base}/pause", headers=auth[role])
    if role not in WRITERS:
        assert paused.status_code == DENIED[role]
        assert client.get(base, headers=auth[Role.ADMIN]).json()["enabled"] is True
        return
    assert paused.status_code == 200
    assert (paused.json()["enabled"], paused.json()["next_fire_at"]) == (False, None)
    assert paused.json()["version"] == 2
    assert client.post(f"{base}/pause", headers=auth[role]).json()["version"] == 2  # no-op
    resumed = client.post(f"{base}/resume", headers=auth[role]).json()
    assert (resumed["enabled"], resumed["next_fire_at"]) == (True, job["next_fire_at"])
    assert _actions(ctx) == ["create", "pause", "resume"]


def test_paused_jobs_are_listed_as_paused(client: TestClient, auth: dict, job: dict) -> None:
    client.post(f"/api/v1/jobs/{job['id']}/pause", headers=auth[Role.OPERATOR])
    listed = client.get("/api/v1/jobs", params={"state": "paused"}, headers=auth[Role.VIEWER])
    assert [j["name"] for j in listed.json()["items"]] == ["nightly"]


@pytest.mark.parametrize("role", ROLES)
def test_writers_run_a_job_now_without_moving_its_schedule(
    ctx: AppContext, client: TestClient, auth: dict, job: dict, role: Role | None
) -> None:
    response = client.post(f"/api/v1/jobs/{job['id']}/run", headers=auth[role])
    with ctx.session() as s:
        runs = list(s.scalars(select(Run)))
        stored = s.get(Job, job["id"])
        assert stored is not None
        next_fire, version = stored.next_fire_at, stored.version
    if role not in WRITERS:
        assert response.status_code == DENIED[role]
        assert runs == []
        return
    assert response.status_code == 202
    [run] = runs
    assert response.json() == {"run_id": run.id, "job_id": job["id"], "state": "SCHEDULED"}
    assert (run.trigger, run.args, run.task, run.options) == ("manual", ["db"], "t.backup",
                                                             {"priority": 3})  # fmt: skip
    assert next_fire is not None
    assert next_fire.isoformat().replace("+00:00", "Z") == job["next_fire_at"]
    assert version == 1  # running is not editing
    assert _actions(ctx) == ["create", "run"]


def test_run_now_with_overridden_arguments(
    ctx: AppContext, client: TestClient, auth: dict, job: dict
) -> None:
    body = {"args": ["files"], "kwargs": {"dry_run": True}}
    response = client.post(f"/api/v1/jobs/{job['id']}/run", json=body, headers=auth[Role.ADMIN])
    with ctx.session() as s:
        run = s.get(Run, response.json()["run_id"])
        assert run is not None
        assert (run.args, run.kwargs) == (["files"], {"dry_run": True})
        entry = s.scalars(select(AuditEntry).filter_by(action="run")).one()
        assert entry.changes is not None
        assert entry.changes["after"]["run_id"] == run.id


def test_run_now_of_a_job_for_one_worker_goes_to_its_host_queue(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    body = {
        "name": "on db1",
        "task": "t.x",
        "trigger": {"kind": "manual"},
        "target_worker": "db1@h",
    }
    created = client.post("/api/v1/jobs", json=body, headers=auth[Role.ADMIN]).json()
    response = client.post(f"/api/v1/jobs/{created['id']}/run", headers=auth[Role.ADMIN])
    with ctx.session() as s:
        run = s.get(Run, response.json()["run_id"])
        assert run is not None
        assert run.queue == "host.db1@h"


def test_run_now_of_a_broadcast_job_is_a_409_not_a_single_run(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    body = {"name": "scan all", "task": "t.scan", "trigger": {"kind": "manual"}, "broadcast": True}
    created = client.post("/api/v1/jobs", json=body, headers=auth[Role.ADMIN]).json()
    response = client.post(f"/api/v1/jobs/{created['id']}/run", headers=auth[Role.ADMIN])
    assert response.status_code == 409
    assert "broadcast" in response.json()["detail"]
    with ctx.session() as s:
        assert s.scalars(select(Run)).all() == []


def test_run_now_refuses_bad_overrides(client: TestClient, auth: dict, job: dict) -> None:
    url = f"/api/v1/jobs/{job['id']}/run"
    response = client.post(url, json={"args": {"a": 1}}, headers=auth[Role.ADMIN])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "args"]
    response = client.post(url, json={"queue": "x"}, headers=auth[Role.ADMIN])
    assert response.json()["detail"][0]["loc"] == ["body", "queue"]
    assert client.post("/api/v1/jobs/404/run", headers=auth[Role.ADMIN]).status_code == 404


def _add_runs(ctx: AppContext, job_id: int, count: int) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with ctx.session() as s:
        for i in range(count):
            at = base + timedelta(minutes=i)
            s.add(Run(id=f"r{i}", job_id=job_id, task="t.backup", options={}, attempt=0,
                      state=RunState.SUCCESS.value if i % 2 else RunState.FAILURE.value,
                      trigger="schedule", created_at=at, updated_at=at, log_bytes=0,
                      log_truncated=False))  # fmt: skip
        s.add(Run(id="other", job_id=None, task="t.backup", options={}, attempt=0, state="SENT",
                  trigger="api", created_at=base, updated_at=base, log_bytes=0,
                  log_truncated=False))  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
def test_history_pages_a_jobs_runs_newest_first(
    ctx: AppContext, client: TestClient, auth: dict, job: dict, role: Role | None
) -> None:
    _add_runs(ctx, job["id"], 5)
    url = f"/api/v1/jobs/{job['id']}/runs"
    first = client.get(url, params={"limit": 3}, headers=auth[role])
    if role is None:
        assert first.status_code == 401
        return
    assert [r["id"] for r in first.json()["items"]] == ["r4", "r3", "r2"]
    cursor = first.json()["next_cursor"]
    rest = client.get(url, params={"limit": 3, "cursor": cursor}, headers=auth[role]).json()
    assert ([r["id"] for r in rest["items"]], rest["next_cursor"]) == (["r1", "r0"], None)
    failed = client.get(url, params={"state": "failure"}, headers=auth[role]).json()
    assert [r["id"] for r in failed["items"]] == ["r4", "r2", "r0"]


def test_history_errors_name_the_field(client: TestClient, auth: dict, job: dict) -> None:
    url = f"/api/v1/jobs/{job['id']}/runs"
    response = client.get(url, params={"cursor": "nonsense"}, headers=auth[Role.VIEWER])
    assert (response.status_code, response.json()["detail"]["field"]) == (422, "cursor")
    assert client.get("/api/v1/jobs/404/runs", headers=auth[Role.VIEWER]).status_code == 404


@pytest.mark.parametrize("role", ROLES)
def test_upsert_by_name_creates_then_replaces_without_a_version(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None
) -> None:
    url = "/api/v1/jobs/by-name/weekly-inspection"
    created = client.put(url, json=INSPECTION, headers=auth[role])
    if role not in WRITERS:
        assert created.status_code == DENIED[role]
        with ctx.session() as s:
            assert s.scalars(select(Job)).all() == []
        return
    assert created.status_code == 201
    assert created.json()["data_window"]["lookback_s"] == 259200
    changed = {**INSPECTION, "trigger": {"kind": "cron", "expr": "0 9 * * 3"}}
    updated = client.put(url, json=changed, headers=auth[role])
    assert updated.status_code == 200
    assert (updated.json()["id"], updated.json()["version"]) == (created.json()["id"], 2)
    assert updated.json()["trigger"]["expr"] == "0 9 * * 3"
    assert client.get(url, headers=auth[Role.VIEWER]).json()["version"] == 2
    assert _actions(ctx)[-2:] == ["create", "update"]


def test_upsert_body_name_must_match_the_path(client: TestClient, auth: dict) -> None:
    url = "/api/v1/jobs/by-name/weekly"
    response = client.put(url, json={**INSPECTION, "name": "daily"}, headers=auth[Role.ADMIN])
    assert (response.status_code, response.json()["detail"]["field"]) == (422, "name")
    response = client.put("/api/v1/jobs/by-name/bad%2Fname", json=INSPECTION,
                          headers=auth[Role.ADMIN])  # fmt: skip
    assert response.status_code in (404, 422)


@pytest.mark.parametrize("role", ROLES)
def test_delete_by_name(ctx: AppContext, client: TestClient, auth: dict, role: Role | None) -> None:
    url = "/api/v1/jobs/by-name/weekly"
    client.put(url, json=INSPECTION, headers=auth[Role.ADMIN])
    response = client.delete(url, headers=auth[role])
    if role not in WRITERS:
        assert response.status_code == DENIED[role]
        return
    assert response.status_code == 204
    assert client.get(url, headers=auth[role]).status_code == 404
    again = client.delete(url, headers=auth[role])
    assert again.status_code == 404
    assert again.json() == {"detail": "no job named 'weekly'"}
    assert _actions(ctx) == ["create", "delete"]
