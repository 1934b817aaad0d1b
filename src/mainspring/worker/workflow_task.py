"""The built-in task ``mainspring.workflow``: launch a workflow's steps as Celery canvas.

A workflow is a job target like any task: the scheduler (or the API) publishes this task with
the definition in its kwargs, and the worker that takes it sends the steps, each a run of its
own whose id derives from this run's id and the step's path (``workflows.compile``), with
this run as root and parent. Then it ends with ``Ignore``: no success is reported for the
launch itself, so the workflow run stays STARTED until the recorder rolls its steps' outcome
up into it (``workflows.progress``) — SUCCESS with the last step's result, or FAILURE naming
the step that failed.

Failure policy ``stop``: a ``task_failure`` handler revokes (stored revocation, no
termination) every other step of the workflow, so nothing new starts; running steps finish.

``mainspring.workflow.join`` is the small step a resumed workflow adds after a group of
which only some members ran again (``workflows.resume``): it returns the whole group's result.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task, signals
from celery.exceptions import Ignore

from mainspring.worker.guard import run_store
from mainspring.worker.task import TaskRefusedError
from mainspring.workflows.compile import WORKFLOW_HEADER, to_canvas
from mainspring.workflows.definition import WORKFLOW_TASK, parse_workflow
from mainspring.workflows.resume import JOIN_TASK, join_results

logger = logging.getLogger("mainspring.worker")


@shared_task(bind=True, name=WORKFLOW_TASK)  # type: ignore[untyped-decorator]
def workflow(
    self: Task,
    definition: dict[str, Any],
    generations: dict[str, int] | None = None,
    **_: Any,
) -> None:
    """Send the steps of ``definition``; the run's outcome is its steps' (see module doc)."""
    from mainspring.errors import ValidationError

    try:
        parsed = parse_workflow(definition)
    except ValidationError as exc:
        raise TaskRefusedError(f"invalid workflow definition: {exc}") from None
    root_id = str(self.request.id)
    canvas = to_canvas(self.app, parsed, root_id, generations)
    canvas.apply_async(root_id=root_id, parent_id=root_id)
    logger.info("workflow %s launched %d steps", root_id, len(parsed.steps()))
    raise Ignore()


@shared_task(name=JOIN_TASK)  # type: ignore[untyped-decorator]
def join(
    results: Any, known: list[list[Any]], positions: list[int], size: int, single: bool
) -> list[Any]:
    """The results of a group's members that ran again, among those that had succeeded."""
    return join_results(results, known, positions, size, single)


def _workflow_header(request: Any) -> dict[str, Any] | None:
    raw = getattr(request, WORKFLOW_HEADER, None)
    if raw is None and isinstance(getattr(request, "headers", None), dict):
        raw = request.headers.get(WORKFLOW_HEADER)
    return raw if isinstance(raw, dict) else None


def _on_failure(sender: Task | None = None, task_id: str | None = None, **_: Any) -> None:
    """Policy ``stop``: no other step of the failed step's workflow starts any more."""
    if sender is None or not task_id:
        return
    header = _workflow_header(sender.request)
    if not header or header.get("policy") != "stop":
        return
    others = [s for s in header.get("steps") or [] if s != task_id]
    try:
        store = run_store(sender.app)
        for run_id in others:
            store.revoke(run_id, False)
    except Exception:
        logger.exception("could not stop workflow %s after step %s failed", header, task_id)
        return
    logger.info("workflow %s stopped: step %s failed", header.get("root"), task_id)


signals.task_failure.connect(_on_failure, weak=False, dispatch_uid="mainspring.workflow.stop")
