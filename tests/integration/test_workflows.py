"""Workflows with real workers (separate processes), a recorder and a scheduler on Redis:
seed 002's chord, a chain passing results, both failure policies, retry and resume, and a
workflow job fired by the scheduler."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Run
from mainspring.scheduler.publisher import CeleryPublisher
from mainspring.scheduler.service import Scheduler
from mainspring.services import jobs as job_service
from mainspring.services import workflows as wf_service
from mainspring.workflows.definition import WORKFLOW_TASK
from tests.conftest import REPO_ROOT, RecordingSystem, WorkerPool
from tests.helpers import poll

pytestmark = [pytest.mark.celery, pytest.mark.redis]

TASKS = "tests.worker_tasks.workflow_tasks"


def step(task: str, *args: Any, **extra: Any) -> dict[str, Any]:
    return {"task": task, "args": list(args), **extra}


class Flow:
    """Recorder (thread), scheduler (thread) and two worker processes loading the test tasks."""

    def __init__(self, system: RecordingSystem, pool: WorkerPool) -> None:
        self.system, self.ctx, self.app, self.pool = system, system.ctx, system.app, pool
        system.start_recorder()
        for _ in range(2):
            pool.start(system.env, "-P", "threads", "-c", "4", "-I", TASKS, cwd=REPO_ROOT)
        self._stop = threading.Event()
        scheduler = Scheduler(self.ctx, CeleryPublisher(self.app), poll_interval=0.2)
        self._thread = threading.Thread(target=scheduler.run, args=(self._stop,), daemon=True)
        self._thread.start()

    def submit(self, definition: dict[str, Any]) -> tuple[str, dict[str, str]]:
        run, ids = wf_service.submit_workflow(self.ctx, self.app, definition, "tester")
        return run.id, ids

    def finished(self, run_id: str, timeout: float = 60) -> wf_service.WorkflowRun:
        def done() -> wf_service.WorkflowRun | None:
            with self.ctx.session() as session:
                loaded = wf_service.load(session, run_id)
                session.expunge_all()
            return loaded if RunState(loaded.run.state).is_final else None

        return poll(done, timeout=timeout, what=f"workflow {run_id} to finish")

    def runs(self, ids: list[str]) -> dict[str, Run]:
        with self.ctx.session() as session:
            rows = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(ids)))}
            session.expunge_all()
        return rows

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "the scheduler did not stop"


@pytest.fixture
def flow(redis_url: str, recording: Any, worker_pool: WorkerPool) -> Iterator[Flow]:
    system = recording(redis_url)
    flow = Flow(system, worker_pool)
    yield flow
    flow.close()


def test_seed002_chord_sums_a_group_of_adds(flow: Flow) -> None:
    definition = {
        "flow": {
            "chord": [step("tasks.add", 1, 2), step("tasks.add", 3, 4), step("tasks.add", 5, 6)],
            "callback": step("tasks.sum"),
        }
    }
    root_id, ids = flow.submit(definition)
    done = flow.finished(root_id)
    assert done.run.state == RunState.SUCCESS.value
    assert done.run.result == 21
    steps = flow.runs(list(ids.values()))
    assert {r.state for r in steps.values()} == {RunState.SUCCESS.value}
    assert all(r.root_id == root_id for r in steps.values())
    assert {r.trigger for r in steps.values()} == {TriggerSource.WORKFLOW.value}
    assert steps[ids["flow.callback"]].result == 21
    assert [c.state for c in done.tree.children] == ["SUCCESS"] * 4


def test_chain_passes_each_result_to_the_next_step(flow: Flow) -> None:
    definition = {
        "flow": {"chain": [step("tasks.add", 1, 2), step("tasks.add", 10), step("tasks.mul", 3)]}
    }
    root_id, ids = flow.submit(definition)
    done = flow.finished(root_id)
    assert done.run.result == (1 + 2 + 10) * 3
    steps = flow.runs(list(ids.values()))
    assert steps[ids["flow.chain[1]"]].args == [3, 10]
    assert steps[ids["flow.chain[2]"]].result == 39


def test_stop_policy_ends_the_workflow_at_its_first_failure(flow: Flow) -> None:
    definition = {
        "flow": {
            "group": [
                {"chain": [step("tasks.fail")]},
                {"chain": [step("tasks.sleep", 1.5, 5), step("tasks.add", 1)]},
            ]
        }
    }
    root_id, ids = flow.submit(definition)
    done = flow.finished(root_id)
    assert done.run.state == RunState.FAILURE.value
    assert done.run.exception_message is not None
    assert "flow.group[0].chain[0] (tasks.fail) ended FAILURE" in done.run.exception_message
    after = flow.runs([ids["flow.group[1].chain[1]"]])
    assert [r.state for r in after.values()] == [RunState.REVOKED.value]


def test_continue_policy_lets_independent_branches_finish(flow: Flow) -> None:
    definition = {
        "on_failure": "continue",
        "flow": {
            "group": [
                {"chain": [step("tasks.fail"), step("tasks.add", 1)]},
                {"chain": [step("tasks.sleep", 1.5, 5), step("tasks.add", 1)]},
            ]
        },
    }
    root_id, ids = flow.submit(definition)
    done = flow.finished(root_id)
    assert done.run.state == RunState.FAILURE.value
    steps = flow.runs(list(ids.values()))
    assert steps[ids["flow.group[1].chain[1]"]].result == 6
    assert ids["flow.group[0].chain[1]"] not in steps  # after the failed step: never sent


def test_retrying_a_failed_step_resumes_the_chain(flow: Flow, tmp_path: Path) -> None:
    marker = str(tmp_path / f"flaky-{uuid.uuid4().hex}")
    definition = {
        "flow": {
            "chain": [step("tasks.add", 1, 2), step("tasks.flaky", marker), step("tasks.mul", 2)]
        }
    }
    root_id, ids = flow.submit(definition)
    assert flow.finished(root_id).run.state == RunState.FAILURE.value
    new_id = wf_service.retry_step(flow.ctx, flow.app, root_id, "flow.chain[1]")
    assert new_id != ids["flow.chain[1]"]
    done = flow.finished(root_id)
    assert done.run.state == RunState.SUCCESS.value
    assert done.run.result == 6
    assert flow.runs([new_id])[new_id].state == RunState.SUCCESS.value


def test_a_scheduled_workflow_job_fires_and_links_its_steps(flow: Flow) -> None:
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    definition = {"flow": {"chain": [step("tasks.add", 2, 3), step("tasks.mul", 10)]}}
    spec = job_service.JobSpec(
        name="nightly-flow",
        task=WORKFLOW_TASK,
        kwargs={"definition": definition},
        trigger={"kind": "interval", "every_ms": 2_000, "anchor": at},
        timezone="UTC",
        max_runs=2,
    )
    with flow.ctx.session() as session:
        job_id = job_service.create_job(session, spec).id

    def two_done() -> list[Run] | None:
        with flow.ctx.session() as session:
            rows = list(session.scalars(select(Run).where(Run.job_id == job_id)))
            session.expunge_all()
        roots = [r for r in rows if r.task == WORKFLOW_TASK and r.state == "SUCCESS"]
        return rows if len(roots) == 2 else None

    rows = poll(two_done, timeout=60, what="two workflow fires")
    roots = [r for r in rows if r.task == WORKFLOW_TASK]
    assert [r.result for r in roots] == [50, 50]
    assert {r.trigger for r in roots} == {TriggerSource.SCHEDULE.value}
    steps = [r for r in rows if r.task != WORKFLOW_TASK]
    assert len(steps) == 4
    assert {r.root_id for r in steps} == {r.id for r in roots}
    assert {r.trigger for r in steps} == {TriggerSource.WORKFLOW.value}


def test_a_group_of_twenty_runs_in_parallel_with_a_nested_chain(flow: Flow) -> None:
    members = [step("tasks.add", i, i) for i in range(20)]
    members.append({"chain": [step("tasks.add", 1, 1), step("tasks.mul", 100)]})
    root_id, ids = flow.submit({"flow": {"group": members}})
    done = flow.finished(root_id)
    assert done.run.state == RunState.SUCCESS.value
    assert done.run.result == [2 * i for i in range(20)] + [200]  # a chain gives its last
    steps = flow.runs(list(ids.values()))
    assert len(steps) == 22
    assert len({r.worker for r in steps.values()}) == 2  # spread over both workers
