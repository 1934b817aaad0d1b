"""A workflow run's progress, derived from its definition and its steps' recorded runs.

Pure (no I/O): the caller loads the runs by the step ids of ``compile.step_ids``. A step
without a run has not been sent yet (``PENDING``). Composite nodes follow Celery's rules: a
chain ends at its first failed member, a group when all members ended, a chord's callback
runs only after a header that all succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.workflows.definition import Chain, Chord, Node, Step

PENDING = "PENDING"


@dataclass
class NodeView:
    """One node of the tree view: its kind, path, state and, for a step, its run and how
    many times it was retried (``generation``). A composite node spans its children: from
    the first start to the last end, once it is done."""

    kind: str
    path: str
    state: str
    done: bool = False
    failed: bool = False
    task: str | None = None
    name: str | None = None
    run_id: str | None = None
    run: Run | None = None
    children: list[NodeView] = field(default_factory=list)
    generation: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def runtime_ms(self) -> float | None:
        if self.run is not None:
            return self.run.runtime_ms
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000


def view(
    node: Node, ids: dict[str, str], runs: dict[str, Run], gens: dict[str, int] | None = None
) -> NodeView:
    """The tree of ``node`` with each node's state (``gens``: path -> retries)."""
    if isinstance(node, Step):
        found = _step_view(node, ids[node.path], runs.get(ids[node.path]))
        found.generation = (gens or {}).get(node.path, 0)
        return found
    if isinstance(node, Chord):
        header = [view(child, ids, runs, gens) for child in node.header]
        callback = view(node.callback, ids, runs, gens)
        head = _combine("group", node.path, header, sequential=False)
        if head.done and head.failed:
            done, failed = True, True
        elif head.done:
            done, failed = callback.done, callback.failed
        else:
            done, failed = False, False
        return _composite("chord", node.path, [*header, callback], done, failed)
    children = [view(child, ids, runs, gens) for child in node.children]
    kind = "chain" if isinstance(node, Chain) else "group"
    return _combine(kind, node.path, children, sequential=isinstance(node, Chain))


def _step_view(step: Step, run_id: str, run: Run | None) -> NodeView:
    state = run.state if run is not None else PENDING
    done = state != PENDING and RunState(state).is_final
    return NodeView(
        kind="step",
        path=step.path,
        state=state,
        done=done,
        failed=done and state != RunState.SUCCESS.value,
        task=step.task,
        name=step.name,
        run_id=run_id,
        run=run,
        started_at=run.started_at if run is not None else None,
        finished_at=run.finished_at if run is not None else None,
    )


def _combine(kind: str, path: str, children: list[NodeView], sequential: bool) -> NodeView:
    if sequential:
        done, failed = True, False
        for child in children:
            if child.done and child.failed:
                done, failed = True, True
                break
            if not child.done:
                done = False
                break
    else:
        done = all(c.done for c in children)
        failed = done and any(c.failed for c in children)
    return _composite(kind, path, children, done, failed)


def _composite(
    kind: str, path: str, children: list[NodeView], done: bool, failed: bool
) -> NodeView:
    if done:
        state = RunState.FAILURE.value if failed else RunState.SUCCESS.value
    elif any(c.state != PENDING for c in children):
        state = RunState.STARTED.value
    else:
        state = PENDING
    starts = [c.started_at for c in children if c.started_at is not None]
    ends = [c.finished_at for c in children if c.finished_at is not None]
    return NodeView(
        kind, path, state, done, failed, children=children,
        started_at=min(starts, default=None), finished_at=max(ends, default=None) if done else None,
    )  # fmt: skip


def steps_of(tree: NodeView) -> list[NodeView]:
    if tree.kind == "step":
        return [tree]
    return [s for child in tree.children for s in steps_of(child)]


def final_result(tree: NodeView) -> Any:
    """What the workflow returns: the last step's result (a group's: the list of them)."""
    if tree.kind == "step":
        return tree.run.result if tree.run is not None else None
    if tree.kind == "group":
        return [final_result(c) for c in tree.children]
    return final_result(tree.children[-1])


def failure_summary(tree: NodeView) -> str:
    """Which step ended the workflow, and how (the earliest failed one)."""
    failed = [s for s in steps_of(tree) if s.failed and s.run is not None]
    if not failed:
        return "a step did not succeed"
    first = min(failed, key=lambda s: (s.run.finished_at is None, s.run.finished_at or 0, s.path))  # type: ignore[union-attr]
    run = first.run
    assert run is not None
    detail = ": ".join(p for p in (run.exception_type, run.exception_message) if p)
    text = f"step {first.path} ({first.task}) ended {first.state}"
    return f"{text}: {detail}" if detail else text
