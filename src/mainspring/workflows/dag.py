"""The DAG form (``steps`` with ``needs``), compiled to the tree form: a chain of layers.

Layer *n* holds the steps whose needs all lie in layers before *n*; each layer is a group
(a lone step stays a step), and a chain of them runs every step after all of its needs.
DAG steps are immutable: they take their own arguments, not their upstreams' results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mainspring.errors import ValidationError
from mainspring.workflows.definition import Chain, Group, Node, Step


def parse_dag(raw: Any, parse_step: Callable[[dict[str, Any], str], Step]) -> Node:
    if not isinstance(raw, list) or not raw:
        raise ValidationError("steps", "must be a non-empty list")
    steps: list[Step] = []
    needs: dict[str, list[str]] = {}
    for i, item in enumerate(raw):
        path = f"steps[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(path, "must be an object with name and task")
        step = replace(parse_step(item, path), immutable=True)
        if step.name is None:
            raise ValidationError(f"{path}.name", "every DAG step needs a name")
        if step.name in needs:
            raise ValidationError(f"{path}.name", f"{step.name!r} is used twice")
        needs[step.name] = list(item.get("needs") or [])
        steps.append(step)
    _check_needs(steps, needs)
    layers = _layers(steps, needs)
    nodes: list[Node] = [
        layer[0] if len(layer) == 1 else Group(f"layers[{n}]", tuple(layer))
        for n, layer in enumerate(layers)
    ]
    return nodes[0] if len(nodes) == 1 else Chain("layers", tuple(nodes))


def _check_needs(steps: list[Step], needs: dict[str, list[str]]) -> None:
    for step in steps:
        assert step.name is not None
        for j, need in enumerate(needs[step.name]):
            if need not in needs:
                raise ValidationError(f"{step.path}.needs[{j}]", f"no step named {need!r}")
            if need == step.name:
                raise ValidationError(f"{step.path}.needs[{j}]", "a step cannot need itself")
    cycle = find_cycle(needs)
    if cycle:
        first = next(s for s in steps if s.name == cycle[0])
        raise ValidationError(f"{first.path}.needs", "cycle: " + " -> ".join(cycle))


def find_cycle(edges: dict[str, list[str]]) -> list[str]:
    """A cycle in ``edges`` (node -> the nodes it needs) as a closed path, or []."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in edges:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def _layers(steps: list[Step], needs: dict[str, list[str]]) -> list[list[Step]]:
    level: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in level:
            level[name] = 1 + max((depth(n) for n in needs[name]), default=-1)
        return level[name]

    layers: dict[int, list[Step]] = {}
    for step in steps:
        assert step.name is not None
        layers.setdefault(depth(step.name), []).append(step)
    return [layers[n] for n in sorted(layers)]
