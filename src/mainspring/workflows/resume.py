"""Resuming an ended workflow after one of its failed steps is retried: what runs again, as
Celery canvas.

``plan`` walks the definition with each step's recorded state. The retried step runs again
with the input it had (its upstream results, read from the stored runs); a step that
succeeded is not run again, its result stands in for it; a step that did not run (REVOKED
by the stop policy, or never sent) runs when its turn comes; another failed step blocks what
depends on it (it is retried on its own) while the independent branches still go. Whatever
follows new work in a chain runs again, as it would have the first time.

A group (or chord header) of which only some members run again ends with the built-in
``mainspring.workflow.join``: it puts the new results among the stored ones, in the group's
order, so what follows — a chord's callback, the next step of a chain — receives every
member's result, the retried one included. Pure: the results come from ``result_of``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from celery import chain, chord, group
from celery.canvas import Signature

from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.workflows.compile import WORKFLOW_HEADER, step_id, step_signature
from mainspring.workflows.definition import Chain, Chord, Group, Node, Step
from mainspring.workflows.progress import NodeView, steps_of

JOIN_TASK = "mainspring.workflow.join"
NO_INPUT: Any = object()  # the node's input is not known yet: Celery passes it


@dataclass(frozen=True)
class Send:
    """Send ``step`` (at its next generation); ``given`` is prepended to its arguments."""

    step: Step
    given: Any = NO_INPUT


@dataclass(frozen=True)
class Seq:
    items: list[Work]


@dataclass(frozen=True)
class Par:
    path: str
    items: list[Work]


@dataclass(frozen=True)
class Join:
    """Run ``items`` (member index, work) of the group at ``path``, then merge their results
    with the ``known`` ones (index, result) into the group's result of ``size`` members."""

    path: str
    items: list[tuple[int, Work]]
    known: list[tuple[int, Any]]
    size: int


Work = Send | Seq | Par | Join


@dataclass
class Part:
    """A node's outcome: ``done`` with its ``result``, ``blocked`` by a failed step, or
    neither (its ``work`` ends it); ``work`` is what to send now."""

    done: bool = False
    blocked: bool = False
    result: Any = None
    work: Work | None = None


@dataclass
class _Planner:
    retried: str
    states: dict[str, NodeView]
    result_of: Callable[[Run], Any]
    sent: list[str] = field(default_factory=list)

    def node(self, node: Node, given: Any) -> Part:
        if isinstance(node, Step):
            return self.step(node, given)
        if isinstance(node, Chain):
            return self.chain(node, given)
        if isinstance(node, Group):
            return self.group(node.path, node.children, given)
        return self.chord(node, given)

    def step(self, step: Step, given: Any) -> Part:
        view = self.states[step.path]
        if view.state == RunState.SUCCESS.value and step.path != self.retried:
            assert view.run is not None
            return Part(done=True, result=self.result_of(view.run))
        if step.path == self.retried or view.state in (RunState.REVOKED.value, "PENDING"):
            self.sent.append(step.path)
            return Part(work=Send(step, given))
        return Part(blocked=True)  # failed: retried on its own

    def fresh(self, node: Node) -> Work:
        """After new work in a chain: the whole node runs again, fed by Celery."""
        if isinstance(node, Step):
            self.sent.append(node.path)
            return Send(node)
        if isinstance(node, Chain):
            return Seq([self.fresh(child) for child in node.children])
        if isinstance(node, Group):
            return Par(node.path, [self.fresh(child) for child in node.children])
        header = Par(node.path, [self.fresh(child) for child in node.header])
        return Seq([header, self.fresh(node.callback)])

    def chain(self, node: Chain, given: Any) -> Part:
        works: list[Work] = []
        for child in node.children:
            if works:
                works.append(self.fresh(child))
                continue
            part = self.node(child, given)
            if part.blocked:
                return part
            if part.done:
                given = part.result
                continue
            assert part.work is not None
            works.append(part.work)
        if not works:
            return Part(done=True, result=given)
        return Part(work=works[0] if len(works) == 1 else Seq(works))

    def group(self, path: str, members: tuple[Node, ...], given: Any) -> Part:
        parts = [self.node(member, given) for member in members]
        works = [(i, p.work) for i, p in enumerate(parts) if p.work is not None]
        if any(p.blocked for p in parts):
            return Part(blocked=True, work=Par(path, [w for _, w in works]) if works else None)
        if not works:
            return Part(done=True, result=[p.result for p in parts])
        if len(works) == len(parts):
            return Part(work=Par(path, [w for _, w in works]))
        known = [(i, p.result) for i, p in enumerate(parts) if p.done]
        return Part(work=Join(path, works, known, len(parts)))

    def chord(self, node: Chord, given: Any) -> Part:
        header = self.group(node.path, node.header, given)
        if header.blocked:
            return header
        if header.done:
            return self.node(node.callback, header.result)
        assert header.work is not None
        return Part(work=Seq([header.work, self.fresh(node.callback)]))


