"""Workflow runs: submit one now, read it as a tree of steps, roll its steps up into it,
retry a failed step and resume.

A workflow run is a run of the built-in task ``mainspring.workflow`` whose kwargs hold the
definition (``{"definition": {...}}``); so it is submitted, scheduled, listed, alerted on and
purged like any run. Its steps are runs whose ids derive from it (``workflows.compile``); the
recorder links them to it (trigger ``workflow``, the workflow's job) and sets its final state
from theirs (``roll_up``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mainspring.context import AppContext
from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Job, Run
from mainspring.errors import ConflictError, NotFoundError, ValidationError
from mainspring.services.clock import utcnow
from mainspring.services.tasks import Submission, submit
from mainspring.services.workers import known_tasks
from mainspring.worker.schemas import BUILTIN_PARAMS
from mainspring.workflows.compile import step_ids, step_signature
from mainspring.workflows.definition import (
    WORKFLOW_TASK,
    Chain,
    Node,
    Step,
    Workflow,
    parse_workflow,
)
from mainspring.workflows.progress import NodeView, failure_summary, final_result, view

logger = logging.getLogger("mainspring.services.workflows")

GENERATIONS = "workflow_generations"  # key in the workflow run's options: path -> retries


@dataclass
class WorkflowRun:
    run: Run
    workflow: Workflow
    tree: NodeView


def allowed_tasks(session: Session) -> set[str] | None:
    """Task names a step may use: built-ins and what workers registered (None: no worker
    has reported its tasks yet, so names cannot be checked)."""
    registered = set(known_tasks(session))
    return (registered | set(BUILTIN_PARAMS)) if registered else None


def validate(session: Session, definition: Any) -> Workflow:
    return parse_workflow(definition, allowed_tasks(session))


def submit_workflow(
    ctx: AppContext,
    app: Any,
    definition: dict[str, Any],
    submitted_by: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[Run, dict[str, str]]:
    """Validate and publish a workflow run now; returns it and its steps' run ids by path."""
    with ctx.session() as session:
        workflow = validate(session, definition)
    sub = Submission(
        task=WORKFLOW_TASK,
        kwargs={"definition": definition},
        trigger=TriggerSource.API,
        submitted_by=submitted_by,
        idempotency_key=idempotency_key,
    )
    run = submit(ctx, app, sub).run
    return run, step_ids(workflow, run.id, {})


