"""``/api/v1/workflows``: validate a workflow definition, submit a workflow run, follow it as a
tree of steps, retry a failed step, stop a run; and ``/api/v1/jobs/{id}/dependencies``: the
jobs a job starts after.

A workflow run is a run of ``mainspring.workflow`` (listed under ``/api/v1/runs`` like any
other); its steps are runs of their own, with ids known at submission.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from mainspring.api.audit import AuditActor
from mainspring.api.auth import CurrentUser, Operator
from mainspring.api.celery_dep import CeleryApp, Ctx, ReleasedOperator
from mainspring.api.deps import Db
from mainspring.api.schemas import API_ERRORS, ErrorOut
from mainspring.api.task_schemas import Signal
from mainspring.db.models import JobDependency
from mainspring.services import dependencies as dep_service
from mainspring.services import workflows as wf_service
from mainspring.services.audit import record_as
from mainspring.workflows.compile import step_id
from mainspring.workflows.progress import NodeView

ERRORS: dict[int | str, dict[str, Any]] = {
    **API_ERRORS,
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
}
RunId = Annotated[str, Path(min_length=1, max_length=100)]
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]

router = APIRouter(prefix="/workflows", tags=["workflows"], responses=ERRORS)
jobs_router = APIRouter(prefix="/jobs", tags=["jobs"], responses=ERRORS)


class DefinitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: dict[str, Any] = Field(description="the workflow (tree or DAG form)")


class StepOut(BaseModel):
    path: str
    task: str
    name: str | None = None


class ValidatedOut(BaseModel):
    valid: Literal[True] = True
    on_failure: str
    steps: list[StepOut]


class SubmittedOut(BaseModel):
    run_id: str = Field(description="the workflow run")
    steps: dict[str, str] = Field(description="step path -> run id of the step")


class NodeOut(BaseModel):
    """A node of the workflow's tree: a step (a run of its own) or a chain, group or chord
    of nodes (its ``children``; a chord's last child is its callback). A composite node's
    times span its children: from the first start to the last end, once it is done."""

    kind: Literal["step", "chain", "group", "chord"]
    path: str = Field(description="where the node is in the definition, e.g. flow.chain[1]")
    state: str = Field(
        description="a run state; PENDING: not sent yet. A composite node is SUCCESS or "
        "FAILURE once done, STARTED while any child has been sent, else PENDING"
    )
    done: bool = Field(description="ended (a chain also ends at its first failed member)")
    task: str | None = Field(default=None, description="a step's task")
    name: str | None = Field(default=None, description="a step's name, when it has one")
    run_id: str | None = Field(
        default=None,
        description="a step's current run (/api/v1/runs/{run_id}); known before it is sent",
    )
    retries: int = Field(default=0, description="how many times the step was retried")
    previous_run_ids: list[str] = Field(
        default_factory=list, description="a retried step's earlier runs, oldest first"
    )
    worker: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    runtime_ms: float | None = Field(default=None, description="duration, once ended")
    error: str | None = Field(default=None, description="a failed step's exception")
    children: list[NodeOut] = Field(default_factory=list)


class WorkflowRunOut(BaseModel):
    """A workflow run: its own run (state, times, result or error) and its steps' tree."""

    run_id: str
    name: str | None = Field(description="the definition's name")
    state: str = Field(description="STARTED until its steps end; then theirs (or REVOKED)")
    job_id: int | None
    on_failure: Literal["stop", "continue"]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    runtime_ms: float | None
    result: Any = Field(default=None, description="the last step's result (a group: a list)")
    error: str | None = Field(default=None, description="which step ended it, and how")
    steps: int = Field(description="how many steps the workflow has")
    tree: NodeOut


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str = Field(min_length=1, max_length=2000, description="the failed step's path")


class RetriedOut(BaseModel):
    run_id: str = Field(description="the workflow run, unfinished again")
    step_run_id: str = Field(description="the new run of the retried step")


class StopIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    terminate: bool = Field(
        default=True, description="also stop running steps (else they finish; nothing follows)"
    )
    signal: Signal = Field(default="SIGTERM", description="sent to running steps' processes")


class StoppedOut(BaseModel):
    run_id: str
    state: str = Field(description="the workflow run's state now: REVOKED")
    running: int = Field(description="unfinished steps revoked (and terminated, if asked)")
    pending: int = Field(description="steps never sent, recorded REVOKED")


class DependencyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    condition: Literal["success", "failure", "always"] = "success"


class DependencyOut(BaseModel):
    job_id: int
    upstream_job_id: int
    condition: str


class DependenciesOut(BaseModel):
    upstream: list[DependencyOut] = Field(description="jobs this job starts after")
    downstream: list[DependencyOut] = Field(description="jobs that start after this job")


@router.post("/validate", response_model=ValidatedOut)
def workflow_validate(body: DefinitionIn, db: Db, _user: CurrentUser) -> ValidatedOut:
    """Check a definition without running it; a 400 names the path of the first error."""
    workflow = wf_service.validate(db, body.definition)
    steps = [StepOut(path=s.path, task=s.task, name=s.name) for s in workflow.steps()]
    return ValidatedOut(on_failure=workflow.on_failure.value, steps=steps)


@router.post("/runs", response_model=SubmittedOut, status_code=202)
def workflow_submit(
    body: DefinitionIn, caller: ReleasedOperator, ctx: Ctx, celery: CeleryApp
) -> SubmittedOut:
    """Run a workflow now; the answer carries its run id and every step's run id."""
    run, ids = wf_service.submit_workflow(ctx, celery, body.definition, caller.username)
    return SubmittedOut(run_id=run.id, steps=ids)


@router.get("/runs/{run_id}", response_model=WorkflowRunOut)
def workflow_run(run_id: RunId, db: Db, _user: CurrentUser) -> WorkflowRunOut:
    """A workflow run with its steps as a tree, each with its state and run."""
    loaded = wf_service.load(db, run_id)
    run = loaded.run
    return WorkflowRunOut(
        run_id=run.id,
        name=loaded.workflow.name,
        state=run.state,
        job_id=run.job_id,
        on_failure=loaded.workflow.on_failure.value,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        runtime_ms=run.runtime_ms,
        result=run.result,
        error=run.exception_message or run.reason,
        steps=len(loaded.workflow.steps()),
        tree=_node(loaded.tree, run.id),
    )


@router.post("/runs/{run_id}/retry", response_model=RetriedOut, status_code=202)
def workflow_retry(
    run_id: RunId, body: RetryIn, _caller: ReleasedOperator, ctx: Ctx, celery: CeleryApp
) -> RetriedOut:
    """Run a failed step again and resume the chain(s) after it."""
    new_id = wf_service.retry_step(ctx, celery, run_id, body.step)
    return RetriedOut(run_id=run_id, step_run_id=new_id)


@router.post("/runs/{run_id}/stop", response_model=StoppedOut)
def workflow_stop(
    run_id: RunId, _caller: ReleasedOperator, ctx: Ctx, celery: CeleryApp, actor: AuditActor,
    body: Annotated[StopIn | None, Body()] = None,
) -> StoppedOut:  # fmt: skip
    """Stop a workflow run: its unfinished steps are revoked (running ones terminated unless
    ``terminate`` is false), those not sent yet recorded REVOKED, and the run REVOKED. The
    same happens on ``POST /api/v1/runs/{run_id}/terminate`` (or ``/revoke``) of a workflow
    run. A 409 when it has already ended."""
    body = body or StopIn()
    done = wf_service.stop_workflow(ctx, celery, actor, run_id, body.terminate, body.signal)
    return StoppedOut(run_id=done.run_id, state=done.state, running=done.running,
                      pending=done.pending)  # fmt: skip


def _node(node: NodeView, root_id: str) -> NodeOut:
    run = node.run
    error = None
    if run is not None and node.failed:
        error = ": ".join(p for p in (run.exception_type, run.exception_message) if p) or None
    return NodeOut(
        kind=node.kind,
        path=node.path,
        state=node.state,
        done=node.done,
        task=node.task,
        name=node.name,
        run_id=node.run_id,
        retries=node.generation,
        previous_run_ids=[step_id(root_id, node.path, g) for g in range(node.generation)],
        worker=run.worker if run else None,
        started_at=node.started_at,
        finished_at=node.finished_at,
        runtime_ms=node.runtime_ms,
        error=error,
        children=[_node(c, root_id) for c in node.children],
    )


# --- job dependencies -----------------------------------------------------------------------


def _dep(dep: JobDependency) -> DependencyOut:
    return DependencyOut(
        job_id=dep.job_id, upstream_job_id=dep.upstream_job_id, condition=dep.condition
    )


@jobs_router.get("/{job_id}/dependencies", response_model=DependenciesOut)
def dependencies_list(job_id: JobId, db: Db, _user: CurrentUser) -> DependenciesOut:
    return DependenciesOut(
        upstream=[_dep(d) for d in dep_service.list_dependencies(db, job_id)],
        downstream=[_dep(d) for d in dep_service.list_dependents(db, job_id)],
    )


@jobs_router.put("/{job_id}/dependencies/{upstream_job_id}", response_model=DependencyOut)
def dependency_put(
    job_id: JobId,
    upstream_job_id: JobId,
    body: DependencyIn,
    db: Db,
    _operator: Operator,
    actor: AuditActor,
) -> DependencyOut:
    """Start job ``job_id`` after a run of ``upstream_job_id`` ends (409 on a cycle)."""
    dep = dep_service.add_dependency(db, job_id, upstream_job_id, body.condition)
    changes = {"upstream_job_id": upstream_job_id, "condition": body.condition}
    record_as(db, actor, "add_dependency", "job", job_id, changes)
    return _dep(dep)


@jobs_router.delete("/{job_id}/dependencies/{upstream_job_id}", status_code=204)
def dependency_delete(
    job_id: JobId, upstream_job_id: JobId, db: Db, _operator: Operator, actor: AuditActor
) -> Response:
    dep_service.remove_dependency(db, job_id, upstream_job_id)
    record_as(db, actor, "remove_dependency", "job", job_id, {"upstream_job_id": upstream_job_id})
    return Response(status_code=204)