def plan(
    flow: Node, tree: NodeView, retried: str, result_of: Callable[[Run], Any]
) -> tuple[Work | None, list[str]]:
    """What to send to resume the workflow once ``retried`` runs again, and the paths of
    the steps it sends (each at its next generation)."""
    planner = _Planner(retried, {s.path: s for s in steps_of(tree)}, result_of)
    part = planner.node(flow, NO_INPUT)
    return part.work, planner.sent


def to_canvas(
    app: Any, work: Work, root_id: str, ids: dict[str, str], header: dict[str, Any], tag: str
) -> Signature:
    """``work`` as Celery canvas: steps get the run ids ``ids`` (path -> id); ``tag`` makes
    the ids of this resumption's groups and joins its own."""

    def build(item: Work) -> Signature:
        if isinstance(item, Send):
            return _send(app, item, ids[item.step.path], header)
        if isinstance(item, Seq):
            return chain(*[build(i) for i in item.items], app=app)
        members = [build(w) for w in (item.items if isinstance(item, Par) else
                                      [w for _, w in item.items])]  # fmt: skip
        group_id = _derived(root_id, item.path, tag)
        if isinstance(item, Par):
            return group(members, task_id=group_id, app=app)
        join = _join(app, item, root_id, header, tag)
        if len(members) == 1:
            return chain(members[0], join, app=app)
        return chord(group(members, task_id=group_id, app=app), join, app=app)

    return build(work)


def _send(app: Any, item: Send, run_id: str, header: dict[str, Any]) -> Signature:
    step = item.step
    if item.given is NO_INPUT or step.immutable:
        return step_signature(app, step, run_id, header)
    fed = replace(step, args=[item.given, *step.args])
    return step_signature(app, fed, run_id, header, immutable=True)


def _join(app: Any, item: Join, root_id: str, header: dict[str, Any], tag: str) -> Signature:
    kwargs = {
        "known": [list(pair) for pair in item.known],
        "positions": [i for i, _ in item.items],
        "size": item.size,
        "single": len(item.items) == 1,
    }
    options = {
        "task_id": _derived(root_id, f"{item.path}/join", tag),
        "headers": {WORKFLOW_HEADER: {"root": root_id, "policy": header.get("policy"),
                                      "path": f"{item.path}/join"}},
    }  # fmt: skip
    return app.signature(JOIN_TASK, kwargs=kwargs, options=options)


def _derived(root_id: str, path: str, tag: str) -> str:
    return step_id(root_id, f"{path}@{tag}") if tag else str(uuid.uuid4())


def join_results(
    results: Any, known: list[list[Any]], positions: list[int], size: int, single: bool
) -> list[Any]:
    """The group's result: ``results`` (of the members at ``positions``; one value when
    ``single``) among the ``known`` (index, result) pairs."""
    merged: list[Any] = [None] * size
    for index, value in known:
        merged[int(index)] = value
    fresh = [results] if single else list(results)
    for index, value in zip(positions, fresh, strict=True):
        merged[index] = value
    return merged
