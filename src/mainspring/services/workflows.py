"""Workflow runs: submit one now, read it as a tree of steps, roll its steps up into it,
retry a failed step and resume, stop one.

A workflow run is a run of the built-in task ``mainspring.workflow`` whose kwargs hold the
definition (``{"definition": {...}}``); so it is submitted, scheduled, listed, alerted on and
purged like any run. Its steps are runs whose ids derive from it (``workflows.compile``); the
recorder links them to it (trigger ``workflow``, the workflow's job) and sets its final state
from theirs (``roll_up``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mainspring.context import AppContext
from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Job, Run
from mainspring.errors import (
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationError,
)
from mainspring.services.audit import Actor, record_as
from mainspring.services.clock import utcnow
from mainspring.services.delayed import cancel_run
from mainspring.services.tasks import Submission, submit
from mainspring.services.workers import known_tasks
from mainspring.worker.schemas import BUILTIN_PARAMS
from mainspring.workflows.compile import step_ids
from mainspring.workflows.definition import WORKFLOW_TASK, FailurePolicy, Workflow, parse_workflow
from mainspring.workflows.progress import NodeView, failure_summary, final_result, steps_of, view

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
    gens = generations(run)
    ids = step_ids(workflow, run.id, gens)
    runs = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(list(ids.values()))))}
    return WorkflowRun(run, workflow, view(workflow.flow, ids, runs, gens))


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
    ends = [s.run.finished_at for s in steps_of(tree) if s.run and s.run.finished_at]
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


# --- retry a failed step and resume --------------------------------------------------------


def retry_step(ctx: AppContext, app: Any, run_id: str, path: str) -> str:
    """Run the failed step at ``path`` again, with the input it had, and resume the workflow
    from there (``workflows.resume``): in a chain, the steps after it; in a group or chord
    header, what follows the group once every member has succeeded, with all the members'
    results. The workflow run is unfinished again until they end. Returns the new step run
    id."""
    from mainspring.workflows.resume import plan, to_canvas

    with ctx.session() as session:
        loaded = load(session, run_id)
        node = _find(loaded.tree, path)
        if node is None:
            raise NotFoundError(f"the workflow has no step {path!r}")
        if node.run is None or not node.failed:
            raise ConflictError(f"step {path} has not failed; only a failed step is retried")
        if not loaded.tree.done:
            raise ConflictError("the workflow is still running; retry once it has ended")
        work, sent = plan(loaded.workflow.flow, loaded.tree, path, lambda r: _result(app, r))
        assert work is not None  # the retried step itself is sent
        gens = generations(loaded.run)
        for p in sent:
            gens[p] = gens.get(p, 0) + 1
        run = loaded.run
        before = {"state": run.state, "options": dict(run.options or {}),
                  "finished_at": run.finished_at, "runtime_ms": run.runtime_ms,
                  "exception_type": run.exception_type,
                  "exception_message": run.exception_message}  # fmt: skip
        _reopen(session, loaded.run, gens)
    ids = step_ids(loaded.workflow, run_id, gens)
    header: dict[str, Any] = {"root": run_id, "policy": loaded.workflow.on_failure.value}
    if loaded.workflow.on_failure is FailurePolicy.STOP:
        header["steps"] = sorted(ids.values())
    canvas = to_canvas(app, work, run_id, ids, header, tag=f"{path}#{gens[path]}")
    try:
        canvas.apply_async(root_id=run_id, parent_id=run_id)
    except Exception as exc:
        with ctx.session() as session:  # as it was: it can be retried again
            session.execute(
                update(Run)
                .where(Run.id == run_id, Run.state == RunState.STARTED.value)
                .values(**before)
            )
        raise ServiceUnavailableError(f"cannot send the retried step to the broker: {exc}") from exc
    logger.info("workflow %s resumed from step %s (%d steps)", run_id, path, len(sent))
    return ids[path]


def _result(app: Any, run: Run) -> Any:
    """A step's result as the next step gets it: the stored one, or, when it was too big to
    store whole, the result backend's."""
    value = run.result
    if not (isinstance(value, dict) and set(value) == {"truncated", "prefix"}):
        return value
    found = app.AsyncResult(run.id)
    if found.state == RunState.SUCCESS.value:
        return found.result
    raise ConflictError(
        f"the result of run {run.id} was too big to store and the result backend no longer "
        "has it; the steps that need it cannot run again"
    )


