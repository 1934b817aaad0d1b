"""Writing workflow definitions in Python; the result is the plain data the API, jobs and
``parse_workflow`` take::

    from mainspring.workflows.builder import chord, step, workflow

    definition = workflow(chord([step("tasks.add", 1, 2), step("tasks.add", 3, 4)],
                                step("tasks.sum")))
"""

from __future__ import annotations

from typing import Any

from mainspring.workflows.definition import VERSION, FailurePolicy


def step(
    task: str,
    *args: Any,
    name: str | None = None,
    options: dict[str, Any] | None = None,
    immutable: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """One task; in a chain it receives the previous result first, unless ``immutable``."""
    node: dict[str, Any] = {"task": task, "args": list(args), "kwargs": kwargs}
    if name is not None:
        node["name"] = name
    if options:
        node["options"] = options
    if immutable:
        node["immutable"] = True
    return node


def chain(*nodes: dict[str, Any]) -> dict[str, Any]:
    """Run ``nodes`` one after the other, each result passed to the next."""
    return {"chain": list(nodes)}


def group(*nodes: dict[str, Any]) -> dict[str, Any]:
    """Run ``nodes`` in parallel; the result is the list of their results."""
    return {"group": list(nodes)}


def chord(header: list[dict[str, Any]], callback: dict[str, Any]) -> dict[str, Any]:
    """Run ``header`` in parallel, then ``callback`` with the list of their results."""
    return {"chord": list(header), "callback": callback}


def workflow(
    flow: dict[str, Any], on_failure: str = FailurePolicy.STOP, name: str | None = None
) -> dict[str, Any]:
    """A whole definition, as stored in a job's kwargs or posted to the API."""
    definition: dict[str, Any] = {"v": VERSION, "on_failure": str(on_failure), "flow": flow}
    if name is not None:
        definition["name"] = name
    return definition
