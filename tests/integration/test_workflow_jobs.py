"""A job that runs a workflow, given as ``workflow: {...}``: stored as the one form its runs
carry (task ``mainspring.workflow``, ``kwargs.definition``), checked when saved with errors
naming the field, fired by run-now, and the same over the API, the Python client, jobs as
code and the migration that retired the ``jobs.workflow`` column."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import select

import mainspring
from mainspring.client.errors import InvalidRequest
from mainspring.client.local import Mainspring
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.engine import make_engine
from mainspring.db.migrate import upgrade
from mainspring.db.models import Job, Run, Worker
from mainspring.services import jobs_code
from mainspring.services.jobs_document import load_document
from mainspring.workflows.builder import chain, step, workflow
from mainspring.workflows.definition import WORKFLOW_TASK
from tests.integration.test_client_http import server as server  # the fixture

ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]
DENIED = {Role.VIEWER: 403, None: 401}
FLOW = workflow(chain(step("tasks.add", 1, 2), step("tasks.mul", 10)), name="add then mul")
JOB: dict[str, Any] = {"name": "nightly flow", "workflow": FLOW, "trigger": {"kind": "manual"}}


def _stored(ctx: AppContext, name: str) -> Job:
    with ctx.session() as s:
        job = s.scalars(select(Job).where(Job.name == name)).one()
        s.expunge_all()
        return job


@pytest.mark.parametrize("role", ROLES)
def test_a_job_given_a_workflow_stores_it_as_the_workflow_task(
    ctx: AppContext, client: TestClient, auth: dict, role: Role | None
) -> None:
    r = client.post("/api/v1/jobs", json=JOB, headers=auth[role])
    if role in DENIED:
        assert r.status_code == DENIED[role]
        return
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["task"], body["args"], body["kwargs"]) == (WORKFLOW_TASK, [], {"definition": FLOW})
    job = _stored(ctx, "nightly flow")
    assert (job.task, job.kwargs) == (WORKFLOW_TASK, {"definition": FLOW})
    run = client.post(f"/api/v1/jobs/{job.id}/run", json={}, headers=auth[role])
    assert run.status_code == 202, run.text
    with ctx.session() as s:
        fired = s.get(Run, run.json()["run_id"])
        assert fired is not None
        assert (fired.task, fired.kwargs) == (WORKFLOW_TASK, {"definition": FLOW})


def _registered(ctx: AppContext, *tasks: str) -> None:
    now = datetime.now(UTC)
    with ctx.session() as s:
        s.add(Worker(hostname="w1@t", status="online", registered_tasks=list(tasks),
                     queues=["default"], first_seen_at=now, updated_at=now))  # fmt: skip


DAG_CYCLE = {"steps": [{"name": "a", "task": "tasks.add", "needs": ["b"]},
                       {"name": "b", "task": "tasks.add", "needs": ["a"]}]}  # fmt: skip
DAG_MISSING = {"steps": [{"name": "a", "task": "tasks.add", "needs": ["nope"]}]}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"workflow": DAG_CYCLE}, "workflow.steps[0].needs"),
        ({"workflow": DAG_MISSING}, "workflow.steps[0].needs[0]"),
        ({"workflow": {"flow": {"task": "tasks.unknown"}}}, "workflow.flow.task"),
        ({"workflow": {"flow": {"chord": [{"task": "tasks.add"}]}}}, "workflow.flow.callback"),
        ({"workflow": FLOW, "task": "tasks.add"}, "task"),
        ({"workflow": FLOW, "kwargs": {"x": 1}}, "kwargs"),
        ({"workflow": FLOW, "args": [1]}, "args"),
        ({"task": WORKFLOW_TASK, "kwargs": {"definition": DAG_CYCLE}},
         "kwargs.definition.steps[0].needs"),
        ({"task": WORKFLOW_TASK, "kwargs": {"definition": FLOW, "x": 1}}, "kwargs.x"),
    ],
)  # fmt: skip
def test_a_bad_workflow_is_refused_when_saved_naming_the_field(
    ctx: AppContext, client: TestClient, auth: dict, fields: dict[str, Any], field: str
) -> None:
    _registered(ctx, "tasks.add", "tasks.mul")
    body = {"name": "bad flow", "trigger": {"kind": "manual"}, **fields}
    r = client.post("/api/v1/jobs", json=body, headers=auth[Role.OPERATOR])
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == field


def test_a_job_needs_a_task_or_a_workflow(client: TestClient, auth: dict) -> None:
    body = {"name": "nothing", "trigger": {"kind": "manual"}}
    r = client.post("/api/v1/jobs", json=body, headers=auth[Role.OPERATOR])
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "task"]


def test_patching_in_a_workflow_replaces_the_task(
    ctx: AppContext, client: TestClient, auth: dict
) -> None:
    plain = {"name": "plain", "task": "tasks.add", "args": [1, 2], "trigger": {"kind": "manual"}}
    created = client.post("/api/v1/jobs", json=plain, headers=auth[Role.OPERATOR]).json()
    patch = {"version": created["version"], "workflow": FLOW}
    r = client.patch(f"/api/v1/jobs/{created['id']}", json=patch, headers=auth[Role.OPERATOR])
    assert r.status_code == 200, r.text
    assert (r.json()["task"], r.json()["args"], r.json()["kwargs"]) == (
        WORKFLOW_TASK, [], {"definition": FLOW}
    )  # fmt: skip
    again = {"version": r.json()["version"], "description": "kept as a workflow"}
    kept = client.patch(f"/api/v1/jobs/{created['id']}", json=again, headers=auth[Role.OPERATOR])
    assert kept.json()["kwargs"] == {"definition": FLOW}


def test_the_python_client_takes_a_workflow(ctx: AppContext) -> None:
    info = Mainspring(ctx).upsert_job("client flow", workflow=FLOW, every_ms=60_000)
    assert info.task == WORKFLOW_TASK
    assert _stored(ctx, "client flow").kwargs == {"definition": FLOW}


def test_the_http_client_takes_a_workflow(server: str, tokens: dict[Role, str]) -> None:
    with mainspring.Client(server, token=tokens[Role.OPERATOR]) as ms:
        job, created = ms.upsert_job("http flow", workflow=FLOW, cron="0 3 * * *")
        assert (created, job.task) == (True, WORKFLOW_TASK)
        with pytest.raises(InvalidRequest) as bad:
            ms.upsert_job("http flow", workflow={"flow": {"group": []}}, cron="0 3 * * *")
        assert bad.value.field == "workflow.flow.group"


def test_jobs_as_code_takes_a_workflow_and_round_trips(ctx: AppContext) -> None:
    doc = """