def load(session: Session, run_id: str) -> WorkflowRun:
    """A workflow run with its steps' states."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"no run with id {run_id!r}")
    if run.task != WORKFLOW_TASK:
        raise NotFoundError(f"run {run_id} is a {run.task} run, not a workflow")
    return _load(session, run)


def _load(session: Session, run: Run) -> WorkflowRun:
    definition = (run.kwargs or {}).get("definition")
    try:
        workflow = parse_workflow(definition)
    except ValidationError as exc:
        raise ConflictError(f"run {run.id} holds an invalid workflow: {exc}") from None
    ids = step_ids(workflow, run.id, generations(run))
    runs = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(list(ids.values()))))}
    return WorkflowRun(run, workflow, view(workflow.flow, ids, runs))


def generations(run: Run) -> dict[str, int]:
    raw = (run.options or {}).get(GENERATIONS) or {}
    return {str(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def roll_up(session: Session, run: Run) -> bool:
    """Give an unfinished workflow run its steps' outcome once they are done (True if so).
    A run marked LOST (its launching worker went away) is unfinished while its steps run."""
    state = RunState(run.state)
    if state.is_final and state is not RunState.LOST:
        return False
    loaded = _load(session, run)
    tree = loaded.tree
    if state is RunState.LOST:
        if tree.state == "PENDING":
            return False  # lost before it launched anything: LOST is the truth
        run.exception_message = None
    if not tree.done:
        if state is RunState.LOST:
            run.state, run.finished_at = RunState.STARTED.value, None
        return False
    now = utcnow()
    ends = [s.run.finished_at for s in _step_views(tree) if s.run and s.run.finished_at]
    run.finished_at = max(ends, default=now)
    if run.started_at:
        run.runtime_ms = (run.finished_at - run.started_at).total_seconds() * 1000
    if tree.failed:
        run.state = RunState.FAILURE.value
        run.exception_type = "WorkflowStepFailed"
        run.exception_message = failure_summary(tree)
    else:
        run.state = RunState.SUCCESS.value
        run.result = final_result(tree)
    run.updated_at = now
    return True


def _step_views(tree: NodeView) -> list[NodeView]:
    if tree.kind == "step":
        return [tree]
    return [s for child in tree.children for s in _step_views(child)]


# --- retry a failed step and resume --------------------------------------------------------


def retry_step(ctx: AppContext, app: Any, run_id: str, path: str) -> str:
    """Run the failed step at ``path`` again (with the arguments it had) and then the rest of
    every chain around it; the workflow run is unfinished again until they end. Only steps
    whose enclosing nodes are all chains can be resumed so. Returns the new step run id."""
    with ctx.session() as session:
        loaded = load(session, run_id)
        step, following = _chain_position(loaded.workflow.flow, path)
        node = _find(loaded.tree, path)
        if node is None or node.run is None or not node.failed:
            raise ConflictError(f"step {path} has not failed; only a failed step is retried")
        if not loaded.tree.done:
            raise ConflictError("the workflow is still running; retry once it has ended")
        gens = generations(loaded.run)
        for p in [step.path, *[s.path for n in following for s in _steps(n)]]:
            gens[p] = gens.get(p, 0) + 1
        args, kwargs = list(node.run.args or step.args), dict(node.run.kwargs or step.kwargs)
        _reopen(session, loaded.run, gens)
    from celery import chain

    from mainspring.workflows.compile import _node

    ids = step_ids(loaded.workflow, run_id, gens)
    header: dict[str, Any] = {"root": run_id, "policy": loaded.workflow.on_failure.value}
    if loaded.workflow.on_failure.value == "stop":
        header["steps"] = sorted(ids.values())
    retried = Step(step.path, step.task, args, kwargs, step.options)
    new_id = ids[step.path]
    first = step_signature(app, retried, new_id, header, immutable=True)
    rest = [_node(app, n, run_id, ids, header) for n in following]
    canvas = chain(first, *rest, app=app) if rest else first
    canvas.apply_async(root_id=run_id, parent_id=run_id)
    return new_id


def _reopen(session: Session, run: Run, gens: dict[str, int]) -> None:
    """FAILURE -> STARTED (compare-and-set): the workflow goes on."""
    result = session.execute(
        update(Run)
        .where(Run.id == run.id, Run.state == RunState.FAILURE.value)
        .values(
            state=RunState.STARTED.value,
            finished_at=None,
            runtime_ms=None,
            exception_type=None,
            exception_message=None,
            options={**(run.options or {}), GENERATIONS: gens},
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ConflictError(f"workflow run {run.id} is {run.state}; only a failed one resumes")


def _chain_position(flow: Node, path: str) -> tuple[Step, list[Node]]:
    """The step at ``path`` and the nodes that follow it in its enclosing chains (innermost
    first); refused when a group or chord encloses it."""

    def walk(node: Node) -> list[Node] | None:
        if isinstance(node, Step):
            return [] if node.path == path else None
        if not isinstance(node, Chain):
            if any(s.path == path for s in _steps(node)):
                raise ConflictError(
                    f"step {path} is inside a group or chord; only steps of chains resume"
                )
            return None
        for i, child in enumerate(node.children):
            found = walk(child)
            if found is not None:
                return found + list(node.children[i + 1 :])
        return None

    following = walk(flow)
    if following is None:
        raise NotFoundError(f"the workflow has no step {path!r}")
    step = next(s for s in _steps(flow) if s.path == path)
    return step, following


def _steps(node: Node) -> list[Step]:
    from mainspring.workflows.definition import iter_steps

    return iter_steps(node)


def _find(tree: NodeView, path: str) -> NodeView | None:
    if tree.path == path and tree.kind == "step":
        return tree
    for child in tree.children:
        found = _find(child, path)
        if found is not None:
            return found
    return None


def job_workflow(job: Job) -> dict[str, Any] | None:
    """The definition a job runs, when it runs a workflow."""
    if job.task == WORKFLOW_TASK:
        definition = (job.kwargs or {}).get("definition")
        return definition if isinstance(definition, dict) else None
    return job.workflow
