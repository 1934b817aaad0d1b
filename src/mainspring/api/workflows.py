"""``/api/v1/workflows``: validate a workflow definition, submit a workflow run, follow it as a
tree of steps, retry a failed step; and ``/api/v1/jobs/{id}/dependencies``: the jobs a job
starts after.

A workflow run is a run of ``mainspring.workflow`` (listed under ``/api/v1/runs`` like any
other); its steps are runs of their own, with ids known at submission.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from mainspring.api.audit import AuditActor
from mainspring.api.auth import CurrentUser, Operator
from mainspring.api.celery_dep import CeleryApp, Ctx, ReleasedOperator
from mainspring.api.deps import Db
from mainspring.api.schemas import API_ERRORS, ErrorOut
from mainspring.db.models import JobDependency
from mainspring.services import dependencies as dep_service
from mainspring.services import workflows as wf_service
from mainspring.services.audit import record_as
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
    kind: Literal["step", "chain", "group", "chord"]
    path: str
    state: str = Field(description="a run state, or PENDING when not sent yet")
    task: str | None = None
    name: str | None = None
    run_id: str | None = None
    worker: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    runtime_ms: float | None = None
    children: list[NodeOut] = Field(default_factory=list)


class WorkflowRunOut(BaseModel):
    run_id: str
    state: str
    job_id: int | None
    on_failure: str
    result: Any = None
    error: str | None = None
    tree: NodeOut


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str = Field(min_length=1, max_length=2000, description="the failed step's path")


class RetriedOut(BaseModel):
    run_id: str = Field(description="the workflow run, unfinished again")
    step_run_id: str = Field(description="the new run of the retried step")


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
        state=run.state,
        job_id=run.job_id,
        on_failure=loaded.workflow.on_failure.value,
        result=run.result,
        error=run.exception_message,
        tree=_node(loaded.tree),
    )


@router.post("/runs/{run_id}/retry", response_model=RetriedOut, status_code=202)
def workflow_retry(
    run_id: RunId, body: RetryIn, _caller: ReleasedOperator, ctx: Ctx, celery: CeleryApp
) -> RetriedOut:
    """Run a failed step again and resume the chain(s) after it."""
    new_id = wf_service.retry_step(ctx, celery, run_id, body.step)
    return RetriedOut(run_id=run_id, step_run_id=new_id)


def _node(node: NodeView) -> NodeOut:
    run = node.run
    return NodeOut(
        kind=node.kind,
        path=node.path,
        state=node.state,
        task=node.task,
        name=node.name,
        run_id=node.run_id,
        worker=run.worker if run else None,
        started_at=run.started_at if run else None,
        finished_at=run.finished_at if run else None,
        runtime_ms=run.runtime_ms if run else None,
        children=[_node(c) for c in node.children],
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
