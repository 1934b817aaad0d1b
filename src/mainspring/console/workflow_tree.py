"""A workflow run's steps for its run page: the tree ``services.workflows.load`` builds (the one
``/api/v1/workflows/runs/{id}`` returns), flattened into indented rows.

A chain, group or chord shows the span of its steps (first start to last finish); a step shows
its own run's duration and links to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mainspring.db.models import Run
from mainspring.errors import ConflictError, NotFoundError
from mainspring.services import workflows as wf_service
from mainspring.workflows.definition import WORKFLOW_TASK
from mainspring.workflows.progress import NodeView


@dataclass(frozen=True)
class StepRow:
    """One node of the tree, ``depth`` levels in."""

    depth: int
    kind: str
    path: str
    state: str
    task: str | None
    name: str | None
    run_id: str | None
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None


def _span(node: NodeView) -> tuple[datetime | None, datetime | None, float | None]:
    """When a node started and finished, and how long it took (a step: its run's runtime)."""
    if node.run is not None:
        run = node.run
        return run.started_at, run.finished_at, run.runtime_ms
    spans = [_span(child) for child in node.children]
    starts = [s for s, _f, _d in spans if s is not None]
    finishes = [f for _s, f, _d in spans if f is not None]
    start = min(starts) if starts else None
    finish = max(finishes) if finishes and len(finishes) == len(spans) else None
    duration = (finish - start).total_seconds() * 1000 if start and finish else None
    return start, finish, duration


def flatten(node: NodeView, depth: int = 0) -> list[StepRow]:
    """The node and its descendants, parents before children."""
    start, finish, duration = _span(node)
    row = StepRow(
        depth=depth,
        kind=node.kind,
        path=node.path,
        state=node.state,
        task=node.task,
        name=node.name,
        run_id=node.run_id,
        worker=node.run.worker if node.run is not None else None,
        started_at=start,
        finished_at=finish,
        duration_ms=duration,
    )
    rows = [row]
    for child in node.children:
        rows.extend(flatten(child, depth + 1))
    return rows


def workflow_steps(db: Session, run: Run) -> tuple[list[StepRow], str | None]:
    """The steps of a workflow run (empty for any other run), or why they cannot be shown."""
    if run.task != WORKFLOW_TASK:
        return [], None
    try:
        loaded = wf_service.load(db, run.id)
    except (ConflictError, NotFoundError) as exc:
        return [], str(exc)
    return flatten(loaded.tree), None
