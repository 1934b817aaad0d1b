"""A workflow tree as Celery canvas: steps are signatures whose task ids are derived from
the workflow run's id and the step's path, so every step's run id is known before anything
is sent (the API returns them at once; the tree view joins them to the recorded runs; a
redelivered launcher sends the same ids again, which the worker guard discards).
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import chain, chord, group
from celery.canvas import Signature

from mainspring.services.tasks import message_options
from mainspring.worker.routing import host_queue
from mainspring.workflows.definition import Chain, Chord, FailurePolicy, Node, Step, Workflow

NAMESPACE = uuid.UUID("6d61696e-7370-7269-6e67-776f726b666c")
WORKFLOW_HEADER = "mainspring_workflow"


def step_id(root_id: str, path: str, generation: int = 0) -> str:
    """The run id of the step at ``path`` (``generation`` counts its retries)."""
    suffix = f"#{generation}" if generation else ""
    return str(uuid.uuid5(NAMESPACE, f"{root_id}/{path}{suffix}"))


def step_ids(workflow: Workflow, root_id: str, generations: dict[str, int]) -> dict[str, str]:
    """Path -> run id of every step, at its current generation."""
    return {s.path: step_id(root_id, s.path, generations.get(s.path, 0)) for s in workflow.steps()}


def to_canvas(
    app: Any, workflow: Workflow, root_id: str, generations: dict[str, int] | None = None
) -> Signature:
    """The signature that runs ``workflow`` as the steps of run ``root_id``."""
    gens = generations or {}
    ids = step_ids(workflow, root_id, gens)
    header: dict[str, Any] = {"root": root_id, "policy": workflow.on_failure.value}
    if workflow.on_failure is FailurePolicy.STOP:
        header["steps"] = sorted(ids.values())
    return _node(app, workflow.flow, root_id, ids, header)


def step_signature(
    app: Any, step: Step, run_id: str, header: dict[str, Any], immutable: bool | None = None
) -> Signature:
    headers, extra = message_options(step.options)
    headers[WORKFLOW_HEADER] = {**header, "path": step.path}
    options: dict[str, Any] = {"task_id": run_id, "headers": headers, **extra}
    if step.options.worker:
        options["queue"] = host_queue(step.options.worker)
    elif step.options.queue:
        options["queue"] = step.options.queue
    return app.signature(
        step.task,
        args=list(step.args),
        kwargs=dict(step.kwargs),
        options=options,
        immutable=step.immutable if immutable is None else immutable,
    )


def _node(
    app: Any, node: Node, root_id: str, ids: dict[str, str], header: dict[str, Any]
) -> Signature:
    if isinstance(node, Step):
        return step_signature(app, node, ids[node.path], header)
    group_id = step_id(root_id, node.path)
    if isinstance(node, Chord):
        members = [_node(app, child, root_id, ids, header) for child in node.header]
        body = _node(app, node.callback, root_id, ids, header)
        return chord(group(members, task_id=group_id, app=app), body, app=app)
    children = [_node(app, child, root_id, ids, header) for child in node.children]
    if isinstance(node, Chain):
        return chain(*children, app=app)
    return group(children, task_id=group_id, app=app)
