"""Versioned jobs: every change keeps a version (who, when, what changed), the API shows the
history with diffs and rolls back; the history outlives the job on every database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from mainspring.api import jobs_code as jobs_code_api
from mainspring.api.app import API_PREFIX, create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AuditEntry, Job, JobVersion
from mainspring.services import jobs as job_service
from mainspring.services.audit import Actor
from mainspring.settings import Settings

ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]
WRITERS = (Role.ADMIN, Role.OPERATOR)
DENIED = {Role.VIEWER: 403, None: 401}
NIGHTLY: dict[str, Any] = {
    "name": "nightly backup",
    "task": "mainspring.shell",
    "trigger": {"kind": "cron", "expr": "0 2 * * *"},
    "kwargs": {"script": "pg_dump db > /backup/db.sql"},
}


def with_jobs_code(app: FastAPI) -> FastAPI:
    """The router under test ahead of ``api.jobs`` (as ``create_app`` must include it), unless
    ``create_app`` already does."""
    if not any(getattr(r, "path", "") == f"{API_PREFIX}/jobs/export" for r in app.routes):
        api = APIRouter(prefix=API_PREFIX)
        api.include_router(jobs_code_api.router)
        app.router.routes[0:0] = api.routes
    return app


@pytest.fixture
def client(ctx: AppContext, tokens: dict[Role, str]) -> Iterator[TestClient]:
    with TestClient(with_jobs_code(create_app(ctx))) as client:
        yield client


@pytest.fixture
def job(client: TestClient, auth: dict) -> dict[str, Any]:
    """A job with five versions: created, edited twice, paused and resumed."""
    op = auth[Role.OPERATOR]
    body = client.post("/api/v1/jobs", json=NIGHTLY, headers=op).json()
    body = client.patch(
        f"/api/v1/jobs/{body['id']}",
        json={"version": 1, "trigger": {"kind": "cron", "expr": "0 3 * * *"}},
        headers=auth[Role.ADMIN],
    ).json()
    full = {**NIGHTLY, "version": 2, "description": "dump", "tags": ["db"]}
    body = client.put(f"/api/v1/jobs/{body['id']}", json=full, headers=op).json()
    client.post(f"/api/v1/jobs/{body['id']}/pause", headers=op)
    body = client.post(f"/api/v1/jobs/{body['id']}/resume", headers=op).json()
    assert body["version"] == 5
    return body


def test_every_change_keeps_a_version_with_who_when_and_what(
    client: TestClient, auth: dict, job: dict[str, Any]
) -> None:
    page = client.get(f"/api/v1/jobs/{job['id']}/versions", headers=auth[Role.VIEWER]).json()
    assert page["total"] == 5
    rows = [(v["version"], v["action"], v["changed_by"], v["summary"]) for v in page["items"]]
    assert rows == [
        (5, "resume", "operator", "resumed"),
        (4, "pause", "operator", "paused"),
        (3, "update", "operator", "changed description, tags, trigger"),
        (2, "update", "admin", "changed trigger"),
        (1, "create", "operator", "created"),
    ]
    assert all(v["changed_at"].endswith("Z") or "+" in v["changed_at"] for v in page["items"])
    first = client.get(
        f"/api/v1/jobs/{job['id']}/versions?limit=1&offset=4", headers=auth[Role.VIEWER]
    )
    assert [v["version"] for v in first.json()["items"]] == [1]


def test_a_version_shows_its_definition_and_what_it_changed(
    client: TestClient, auth: dict, job: dict[str, Any]
) -> None:
    detail = client.get(f"/api/v1/jobs/{job['id']}/versions/2", headers=auth[Role.VIEWER]).json()
    assert detail["previous_version"] == 1
    assert detail["definition"]["trigger"]["expr"] == "0 3 * * *"
    assert detail["diff"] == {
        "before": {"trigger": {"v": 1, "kind": "cron", "expr": "0 2 * * *"}},
        "after": {"trigger": {"v": 1, "kind": "cron", "expr": "0 3 * * *"}},
    }
    first = client.get(f"/api/v1/jobs/{job['id']}/versions/1", headers=auth[Role.VIEWER]).json()
    assert first["previous_version"] is None
    assert first["diff"]["before"] == {}
    assert first["diff"]["after"]["name"] == "nightly backup"


@pytest.mark.parametrize("role", ROLES)
def test_reading_history_needs_a_login(
    client: TestClient, auth: dict, job: dict[str, Any], role: Role | None
) -> None:
    for path in (f"/api/v1/jobs/{job['id']}/versions", f"/api/v1/jobs/{job['id']}/versions/1"):
        response = client.get(path, headers=auth[role])
        assert response.status_code == (401 if role is None else 200)


@pytest.mark.parametrize("role", ROLES)
def test_operators_roll_back_as_a_new_version(
    ctx: AppContext, client: TestClient, auth: dict, job: dict[str, Any], role: Role | None
) -> None:
    response = client.post(f"/api/v1/jobs/{job['id']}/versions/2/rollback", headers=auth[role])
    if role not in WRITERS:
        assert response.status_code == DENIED[role]
        assert (
            client.get(f"/api/v1/jobs/{job['id']}", headers=auth[Role.ADMIN]).json()["version"] == 5
        )
        return
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["version"], body["trigger"]["expr"], body["description"], body["tags"]) == (
        6, "0 3 * * *", "", []
    )  # fmt: skip
    latest = client.get(f"/api/v1/jobs/{job['id']}/versions/6", headers=auth[role]).json()
    assert latest["action"] == "rollback"
    assert latest["changed_by"] == role.value
    assert latest["summary"] == "rollback to version 2: changed description, tags, trigger"
    assert latest["diff"]["after"]["trigger"]["expr"] == "0 3 * * *"
    with ctx.session() as s:
        entry = s.scalars(select(AuditEntry).filter_by(action="update")).all()[-1]
        assert (entry.actor, entry.object_id) == (role.value, str(job["id"]))


def test_rollback_refuses_a_stale_read_and_a_version_equal_to_now(
    client: TestClient, auth: dict, job: dict[str, Any]
) -> None:
    op = auth[Role.OPERATOR]
    stale = client.post(
        f"/api/v1/jobs/{job['id']}/versions/1/rollback?current_version=4", headers=op
    )
    assert stale.status_code == 409
    assert "version" in stale.json()["detail"]
    same = client.post(f"/api/v1/jobs/{job['id']}/versions/5/rollback", headers=op)
    assert same.status_code == 422
    assert same.json()["detail"]["field"] == "version"
    ok = client.post(f"/api/v1/jobs/{job['id']}/versions/2/rollback?current_version=5", headers=op)
    assert ok.status_code == 200


def test_unknown_jobs_and_versions_are_404(
    client: TestClient, auth: dict, job: dict[str, Any]
) -> None:
    for path in (
        "/api/v1/jobs/999/versions",
        "/api/v1/jobs/999/versions/1",
        f"/api/v1/jobs/{job['id']}/versions/99",
    ):
        assert client.get(path, headers=auth[Role.VIEWER]).status_code == 404, path
    for path in ("/api/v1/jobs/999/versions/1", f"/api/v1/jobs/{job['id']}/versions/99"):
        response = client.post(f"{path}/rollback", headers=auth[Role.OPERATOR])
        assert response.status_code == 404, path


def test_upsert_by_name_is_versioned(client: TestClient, auth: dict) -> None:
    op = auth[Role.OPERATOR]
    created = client.put("/api/v1/jobs/by-name/seed4", json=NIGHTLY | {"name": None}, headers=op)
    replaced = client.put(
        "/api/v1/jobs/by-name/seed4",
        json={**NIGHTLY, "name": "seed4", "enabled": False},
        headers=op,
    )
    assert (created.status_code, replaced.status_code) == (201, 200)
    page = client.get(f"/api/v1/jobs/{created.json()['id']}/versions", headers=op).json()
    assert [(v["version"], v["action"], v["summary"]) for v in page["items"]] == [
        (2, "update", "changed enabled"),
        (1, "create", "created"),
    ]


def test_a_job_from_before_the_history_gets_a_baseline(ctx: AppContext) -> None:
    with ctx.session() as s:
        job = job_service.create_job(s, job_service.JobSpec(**NIGHTLY, timezone="UTC"), "alice")
        s.execute(delete(JobVersion))  # as if created before migration 0003
    with ctx.session() as s:
        job = job_service.get_job(s, job.id)
        spec = job_service.JobSpec(**{**job_service.definition(job), "queue": "backups"})
        job_service.update_job(s, job, spec, audit=Actor("bob"))
    with ctx.session() as s:
        rows = s.scalars(select(JobVersion).order_by(JobVersion.version)).all()
        assert [(r.version, r.action, r.changed_by) for r in rows] == [
            (1, "baseline", "alice"),
            (2, "update", "bob"),
        ]
        assert rows[0].definition["queue"] == "default"
        assert rows[1].summary == "changed queue"


def test_history_outlives_the_job_on_every_database(database_url: str, tmp_path: Any) -> None:
    ctx = AppContext.open(Settings(data_dir=tmp_path, database_url=database_url))
    try:
        with ctx.session() as s:
            job = job_service.create_job(s, job_service.JobSpec(**NIGHTLY, timezone="UTC"), "ci")
            job_id = job.id
        with ctx.session() as s:
            job_service.set_enabled(s, job_service.lock_job(s, job_id), False, audit=Actor("ci"))
        with ctx.session() as s:
            job_service.delete_job(s, job_service.lock_job(s, job_id), audit=Actor("ci"))
        with ctx.session() as s:
            assert s.get(Job, job_id) is None
            rows = s.scalars(select(JobVersion).order_by(JobVersion.version)).all()
            assert [(r.job_id, r.job_name, r.version, r.action) for r in rows] == [
                (None, "nightly backup", 1, "create"),
                (None, "nightly backup", 2, "pause"),
                (None, "nightly backup", 3, "delete"),
            ]
            assert rows[2].definition["enabled"] is False
        with ctx.session() as s:  # the name is free again, and a new job starts a new history
            again = job_service.create_job(s, job_service.JobSpec(**NIGHTLY, timezone="UTC"))
            versions = s.scalars(select(JobVersion).where(JobVersion.job_id == again.id)).all()
            assert [v.version for v in versions] == [1]
    finally:
        ctx.close()
