"""Job dependencies with real workers, recorder and scheduler: a child job starts after its
upstream job's run ends (on success, on failure), receives the upstream result, exactly once;
cycles are refused."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Job, Run
from mainspring.errors import ConflictError, ValidationError
from mainspring.services import dependencies as deps
from mainspring.services import jobs as job_service
from mainspring.services.delayed import run_now
from tests.helpers import poll
from tests.integration.test_workflows import Flow, flow  # noqa: F401 - the fixture

MANUAL = {"kind": "manual"}


def make_job(ctx: AppContext, name: str, task: str, **fields: Any) -> int:
    spec = job_service.JobSpec(name=name, task=task, trigger=MANUAL, timezone="UTC", **fields)
    with ctx.session() as session:
        return job_service.create_job(session, spec).id


def fire(ctx: AppContext, job_id: int) -> str:
    with ctx.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return run_now(session, job).id


def child_runs(ctx: AppContext, job_id: int, count: int) -> list[Run]:
    def found() -> list[Run] | None:
        with ctx.session() as session:
            rows = list(session.scalars(select(Run).where(Run.job_id == job_id)))
            session.expunge_all()
        done = [r for r in rows if RunState(r.state).is_final]
        return done if len(done) >= count else None

    return poll(found, timeout=60, what=f"{count} finished runs of job {job_id}")


@pytest.mark.celery
@pytest.mark.redis
def test_child_job_starts_after_upstream_success_with_its_result(flow: Flow) -> None:  # noqa: F811
    up = make_job(flow.ctx, "extract", "tasks.add", args=[20, 22])
    down = make_job(flow.ctx, "load", "tasks.record", kwargs={"upstream_result": None})
    never = make_job(flow.ctx, "alert", "tasks.record")
    with flow.ctx.session() as session:
        deps.add_dependency(session, down, up, "success")
        deps.add_dependency(session, never, up, "failure")
    upstream_id = fire(flow.ctx, up)
    [child] = child_runs(flow.ctx, down, 1)
    assert child.state == RunState.SUCCESS.value
    assert child.trigger == TriggerSource.DEPENDENCY.value
    assert child.result == {"args": [], "kwargs": {"upstream_result": 42}}
    assert child.options["upstream_run"] == upstream_id
    with flow.ctx.session() as session:
        assert list(session.scalars(select(Run).where(Run.job_id == never))) == []


@pytest.mark.celery
@pytest.mark.redis
def test_failure_dependency_fires_on_a_failed_upstream(flow: Flow) -> None:  # noqa: F811
    up = make_job(flow.ctx, "fragile", "tasks.fail")
    on_fail = make_job(flow.ctx, "cleanup", "tasks.record", args=["cleanup"])
    with flow.ctx.session() as session:
        deps.add_dependency(session, on_fail, up, "failure")
    fire(flow.ctx, up)
    [child] = child_runs(flow.ctx, on_fail, 1)
    assert child.result == {"args": ["cleanup"], "kwargs": {}}
    assert "FAILURE" in (child.reason or "")


def test_a_dependency_cycle_is_refused(ctx: AppContext) -> None:
    a, b, c = (make_job(ctx, name, "tasks.add") for name in ("a", "b", "c"))
    with ctx.session() as session:
        deps.add_dependency(session, b, a)
        deps.add_dependency(session, c, b)
    with pytest.raises(ConflictError) as cycle, ctx.session() as s:
        deps.add_dependency(s, a, c)
    path = str(cycle.value).split("cycle: ")[1].split(" -> ")
    assert (sorted(set(path)), path[0] == path[-1], len(path)) == (["a", "b", "c"], True, 4)
    with pytest.raises(ValidationError) as err, ctx.session() as session:
        deps.add_dependency(session, a, a)
    assert err.value.field == "upstream_job_id"
    with ctx.session() as session:
        assert [d.upstream_job_id for d in deps.list_dependencies(session, a)] == []


def test_start_dependents_is_exactly_once(ctx: AppContext) -> None:
    up = make_job(ctx, "up", "tasks.add")
    down = make_job(ctx, "down", "tasks.add")
    with ctx.session() as session:
        deps.add_dependency(session, down, up, "always")
    upstream_id = fire(ctx, up)
    for _ in range(2):  # a replayed batch, or a second recorder
        with ctx.session() as session:
            run = session.get(Run, upstream_id)
            assert run is not None
            run.state = RunState.SUCCESS.value
            deps.start_dependents(session, [run])
    with ctx.session() as session:
        started = list(session.scalars(select(Run).where(Run.job_id == down)))
    assert len(started) == 1
    assert started[0].state == RunState.SCHEDULED.value