def _reopen(session: Session, run: Run, gens: dict[str, int]) -> None:
    """FAILURE (or REVOKED: stopped) -> STARTED, compare-and-set: the workflow goes on."""
    ended = (RunState.FAILURE.value, RunState.REVOKED.value)
    result = session.execute(
        update(Run)
        .where(Run.id == run.id, Run.state.in_(ended))
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
        raise ConflictError(f"workflow run {run.id} is {run.state}; only an ended one resumes")


def _find(tree: NodeView, path: str) -> NodeView | None:
    if tree.path == path and tree.kind == "step":
        return tree
    for child in tree.children:
        found = _find(child, path)
        if found is not None:
            return found
    return None


# --- stop a workflow run --------------------------------------------------------------------


@dataclass(frozen=True)
class Stopped:
    """What stopping did: the workflow run's state now, and how many of its steps were told
    to stop while running or queued (``running``) or will never be sent (``pending``)."""

    run_id: str
    state: str
    running: int
    pending: int


def stop_workflow(
    ctx: AppContext,
    app: Any,
    actor: Actor,
    run_id: str,
    terminate: bool = True,
    signal: str = "SIGTERM",
) -> Stopped:
    """Stop a workflow run: its unfinished steps are revoked (stored first, so no worker
    starts them, then broadcast), running ones also terminated when ``terminate``; steps not
    sent yet are recorded REVOKED at once, and so is the workflow run. Steps already running
    on a pool that cannot be interrupted finish, but nothing after them starts."""
    with ctx.session() as session:
        loaded = load(session, run_id)
        state = RunState(loaded.run.state)
        if state.is_final and state is not RunState.LOST:
            raise ConflictError(f"workflow run {run_id} is already {state.value}")
        steps = steps_of(loaded.tree)
        running = [s.run_id for s in steps if s.run is not None and not s.done and s.run_id]
        pending = [s for s in steps if s.run is None]
    targets = [run_id, *running, *[s.run_id for s in pending if s.run_id]]
    _revoke_all(app, targets, terminate, signal)
    reason = f"workflow stopped by {actor.name}"[:255]
    with ctx.session() as session:
        if state is RunState.SCHEDULED:
            with contextlib.suppress(ConflictError):  # published meanwhile: revoked above
                cancel_run(session, run_id, reason=reason)
        now = utcnow()
        for view in pending:
            _record_revoked(session, loaded.run, view, reason, now)
        final = _end_revoked(session, run_id, reason, now)
        after = {"state": final, "running": len(running), "pending": len(pending)}
        changes = {"before": {"state": state.value}, "after": after}
        record_as(session, actor, "terminate" if terminate else "revoke", "run", run_id, changes)
    logger.info("workflow %s stopped by %s", run_id, actor.name)
    return Stopped(run_id, final, len(running), len(pending))


def _revoke_all(app: Any, run_ids: list[str], terminate: bool, signal: str) -> None:
    """Stored first (a worker offline now still discards them later), then one broadcast."""
    from mainspring.worker.guard import run_store

    store = run_store(app)
    for target in run_ids:
        store.revoke(target, terminate)
    app.control.revoke(run_ids, terminate=terminate, signal=signal)


def _record_revoked(session: Session, root: Run, view: NodeView, reason: str, now: Any) -> None:
    """A step that was never sent, as REVOKED (unless a run of it appeared meanwhile)."""
    assert view.run_id is not None
    assert view.task is not None
    step = Run(
        id=view.run_id, task=view.task, state=RunState.REVOKED.value, options={},
        trigger=TriggerSource.WORKFLOW.value, attempt=0, job_id=root.job_id,
        parent_id=root.id, root_id=root.id, reason=reason, created_at=now,
        finished_at=now, updated_at=now, log_bytes=0, log_truncated=False,
    )  # fmt: skip
    try:
        with session.begin_nested():
            session.add(step)
            session.flush()
    except IntegrityError:
        pass  # the recorder wrote it first: the stored revocation decides its end


def _end_revoked(session: Session, run_id: str, reason: str, now: Any) -> str:
    """The workflow run REVOKED (compare-and-set on any unfinished state, or LOST)."""
    open_states = [s.value for s in RunState if not s.is_final] + [RunState.LOST.value]
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.state.in_(open_states))
        .values(state=RunState.REVOKED.value, reason=reason, finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    run = session.get(Run, run_id)
    assert run is not None
    session.refresh(run)
    job = session.get(Job, run.job_id) if run.job_id is not None else None
    if job is not None and job.last_run_id in (None, run.id):
        job.last_state, job.last_run_id = run.state, run.id
    return run.state


def job_workflow(job: Job) -> dict[str, Any] | None:
    """The definition a job runs, when it runs a workflow."""
    if job.task != WORKFLOW_TASK:
        return None
    definition = (job.kwargs or {}).get("definition")
    return definition if isinstance(definition, dict) else None
