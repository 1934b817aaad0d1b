"""``GET /api/v1/jobs/export``, ``GET /api/v1/jobs/export/schema`` and ``POST
/api/v1/jobs/apply``: roles, round trip, dry run, prune and bad documents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AuditEntry, Job
from mainspring.services.jobs_code import MANAGED_TAG
from tests.integration.test_job_versions import with_jobs_code

ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]
WRITERS = (Role.ADMIN, Role.OPERATOR)
DENIED = {Role.VIEWER: 403, None: 401}
DOC: dict[str, Any] = {
    "version": 1,
    "jobs": [
        {
            "name": "report",
            "task": "reports.daily",
            "trigger": {"kind": "cron", "expr": "0 8 * * *"},
            "kwargs": {"days": 1},
        },
        {"name": "tick", "task": "tasks.tick", "trigger": {"kind": "interval", "every_ms": 500}},
    ],
}


@pytest.fixture
def client(ctx: AppContext, tokens: dict[Role, str]) -> Iterator[TestClient]:
    with TestClient(with_jobs_code(create_app(ctx))) as client:
        yield client


def _names(ctx: AppContext) -> set[str]:
    with ctx.session() as s:
        return set(s.scalars(select(Job.name)))


@pytest.mark.parametrize("role", ROLES)
def test_writers_apply_a_document(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None
) -> None:
    response = client.post("/api/v1/jobs/apply", json={"document": DOC}, headers=auth[role])
    if role not in WRITERS:
        assert response.status_code == DENIED[role]
        assert _names(ctx) == set()
        return
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["applied"], body["dry_run"]) == (True, False)
    assert body["counts"] == {"create": 2, "update": 0, "adopt": 0, "delete": 0, "unchanged": 0}
    report = next(c for c in body["changes"] if c["name"] == "report")
    assert report["action"] == "create"
    assert report["job_id"] is not None
    assert report["after"]["timezone"] == "Asia/Shanghai"  # the server's zone
    assert "create report" in body["diff"]
    with ctx.session() as s:
        job = s.scalar(select(Job).filter_by(name="report"))
        assert job is not None
        assert job.tags == [MANAGED_TAG]
        entry = s.scalar(select(AuditEntry).filter_by(action="create", object_id=str(job.id)))
        assert entry is not None
        assert entry.actor == role.value


@pytest.mark.parametrize("role", ROLES)
def test_anyone_logged_in_exports(client: TestClient, auth: dict, role: Role | None) -> None:
    client.post("/api/v1/jobs/apply", json={"document": DOC}, headers=auth[Role.ADMIN])
    as_json = client.get("/api/v1/jobs/export", headers=auth[role])
    as_yaml = client.get("/api/v1/jobs/export?format=yaml&text=rep", headers=auth[role])
    schema = client.get("/api/v1/jobs/export/schema", headers=auth[role])
    if role is None:
        assert {as_json.status_code, as_yaml.status_code, schema.status_code} == {401}
        return
    assert [j["name"] for j in as_json.json()["jobs"]] == ["report", "tick"]
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    doc = yaml.safe_load(as_yaml.text)
    assert (doc["selector"], [j["name"] for j in doc["jobs"]]) == ({"text": "rep"}, ["report"])
    assert schema.json()["properties"]["jobs"]["type"] == "array"


def test_round_trip_over_the_api_is_a_no_op(client: TestClient, auth: dict) -> None:
    admin = auth[Role.ADMIN]
    client.post("/api/v1/jobs/apply", json={"document": DOC}, headers=admin)
    exported = client.get("/api/v1/jobs/export?format=yaml", headers=admin).text
    again = client.post("/api/v1/jobs/apply", json={"document": exported}, headers=admin).json()
    assert again["counts"] == {"create": 0, "update": 0, "adopt": 0, "delete": 0, "unchanged": 2}
    assert again["applied"] is False
    assert client.get("/api/v1/jobs/export?format=yaml", headers=admin).text == exported


def test_dry_run_answers_the_plan_and_changes_nothing(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    response = client.post(
        "/api/v1/jobs/apply", json={"document": DOC, "dry_run": True}, headers=auth[Role.OPERATOR]
    )
    assert response.status_code == 200
    assert (response.json()["applied"], response.json()["counts"]["create"]) == (False, 2)
    assert _names(ctx) == set()


def test_prune_over_the_api_deletes_only_managed_jobs(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    op = auth[Role.OPERATOR]
    client.post("/api/v1/jobs/apply", json={"document": DOC}, headers=op)
    handmade = {"name": "handmade", "task": "t.h", "trigger": {"kind": "manual"}}
    assert client.post("/api/v1/jobs", json=handmade, headers=op).status_code == 201
    only_report = {"version": 1, "jobs": DOC["jobs"][:1]}
    kept = client.post("/api/v1/jobs/apply", json={"document": only_report}, headers=op).json()
    assert kept["kept"] == ["tick"]
    assert _names(ctx) == {"report", "tick", "handmade"}
    pruned = client.post(
        "/api/v1/jobs/apply", json={"document": only_report, "prune": True}, headers=op
    ).json()
    assert [(c["action"], c["name"]) for c in pruned["changes"] if c["action"] != "unchanged"] == [
        ("delete", "tick")
    ]
    assert _names(ctx) == {"report", "handmade"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"document": "jobs: [1"}, "document"),
        ({"document": {"version": 1, "jobs": [{"name": "x"}]}}, "jobs[0].task"),
        ({"document": {"jobs": [{**DOC["jobs"][0], "queue": "a b"}]}}, "jobs[0].queue"),
        ({"document": {"jobs": [{**DOC["jobs"][0], "task": "no such!"}]}}, "jobs[0].task"),
    ],
)
def test_a_bad_document_is_a_422_naming_the_place(
    ctx: AppContext, client: TestClient, auth: dict, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/jobs/apply", json=body, headers=auth[Role.OPERATOR])
    assert response.status_code == 422, response.text
    assert response.json()["detail"]["field"] == field
    assert _names(ctx) == set()


def test_numbers_json_does_not_have_are_refused(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    body = '{"document": {"jobs": [{"name": "x", "task": "t", "trigger": {"kind": "manual"}, '
    body += '"args": [NaN]}]}}'
    response = client.post(
        "/api/v1/jobs/apply",
        content=body,
        headers={**auth[Role.OPERATOR], "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "jobs[0].args"
    assert _names(ctx) == set()


def test_unknown_request_fields_are_refused(client: TestClient, auth: dict) -> None:
    response = client.post(
        "/api/v1/jobs/apply", json={"document": DOC, "prnue": True}, headers=auth[Role.ADMIN]
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "prnue"]
