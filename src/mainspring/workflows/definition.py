"""A workflow definition, parsed into a typed tree, with errors that name the path.

Two forms compile to the same tree:

- the **tree form**: ``{"v": 1, "flow": NODE}`` where NODE is a step
  ``{"task": ..., "args": [...], "kwargs": {...}, "options": {...}, "name": ...}``,
  ``{"chain": [NODE, ...]}``, ``{"group": [NODE, ...]}`` or
  ``{"chord": [NODE, ...], "callback": NODE}``, nested freely;
- the **DAG form**: ``{"v": 1, "steps": [{"name": ..., "task": ..., "needs": [names]}]}``,
  compiled to a chain of layers (each layer a group of the steps whose needs are all in
  earlier layers). DAG steps do not receive upstream results (they are immutable).

``on_failure`` is ``stop`` (default: nothing new starts after a step fails) or ``continue``
(independent branches go on; steps after the failed one still do not run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from mainspring.errors import ValidationError
from mainspring.services.tasks import TASK_NAME, TaskOptions

VERSION = 1
MAX_STEPS = 500
MAX_DEPTH = 16
NODE_KINDS = ("task", "chain", "group", "chord")


class FailurePolicy(StrEnum):
    STOP = "stop"
    CONTINUE = "continue"


@dataclass(frozen=True)
class Step:
    """One task of the workflow; ``path`` names it in errors, ids and the tree view."""

    path: str
    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: TaskOptions = field(default_factory=TaskOptions)
    name: str | None = None
    immutable: bool = False


@dataclass(frozen=True)
class Chain:
    path: str
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Group:
    path: str
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Chord:
    path: str
    header: tuple[Node, ...]
    callback: Node


Node = Step | Chain | Group | Chord


@dataclass(frozen=True)
class Workflow:
    flow: Node
    on_failure: FailurePolicy = FailurePolicy.STOP
    name: str | None = None

    def steps(self) -> list[Step]:
        return list(iter_steps(self.flow))


class _StepModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(max_length=255)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    options: TaskOptions = Field(default_factory=TaskOptions)
    name: str | None = Field(default=None, min_length=1, max_length=100)
    immutable: bool = False
    needs: list[str] | None = None


def iter_steps(node: Node) -> list[Step]:
    """The steps under ``node`` in definition order."""
    if isinstance(node, Step):
        return [node]
    if isinstance(node, Chord):
        return [s for child in (*node.header, node.callback) for s in iter_steps(child)]
    return [s for child in node.children for s in iter_steps(child)]


def parse_workflow(raw: Any, known_tasks: set[str] | None = None) -> Workflow:
    """Validate a definition (a dict, as read from JSON or YAML). ``known_tasks``, when given,
    is every task name that may be used; others are refused."""
    if not isinstance(raw, dict):
        raise ValidationError("definition", "must be a JSON object")
    unknown = set(raw) - {"v", "name", "on_failure", "flow", "steps"}
    if unknown:
        raise ValidationError(sorted(unknown)[0], "unknown field")
    if raw.get("v", VERSION) != VERSION:
        raise ValidationError("v", f"unsupported version; use {VERSION}")
    try:
        policy = FailurePolicy(raw.get("on_failure", FailurePolicy.STOP))
    except ValueError:
        raise ValidationError("on_failure", "use 'stop' or 'continue'") from None
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 200):
        raise ValidationError("name", "must be a string of 1-200 characters")
    if ("flow" in raw) == ("steps" in raw):
        raise ValidationError("flow", "give either 'flow' (a tree) or 'steps' (a DAG)")
    if "flow" in raw:
        flow = _node(raw["flow"], "flow", 0)
    else:
        from mainspring.workflows.dag import parse_dag

        flow = parse_dag(raw["steps"], _step)
    workflow = Workflow(flow=flow, on_failure=policy, name=name)
    _check_steps(workflow.steps(), known_tasks)
    return workflow


def _node(raw: Any, path: str, depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise ValidationError(path, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(raw, dict):
        raise ValidationError(path, "must be an object: a step, chain, group or chord")
    kinds = [k for k in NODE_KINDS if k in raw]
    if len(kinds) != 1:
        raise ValidationError(path, "must have exactly one of task, chain, group, chord")
    kind = kinds[0]
    if kind == "task":
        return _step(raw, path)
    extra = set(raw) - {kind, "callback" if kind == "chord" else kind}
    if extra:
        raise ValidationError(f"{path}.{sorted(extra)[0]}", "unknown field")
    children = _children(raw[kind], f"{path}.{kind}", depth)
    if kind == "chain":
        return Chain(path, children)
    if kind == "group":
        return Group(path, children)
    if "callback" not in raw:
        raise ValidationError(f"{path}.callback", "a chord needs a callback")
    return Chord(path, children, _node(raw["callback"], f"{path}.callback", depth + 1))


def _children(raw: Any, path: str, depth: int) -> tuple[Node, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValidationError(path, "must be a non-empty list")
    return tuple(_node(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(raw))


def _step(raw: dict[str, Any], path: str) -> Step:
    try:
        model = _StepModel.model_validate(raw)
    except PydanticValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ValidationError(f"{path}.{where}" if where else path, error["msg"]) from None
    if not TASK_NAME.fullmatch(model.task):
        raise ValidationError(f"{path}.task", f"{model.task!r} is not a task name")
    return Step(
        path=path,
        task=model.task,
        args=model.args,
        kwargs=model.kwargs,
        options=model.options,
        name=model.name,
        immutable=model.immutable,
    )


def _check_steps(steps: list[Step], known_tasks: set[str] | None) -> None:
    from mainspring.worker.schemas import BUILTIN_PARAMS, describe

    if len(steps) > MAX_STEPS:
        raise ValidationError("flow", f"has {len(steps)} steps; at most {MAX_STEPS}")
    names: set[str] = set()
    for step in steps:
        if step.name is not None:
            if step.name in names:
                raise ValidationError(f"{step.path}.name", f"{step.name!r} is used twice")
            names.add(step.name)
        if step.task == WORKFLOW_TASK:
            raise ValidationError(f"{step.path}.task", "a workflow cannot be a step")
        model = BUILTIN_PARAMS.get(step.task)
        if model is not None:
            if step.args:
                raise ValidationError(f"{step.path}.args", f"{step.task} takes kwargs only")
            try:
                model.model_validate(step.kwargs)
            except PydanticValidationError as exc:
                raise ValidationError(f"{step.path}.kwargs", describe(exc)) from None
        elif known_tasks is not None and step.task not in known_tasks:
            raise ValidationError(f"{step.path}.task", f"no worker has registered {step.task!r}")


WORKFLOW_TASK = "mainspring.workflow"
