"""How a workflow run's own state follows its steps (``services.workflows.roll_up``), on the
database alone: the steps' outcome becomes the workflow's, and a launcher that was marked
LOST while its steps still run is not lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mainspring.context import AppContext
from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.services.workflows import roll_up
from mainspring.workflows.compile import step_id
from mainspring.workflows.definition import WORKFLOW_TASK
from mainspring.workflows.hooks import on_runs_written

CHAIN = {"flow": {"chain": [{"task": "tasks.add", "args": [1, 2]}, {"task": "tasks.mul"}]}}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _run(run_id: str, task: str, state: RunState, **fields: Any) -> Run:
    return Run(
        id=run_id,
        task=task,
        state=state.value,
        trigger="external",
        attempt=0,
        options={},
        created_at=T0,
        updated_at=T0,
        log_bytes=0,
        log_truncated=False,
        **fields,
    )


def test_steps_roll_up_into_the_workflow_run(ctx: AppContext) -> None:
    first, second = step_id("wf", "flow.chain[0]"), step_id("wf", "flow.chain[1]")
    with ctx.session() as s:
        s.add(_run("wf", WORKFLOW_TASK, RunState.STARTED, kwargs={"definition": CHAIN}))
        s.add(_run(first, "tasks.add", RunState.SUCCESS, root_id="wf", result=3))
    with ctx.session() as s:
        on_runs_written(s, {first: None})
        root, step = s.get(Run, "wf"), s.get(Run, first)
        assert root is not None
        assert step is not None
        assert (root.state, step.trigger, step.parent_id) == ("STARTED", "workflow", "wf")
        end = T0 + timedelta(seconds=5)
        s.add(_run(second, "tasks.mul", RunState.SUCCESS, root_id="wf", result=9, finished_at=end))
    with ctx.session() as s:
        on_runs_written(s, {second: None})
        root = s.get(Run, "wf")
        assert root is not None
        assert (root.state, root.result, root.finished_at) == ("SUCCESS", 9, end)


def test_a_lost_launcher_is_not_lost_while_its_steps_run(ctx: AppContext) -> None:
    first = step_id("wf", "flow.chain[0]")
    with ctx.session() as s:
        s.add(_run("wf", WORKFLOW_TASK, RunState.LOST, kwargs={"definition": CHAIN}))
        s.add(_run("never", WORKFLOW_TASK, RunState.LOST, kwargs={"definition": CHAIN}))
        s.add(_run(first, "tasks.add", RunState.STARTED, root_id="wf"))
    with ctx.session() as s:
        wf, never = s.get(Run, "wf"), s.get(Run, "never")
        assert wf is not None
        assert never is not None
        assert roll_up(s, wf) is False
        assert roll_up(s, never) is False
        assert (wf.state, never.state) == ("STARTED", "LOST")
