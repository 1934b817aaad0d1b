"""``/api/v1/workflows`` and ``/api/v1/jobs/{id}/dependencies`` as each role: validation
errors naming the path, submission with step ids known at once, the tree view, retry
refusals, dependencies with cycles refused and changes audited."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import select

from mainspring.api.app import create_app
from mainspring.context import AppContext
from mainspring.core.states import Role, RunState
from mainspring.db.models import AuditEntry, Run
from mainspring.services.jobs import JobSpec, create_job
from mainspring.settings import Settings
from mainspring.workflows.compile import step_id
from mainspring.workflows.definition import WORKFLOW_TASK

ROLES: list[Role | None] = [Role.ADMIN, Role.OPERATOR, Role.VIEWER, None]
WRITERS = {Role.ADMIN: True, Role.OPERATOR: True, Role.VIEWER: 403, None: 401}
BASE = "/api/v1/workflows"
CHAIN = {
    "flow": {"chain": [{"task": "tasks.add", "args": [1, 2]}, {"task": "tasks.mul", "args": [3]}]}
}
Auth = dict[Role | None, dict[str, str]]


@pytest.fixture
def settings(data_dir: Path, redis_url: str) -> Settings:
    return Settings(data_dir=data_dir, secret_key="k", broker_url=redis_url)


@pytest.fixture
def web(ctx: AppContext, tokens: dict[Role, str], celery: Celery) -> Iterator[TestClient]:
    app = create_app(ctx)
    app.state.celery = celery
    with TestClient(app) as client:
        yield client


def _run(run_id: str, task: str, state: RunState, **fields: Any) -> Run:
    now = datetime.now(UTC)
    fields.setdefault("options", {})
    return Run(
        id=run_id,
        task=task,
        state=state.value,
        trigger="api",
        attempt=0,
        created_at=now,
        updated_at=now,
        log_bytes=0,
        log_truncated=False,
        **fields,
    )


@pytest.mark.parametrize("role", ROLES)
def test_validate_names_the_path_of_the_error(
    web: TestClient, auth: Auth, role: Role | None
) -> None:
    bad = {"flow": {"chain": [{"task": "tasks.add"}, {"task": "not a task"}]}}
    r = web.post(f"{BASE}/validate", json={"definition": bad}, headers=auth[role])
    if role is None:
        assert r.status_code == 401
        return
    assert r.status_code == 422
    assert r.json()["detail"]["field"] == "flow.chain[1].task"
    ok = web.post(f"{BASE}/validate", json={"definition": CHAIN}, headers=auth[role])
    assert ok.status_code == 200
    assert [s["path"] for s in ok.json()["steps"]] == ["flow.chain[0]", "flow.chain[1]"]


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        (
            {"steps": [{"name": "a", "task": "t.a"}, {"name": "b", "task": "t.b", "needs": ["x"]}]},
            "steps[1].needs[0]",
        ),
        (
            {
                "steps": [
                    {"name": "a", "task": "t.a", "needs": ["b"]},
                    {"name": "b", "task": "t.b", "needs": ["a"]},
                ]
            },
            "steps[0].needs",
        ),
        ({"flow": {"chord": [{"task": "t.a"}]}}, "flow.callback"),
        ({"flow": {"group": []}}, "flow.group"),
        ({"flow": {"task": "mainspring.shell", "kwargs": {}}}, "flow.kwargs"),
        ({"flow": {"task": "t.a", "args": "x"}}, "flow.args"),
        ({"flow": {"task": "t.a"}, "on_failure": "retry"}, "on_failure"),
    ],
)
def test_invalid_definitions_are_refused_with_the_field(
    web: TestClient, auth: Auth, definition: dict[str, Any], field: str
) -> None:
    r = web.post(f"{BASE}/validate", json={"definition": definition}, headers=auth[Role.VIEWER])
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == field


@pytest.mark.parametrize("role", ROLES)
def test_submit_returns_the_workflow_and_step_run_ids(
    web: TestClient, auth: Auth, ctx: AppContext, role: Role | None
) -> None:
    r = web.post(f"{BASE}/runs", json={"definition": CHAIN}, headers=auth[role])
    expected = WRITERS[role]
    if expected is not True:
        assert r.status_code == expected
        return
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["steps"]["flow.chain[1]"] == step_id(body["run_id"], "flow.chain[1]")
    with ctx.session() as session:
        run = session.get(Run, body["run_id"])
        assert run is not None
        assert (run.task, run.state) == (WORKFLOW_TASK, RunState.SENT.value)
        assert run.kwargs == {"definition": CHAIN}


@pytest.mark.parametrize("role", ROLES)
def test_tree_shows_each_step_state(
    web: TestClient, auth: Auth, ctx: AppContext, role: Role | None
) -> None:
    with ctx.session() as session:
        session.add(_run("wf1", WORKFLOW_TASK, RunState.STARTED, kwargs={"definition": CHAIN}))
        first = step_id("wf1", "flow.chain[0]")
        session.add(_run(first, "tasks.add", RunState.SUCCESS, root_id="wf1", result=3))
        session.add(_run("plain", "tasks.add", RunState.SUCCESS))
    r = web.get(f"{BASE}/runs/wf1", headers=auth[role])
    if role is None:
        assert r.status_code == 401
        return
    assert r.status_code == 200
    tree = r.json()["tree"]
    assert (tree["kind"], tree["state"]) == ("chain", "STARTED")
    assert [(c["state"], c["run_id"]) for c in tree["children"]] == [
        ("SUCCESS", first),
        ("PENDING", step_id("wf1", "flow.chain[1]")),
    ]
    assert web.get(f"{BASE}/runs/plain", headers=auth[role]).status_code == 404
    assert web.get(f"{BASE}/runs/nope", headers=auth[role]).status_code == 404


@pytest.mark.parametrize("role", ROLES)
def test_retry_refuses_a_step_that_has_not_failed(
    web: TestClient, auth: Auth, ctx: AppContext, role: Role | None
) -> None:
    with ctx.session() as session:
        session.add(_run("wf2", WORKFLOW_TASK, RunState.STARTED, kwargs={"definition": CHAIN}))
    r = web.post(f"{BASE}/runs/wf2/retry", json={"step": "flow.chain[0]"}, headers=auth[role])
    expected = WRITERS[role]
    assert r.status_code == (409 if expected is True else expected)
    if expected is True:
        missing = web.post(f"{BASE}/runs/wf2/retry", json={"step": "x"}, headers=auth[role])
        assert missing.status_code == 404


def _jobs(ctx: AppContext) -> list[int]:
    with ctx.session() as s:
        return [
            create_job(
                s, JobSpec(name=n, task="tasks.add", trigger={"kind": "manual"}, timezone="UTC")
            ).id
            for n in ("extract", "transform", "load")
        ]


@pytest.mark.parametrize("role", ROLES)
def test_dependencies_are_added_listed_and_removed(
    web: TestClient, auth: Auth, ctx: AppContext, role: Role | None
) -> None:
    a, b, c = _jobs(ctx)
    put = web.put(
        f"/api/v1/jobs/{b}/dependencies/{a}", json={"condition": "always"}, headers=auth[role]
    )
    expected = WRITERS[role]
    if expected is not True:
        assert put.status_code == expected
        assert web.get(f"/api/v1/jobs/{b}/dependencies", headers=auth[role]).status_code == (
            401 if role is None else 200
        )
        return
    assert put.status_code == 200, put.text
    assert put.json() == {"job_id": b, "upstream_job_id": a, "condition": "always"}
    assert (
        web.put(f"/api/v1/jobs/{c}/dependencies/{b}", json={}, headers=auth[role]).status_code
        == 200
    )
    cycle = web.put(f"/api/v1/jobs/{a}/dependencies/{c}", json={}, headers=auth[role])
    assert cycle.status_code == 409
    assert "cycle" in cycle.json()["detail"]
    unknown = web.put(f"/api/v1/jobs/{a}/dependencies/9999", json={}, headers=auth[role])
    assert unknown.status_code == 422
    assert unknown.json()["detail"]["field"] == "upstream_job_id"
    listed = web.get(f"/api/v1/jobs/{b}/dependencies", headers=auth[role]).json()
    assert [d["upstream_job_id"] for d in listed["upstream"]] == [a]
    assert [d["job_id"] for d in listed["downstream"]] == [c]
    gone = web.delete(f"/api/v1/jobs/{b}/dependencies/{a}", headers=auth[role])
    assert gone.status_code == 204
    again = web.delete(f"/api/v1/jobs/{b}/dependencies/{a}", headers=auth[role])
    assert again.status_code == 404
    with ctx.session() as s:
        actions = list(s.scalars(select(AuditEntry.action).where(AuditEntry.object_type == "job")))
    assert actions.count("add_dependency") == 2
    assert actions.count("remove_dependency") == 1


@pytest.mark.parametrize("role", ROLES)
def test_stop_records_unsent_steps_and_the_run_revoked(
    web: TestClient, auth: Auth, ctx: AppContext, role: Role | None
) -> None:
    with ctx.session() as session:
        session.add(_run("wf3", WORKFLOW_TASK, RunState.STARTED, kwargs={"definition": CHAIN}))
        first = step_id("wf3", "flow.chain[0]")
        session.add(_run(first, "tasks.add", RunState.SUCCESS, root_id="wf3", result=3))
    r = web.post(f"{BASE}/runs/wf3/stop", json={}, headers=auth[role])
    expected = WRITERS[role]
    if expected is not True:
        assert r.status_code == expected
        return
    assert r.status_code == 200, r.text
    assert r.json() == {"run_id": "wf3", "state": "REVOKED", "running": 0, "pending": 1}
    with ctx.session() as session:
        second = session.get(Run, step_id("wf3", "flow.chain[1]"))
        assert second is not None
        assert (second.state, second.root_id, second.parent_id) == ("REVOKED", "wf3", "wf3")
        actions = list(
            session.scalars(select(AuditEntry.action).where(AuditEntry.object_id == "wf3"))
        )
    assert actions == ["terminate"]
    tree = web.get(f"{BASE}/runs/wf3", headers=auth[role]).json()
    assert (tree["state"], tree["tree"]["state"], tree["tree"]["done"]) == (
        "REVOKED",
        "FAILURE",
        True,
    )
    again = web.post(f"{BASE}/runs/wf3/stop", headers=auth[role])
    assert again.status_code == 409


def test_terminating_a_workflow_run_stops_its_steps(
    web: TestClient, auth: Auth, ctx: AppContext
) -> None:
    with ctx.session() as session:
        session.add(_run("wf4", WORKFLOW_TASK, RunState.STARTED, kwargs={"definition": CHAIN}))
    r = web.post("/api/v1/runs/wf4/terminate", headers=auth[Role.OPERATOR])
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "REVOKED"
    with ctx.session() as session:
        steps = [session.get(Run, step_id("wf4", p)) for p in ("flow.chain[0]", "flow.chain[1]")]
        assert [s.state if s else None for s in steps] == ["REVOKED", "REVOKED"]


def test_the_tree_gives_each_step_its_times_error_and_earlier_runs(
    web: TestClient, auth: Auth, ctx: AppContext
) -> None:
    t0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    with ctx.session() as session:
        session.add(_run("wf5", WORKFLOW_TASK, RunState.FAILURE, kwargs={"definition": CHAIN},
                         options={"workflow_generations": {"flow.chain[1]": 1}},
                         started_at=t0, exception_message="step flow.chain[1] failed"))  # fmt: skip
        session.add(_run(step_id("wf5", "flow.chain[0]"), "tasks.add", RunState.SUCCESS,
                         root_id="wf5", worker="w1@t", started_at=t0,
                         finished_at=t0 + timedelta(seconds=1), runtime_ms=1000.0))  # fmt: skip
        session.add(_run(step_id("wf5", "flow.chain[1]", 1), "tasks.mul", RunState.FAILURE,
                         root_id="wf5", started_at=t0 + timedelta(seconds=2),
                         finished_at=t0 + timedelta(seconds=5), runtime_ms=3000.0,
                         exception_type="ValueError", exception_message="boom"))  # fmt: skip
    body = web.get(f"{BASE}/runs/wf5", headers=auth[Role.VIEWER]).json()
    assert (body["steps"], body["on_failure"], body["error"]) == (
        2, "stop", "step flow.chain[1] failed"
    )  # fmt: skip
    tree = body["tree"]
    assert (tree["done"], tree["runtime_ms"]) == (True, 5000.0)
    first, second = tree["children"]
    assert (first["worker"], first["runtime_ms"], first["retries"]) == ("w1@t", 1000.0, 0)
    assert second["error"] == "ValueError: boom"
    assert second["run_id"] == step_id("wf5", "flow.chain[1]", 1)
    assert (second["retries"], second["previous_run_ids"]) == (
        1, [step_id("wf5", "flow.chain[1]")]
    )  # fmt: skip
    schema = web.get("/api/v1/openapi.json").json()["components"]["schemas"]["NodeOut"]
    assert {"state", "run_id", "runtime_ms", "retries", "children"} <= set(schema["properties"])
    assert schema["properties"]["run_id"]["description"]


def test_a_retry_the_broker_refuses_leaves_the_workflow_as_it_was(
    ctx: AppContext, settings: Settings
) -> None:
    from mainspring.errors import ServiceUnavailableError
    from mainspring.services.workflows import retry_step
    from mainspring.worker.app import make_celery

    with ctx.session() as session:
        session.add(_run("wf6", WORKFLOW_TASK, RunState.FAILURE, kwargs={"definition": CHAIN},
                         exception_message="step flow.chain[0] failed"))  # fmt: skip
        session.add(_run(step_id("wf6", "flow.chain[0]"), "tasks.add", RunState.FAILURE,
                         root_id="wf6"))  # fmt: skip
    down = make_celery(settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"}))
    down.conf.task_publish_retry = False  # nothing listens there: fail at once
    down.conf.result_backend_transport_options = {"retry_policy": {"max_retries": 0}}
    try:
        with pytest.raises(ServiceUnavailableError, match="cannot send the retried step"):
            retry_step(ctx, down, "wf6", "flow.chain[0]")
    finally:
        down.close()
    with ctx.session() as session:
        run = session.get(Run, "wf6")
        assert run is not None
        assert (run.state, run.options, run.exception_message) == (
            "FAILURE", {}, "step flow.chain[0] failed"
        )  # fmt: skip