jobs:
  - name: etl
    trigger: {kind: cron, expr: "0 3 * * *"}
    workflow:
      on_failure: continue
      steps:
        - {name: extract, task: tasks.add, args: [1, 2]}
        - {name: load, task: tasks.mul, args: [3, 4], needs: [extract]}
"""
    with ctx.session() as s:
        plan = jobs_code.plan(s, load_document(doc, "UTC", "default").specs)
        assert [c.action for c in plan.changes] == ["create"]
        jobs_code.execute(s, plan, None)
    job = _stored(ctx, "etl")
    assert job.task == WORKFLOW_TASK
    assert job.kwargs["definition"]["on_failure"] == "continue"
    with ctx.session() as s:
        exported = jobs_code.export_yaml(jobs_code.export_document(s))
        again = jobs_code.plan(s, load_document(exported, "UTC", "default").specs)
    assert [c.action for c in again.changes] == ["unchanged"]
    with ctx.session() as s:
        bad = doc.replace("needs: [extract]", "needs: [nope]")
        with pytest.raises(Exception, match=r"workflow\.steps\[1\]\.needs\[0\]"):
            jobs_code.plan(s, load_document(bad, "UTC", "default").specs)


def test_the_migration_moves_a_workflow_column_into_the_kwargs(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0004")
    now = datetime.now(UTC).isoformat()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO jobs (name, description, enabled, task, args, kwargs, workflow, "
                "queue, broadcast, trigger_kind, trigger, timezone, jitter_ms, misfire_policy, "
                "misfire_grace_s, overlap_policy, options, tags, fire_count, version, "
                "created_at, updated_at) VALUES ('old', '', 1, 'x', '[]', '{}', :wf, 'default', "
                "0, 'manual', '{\"kind\": \"manual\"}', 'UTC', 0, 'run_once', 60, 'allow', "
                "'{}', '[]', 0, 1, :now, :now)"
            ),
            {"wf": '{"flow": {"task": "tasks.add"}}', "now": now},
        )
    upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT task, kwargs FROM jobs")).one()
        columns = [c["name"] for c in sa.inspect(conn).get_columns("jobs")]
    engine.dispose()
    assert row[0] == WORKFLOW_TASK
    assert row[1] == '{"definition": {"flow": {"task": "tasks.add"}}}'
    assert "workflow" not in columns
