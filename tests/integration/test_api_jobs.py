"""``/api/v1/jobs``: create, read, replace, patch and delete, with versions, roles and audit."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AuditEntry, Job

ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]
WRITERS = (Role.ADMIN, Role.OPERATOR)
DENIED = {Role.VIEWER: 403, None: 401}
NIGHTLY: dict[str, Any] = {
    "name": "nightly backup",
    "task": "mainspring.shell",
    "trigger": {"kind": "cron", "expr": "0 2 * * *"},
    "kwargs": {"script": "pg_dump db > /backup/db.sql"},
    "tags": ["db", "backup"],
}


@pytest.fixture
def created(client: TestClient, auth: dict) -> dict[str, Any]:
    response = client.post("/api/v1/jobs", json=NIGHTLY, headers=auth[Role.OPERATOR])
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _audit(ctx: AppContext, action: str) -> list[AuditEntry]:
    with ctx.session() as s:
        rows = list(s.scalars(select(AuditEntry).filter_by(object_type="job", action=action)))
        s.expunge_all()
        return rows


def _job_count(ctx: AppContext) -> int:
    with ctx.session() as s:
        return len(s.scalars(select(Job.id)).all())


@pytest.mark.parametrize("role", ROLES)
def test_writers_create_jobs_and_creation_is_audited(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None
) -> None:
    response = client.post("/api/v1/jobs", json=NIGHTLY, headers=auth[role])
    if role not in WRITERS:
        assert response.status_code == DENIED[role]
        assert _job_count(ctx) == 0
        return
    assert response.status_code == 201
    job = response.json()
    assert job["version"] == 1
    assert job["timezone"] == "Asia/Shanghai"  # the server's default zone
    assert job["queue"] == "default"
    assert job["created_by"] == role.value
    assert job["next_fire_at"].endswith("T18:00:00Z")  # 02:00 in Shanghai
    [entry] = _audit(ctx, "create")
    assert (entry.actor, entry.object_id) == (role.value, str(job["id"]))
    assert entry.changes is not None
    assert entry.changes["after"]["trigger"]["expr"] == "0 2 * * *"
    assert entry.changes["before"] == {}


def test_job_exposes_its_whole_definition_and_scheduler_state(
    client: TestClient, auth: dict
) -> None:
    body = {
        **NIGHTLY,
        "timezone": "Europe/Berlin",
        "args": [1, "two"],
        "queue": "backups",
        "target_worker": "db1@host",
        "options": {"retry": {"retries": 2}, "time_limit": 600, "priority": 7, "expires": 30},
        "description": "Dump the database",
        "enabled": False,
        "start_at": "2030-01-01T00:00:00+08:00",
        "end_at": "2031-01-01T00:00:00+08:00",
        "max_runs": 10,
        "jitter_ms": 500,
        "misfire_policy": "skip",
        "misfire_grace_s": 5,
        "overlap_policy": "queue_one",
        "data_window": {"lookback_s": 259200, "as_kwargs": True},
    }
    job = client.post("/api/v1/jobs", json=body, headers=auth[Role.ADMIN]).json()
    read = client.get(f"/api/v1/jobs/{job['id']}", headers=auth[Role.VIEWER]).json()
    assert read == job
    assert job["start_at"] == "2029-12-31T16:00:00Z"
    assert job["options"]["retry"]["retries"] == 2
    assert job["options"]["priority"] == 7
    assert job["data_window"] == {"v": 1, "lookback_s": 259200, "as_kwargs": True}
    assert (job["enabled"], job["next_fire_at"]) == (False, None)
    scheduler_state = {"next_fire_at", "last_fire_at", "last_state", "last_run_id", "fire_count"}
    assert scheduler_state | {"version", "created_at", "updated_at"} <= set(job)
    assert job["fire_count"] == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trigger": {"kind": "cron", "expr": "61 * * * *"}}, "trigger.expr"),
        ({"trigger": {"kind": "cron", "expr": "0 2 * *"}}, "trigger.expr"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"task": "not a task"}, "task"),
        ({"queue": "bad queue!"}, "queue"),
        ({"end_at": "2020-01-01T00:00:00Z", "start_at": "2021-01-01T00:00:00Z"}, "end_at"),
        ({"broadcast": True, "target_worker": "w1@h"}, "broadcast"),
    ],
)
def test_invalid_values_are_422_naming_the_field_and_store_nothing(
    ctx: AppContext, client: TestClient, auth: dict, change: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/jobs", json={**NIGHTLY, **change}, headers=auth[Role.ADMIN])
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == field
    assert _job_count(ctx) == 0


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"tagz": ["db"]}, ["body", "tagz"]),
        ({"trigger": {"kind": "cron", "expr": "* * * * *", "cron": "x"}}, "cron"),
        ({"trigger": {"kind": "hourly"}}, ["body", "trigger"]),
        ({"trigger": {"kind": "interval", "every_ms": 5}}, "every_ms"),
        ({"options": {"priority": 10}}, ["body", "options", "priority"]),
        ({"options": {"queue": "x"}}, ["body", "options", "queue"]),
        ({"args": {"not": "a list"}}, ["body", "args"]),
        ({"start_at": "2030-01-01T00:00:00"}, ["body", "start_at"]),
        ({"description": "x" * 10_001}, ["body", "description"]),
        ({"tags": ["a,b"]}, ["body", "tags", 0]),
    ],
)
def test_schema_errors_are_422_naming_the_field(
    client: TestClient, auth: dict, change: dict[str, Any], loc: list[Any] | str
) -> None:
    response = client.post("/api/v1/jobs", json={**NIGHTLY, **change}, headers=auth[Role.ADMIN])
    assert response.status_code == 422
    [error] = response.json()["detail"]
    if isinstance(loc, str):
        assert error["loc"][-1] == loc
    else:
        assert error["loc"] == loc


def test_nan_arguments_are_refused_not_stored(client: TestClient, auth: dict) -> None:
    response = client.post(
        "/api/v1/jobs",
        content='{"name": "n", "task": "t.x", "trigger": {"kind": "manual"}, "args": [NaN]}',
        headers={**auth[Role.ADMIN], "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "args"]


def test_a_taken_name_is_a_409(client: TestClient, auth: dict, created: dict) -> None:
    response = client.post("/api/v1/jobs", json=NIGHTLY, headers=auth[Role.ADMIN])
    assert response.status_code == 409
    assert "nightly backup" in response.json()["detail"]


@pytest.mark.parametrize("role", ROLES)
def test_everyone_logged_in_reads_a_job(
    client: TestClient, auth: dict, created: dict, role: Role | None
) -> None:
    response = client.get(f"/api/v1/jobs/{created['id']}", headers=auth[role])
    if role is None:
        assert response.status_code == 401
    else:
        assert response.status_code == 200
        assert response.json()["name"] == "nightly backup"


def test_missing_job_is_a_404_json(client: TestClient, auth: dict) -> None:
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        body = {**NIGHTLY, "version": 1} if method != "GET" else None
        response = client.request(method, "/api/v1/jobs/999", json=body, headers=auth[Role.ADMIN])
        assert response.status_code == 404, method
        assert response.json() == {"detail": "no job with id 999"}


@pytest.mark.parametrize("role", ROLES)
def test_writers_replace_a_job_and_its_version_grows(
    ctx: AppContext, client: TestClient, auth: dict, created: dict, role: Role | None
) -> None:
    body = {**NIGHTLY, "trigger": {"kind": "cron", "expr": "30 3 * * *"}, "version": 1}
    response = client.put(f"/api/v1/jobs/{created['id']}", json=body, headers=auth[role])
    if role not in WRITERS:
        assert response.status_code == DENIED[role]
        stored = client.get(f"/api/v1/jobs/{created['id']}", headers=auth[Role.ADMIN]).json()
        assert stored["version"] == 1
        return
    assert response.status_code == 200
    job = response.json()
    assert (job["version"], job["trigger"]["expr"]) == (2, "30 3 * * *")
    assert job["next_fire_at"].endswith("T19:30:00Z")
    [entry] = _audit(ctx, "update")
    assert entry.changes is not None
    assert entry.changes["before"]["trigger"]["expr"] == "0 2 * * *"
    assert entry.changes["after"]["version"] == 2
    assert "tags" not in entry.changes["after"]  # only what changed


def test_a_stale_version_is_a_409_naming_version_and_changes_nothing(
    client: TestClient, auth: dict, created: dict
) -> None:
    url, admin = f"/api/v1/jobs/{created['id']}", auth[Role.ADMIN]
    first = client.patch(url, json={"version": 1, "description": "first"}, headers=admin)
    assert first.json()["version"] == 2
    for stale in (
        client.patch(url, json={"version": 1, "description": "second"}, headers=admin),
        client.put(url, json={**NIGHTLY, "version": 1}, headers=admin),
        client.delete(url, params={"version": 1}, headers=admin),
    ):
        assert stale.status_code == 409
        detail = stale.json()["detail"]
        assert (detail["field"], detail["current_version"]) == ("version", 2)
    job = client.get(url, headers=admin).json()
    assert (job["version"], job["description"]) == (2, "first")


def test_replace_resets_omitted_fields_and_may_rename(
    client: TestClient, auth: dict, created: dict
) -> None:
    body = {"name": "db dump", "task": "t.dump", "trigger": {"kind": "manual"}, "version": 1}
    job = client.put(f"/api/v1/jobs/{created['id']}", json=body, headers=auth[Role.ADMIN]).json()
    assert (job["name"], job["tags"], job["kwargs"], job["next_fire_at"]) == (
        "db dump", [], {}, None,
    )  # fmt: skip


def test_a_job_read_can_be_written_back_after_dropping_read_only_fields(
    client: TestClient, auth: dict, created: dict
) -> None:
    read_only = {"id", "next_fire_at", "last_fire_at", "last_state", "last_run_id",
                 "fire_count", "created_by", "created_at", "updated_at"}  # fmt: skip
    body = {k: v for k, v in created.items() if k not in read_only}
    response = client.put(f"/api/v1/jobs/{created['id']}", json=body, headers=auth[Role.ADMIN])
    assert response.status_code == 200, response.text
    assert response.json()["trigger"] == created["trigger"]


def test_patch_changes_only_the_fields_sent(client: TestClient, auth: dict, created: dict) -> None:
    url, admin = f"/api/v1/jobs/{created['id']}", auth[Role.ADMIN]
    job = client.patch(url, json={"version": 1, "max_runs": 3}, headers=admin).json()
    assert (job["max_runs"], job["tags"], job["kwargs"]) == (3, ["db", "backup"], NIGHTLY["kwargs"])
    job = client.patch(url, json={"version": 2, "max_runs": None}, headers=admin).json()
    assert (job["max_runs"], job["version"]) == (None, 3)


def test_patch_refuses_null_for_a_required_field(
    client: TestClient, auth: dict, created: dict
) -> None:
    url = f"/api/v1/jobs/{created['id']}"
    response = client.patch(url, json={"version": 1, "task": None}, headers=auth[Role.ADMIN])
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "task"


def test_version_is_required_to_update_by_id(client: TestClient, auth: dict, created: dict) -> None:
    url = f"/api/v1/jobs/{created['id']}"
    response = client.patch(url, json={"description": "x"}, headers=auth[Role.ADMIN])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "version"]


@pytest.mark.parametrize("role", ROLES)
def test_writers_delete_a_job_and_deletion_is_audited(
    ctx: AppContext, client: TestClient, auth: dict, created: dict, role: Role | None
) -> None:
    response = client.delete(f"/api/v1/jobs/{created['id']}", headers=auth[role])
    if role not in WRITERS:
        assert response.status_code == DENIED[role]
        assert _job_count(ctx) == 1
        return
    assert response.status_code == 204
    assert _job_count(ctx) == 0
    [entry] = _audit(ctx, "delete")
    assert entry.changes is not None
    assert entry.changes["before"]["name"] == "nightly backup"
    assert entry.changes["after"] == {}


def test_secret_looking_kwargs_are_masked_in_the_audit_log(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    body = {**NIGHTLY, "kwargs": {"db_password": "hunter2", "host": "db1"}}
    client.post("/api/v1/jobs", json=body, headers=auth[Role.ADMIN])
    [entry] = _audit(ctx, "create")
    assert entry.changes is not None
    assert entry.changes["after"]["kwargs"] == {"db_password": "***", "host": "db1"}


def test_openapi_documents_every_jobs_endpoint_with_its_errors(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    core = {
        "/api/v1/jobs", "/api/v1/jobs/preview", "/api/v1/jobs/by-name/{name}",
        "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/pause", "/api/v1/jobs/{job_id}/resume",
        "/api/v1/jobs/{job_id}/run", "/api/v1/jobs/{job_id}/runs",
    }  # fmt: skip
    assert core <= set(schema["paths"])  # versions, export/apply, dependencies: their routers
    paths = {path: ops for path, ops in schema["paths"].items() if path in core}
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert {"401", "422"} <= set(operation["responses"]), (method, path)
            if method != "get" and path != "/api/v1/jobs/preview":
                assert "403" in operation["responses"], (method, path)
    assert "409" in paths["/api/v1/jobs/{job_id}"]["patch"]["responses"]
    models = schema["components"]["schemas"]
    assert "version" in models["JobPatch"]["required"]
    assert models["JobCreate"]["additionalProperties"] is False
