"""A workflow job fired every 2 seconds by a real ``mainspring scheduler`` process, run by
``mainspring worker`` processes and recorded by a ``mainspring recorder`` process: every fire
leaves a complete history (the workflow run and all its steps, ended) and a correctly linked
one (steps under their own workflow run and job, with the ids derived from it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mainspring.context import AppContext
from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Job, Run
from mainspring.services import jobs as job_service
from mainspring.services import workflows as wf_service
from mainspring.settings import Settings
from mainspring.workflows.builder import chain, chord, step, workflow
from mainspring.workflows.compile import step_ids
from mainspring.workflows.definition import WORKFLOW_TASK, parse_workflow
from tests.conftest import REPO_ROOT, WorkerPool
from tests.helpers import mainspring_process, poll, stop_process_tree

pytestmark = [pytest.mark.celery, pytest.mark.redis]

TASKS = "tests.worker_tasks.workflow_tasks"
FIRES = 3
FLOW = workflow(
    chain(chord([step("tasks.add", 1, 2), step("tasks.add", 3, 4)], step("tasks.sum")),
          step("tasks.mul", 10)),
    name="sum then scale",
)  # fmt: skip


@pytest.fixture
def system(
    data_dir: Path, redis_url: str, tmp_path: Path, worker_pool: WorkerPool
) -> Iterator[AppContext]:
    """Scheduler and recorder processes, two worker processes; all stopped afterwards."""
    env = {"MAINSPRING_DATA_DIR": str(data_dir), "MAINSPRING_BROKER_URL": redis_url}
    ctx = AppContext.open(Settings(data_dir=data_dir, broker_url=redis_url, secret_key="k"))
    procs = []
    try:
        for role in ("recorder", "scheduler"):
            log = tmp_path / f"{role}.log"
            procs.append(mainspring_process([role], env, log, cwd=REPO_ROOT))
        for _ in range(2):
            worker_pool.start(env, "-P", "threads", "-c", "4", "-I", TASKS, cwd=REPO_ROOT)
        yield ctx
    finally:
        survivors = [pid for proc in procs for pid in stop_process_tree(proc)]
        ctx.close()
        assert survivors == [], f"processes outlived SIGTERM: {survivors}"


def _history(ctx: AppContext, job_id: int) -> list[Run]:
    with ctx.session() as session:
        rows = list(session.scalars(select(Run).where(Run.job_id == job_id)))
        session.expunge_all()
    return rows


def test_a_workflow_every_2_seconds_leaves_complete_linked_histories(system: AppContext) -> None:
    anchor = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    spec = job_service.JobSpec(
        name="every-2s-flow", task="", workflow=FLOW, timezone="UTC", max_runs=FIRES,
        trigger={"kind": "interval", "every_ms": 2_000, "anchor": anchor.isoformat()},
    )  # fmt: skip
    with system.session() as session:
        job_id = job_service.create_job(session, spec).id

    def all_done() -> list[Run] | None:
        rows = _history(system, job_id)
        roots = [r for r in rows if r.task == WORKFLOW_TASK]
        ended = len(roots) == FIRES and all(RunState(r.state).is_final for r in rows)
        return rows if ended and len(rows) == FIRES * 5 else None

    rows = poll(all_done, timeout=120, what=f"{FIRES} workflow fires with all their steps")
    roots = sorted((r for r in rows if r.task == WORKFLOW_TASK), key=lambda r: r.id)
    roots.sort(key=lambda r: r.scheduled_for or anchor)
    assert [r.scheduled_for for r in roots] == [anchor + timedelta(seconds=2 * i)
                                                for i in range(FIRES)]  # fmt: skip
    assert {(r.state, r.trigger) for r in roots} == {("SUCCESS", TriggerSource.SCHEDULE.value)}
    assert [r.result for r in roots] == [100] * FIRES
    parsed = parse_workflow(FLOW)
    for root in roots:
        _check_linked(root, [r for r in rows if r.root_id == root.id and r.id != root.id], parsed)
    with system.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.fire_count, job.last_run_id, job.last_state) == (FIRES, roots[-1].id, "SUCCESS")
        tree = wf_service.load(session, roots[-1].id).tree
        assert tree.done
        assert not tree.failed


def _check_linked(root: Run, steps: list[Run], parsed: Any) -> None:
    """The steps of ``root``: exactly its derived ids, all ended well, all under it."""
    expected = step_ids(parsed, root.id, {})
    assert sorted(r.id for r in steps) == sorted(expected.values())
    by_path = {path: next(r for r in steps if r.id == run_id) for path, run_id in expected.items()}
    assert {r.state for r in steps} == {"SUCCESS"}
    assert {r.trigger for r in steps} == {TriggerSource.WORKFLOW.value}
    assert {r.job_id for r in steps} == {root.job_id}
    own = {root.id, *expected.values()}
    assert all(r.parent_id in own for r in steps), [(r.id, r.parent_id) for r in steps]
    assert by_path["flow.chain[0].callback"].args == [[3, 7]]
    assert by_path["flow.chain[1]"].args == [10, 10]
    assert root.started_at is not None
    assert root.finished_at is not None
    assert all(root.started_at <= r.finished_at <= root.finished_at for r in steps)  # type: ignore[operator]
