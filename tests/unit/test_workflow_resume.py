"""Resuming a workflow after a failed step is retried (``workflows.resume``), pure: which
steps run again, with which input, and how a partly succeeded group is joined."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import Celery

from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.workflows.builder import chain, chord, group, step, workflow
from mainspring.workflows.compile import step_id, step_ids
from mainspring.workflows.definition import Step, Workflow, parse_workflow
from mainspring.workflows.progress import view
from mainspring.workflows.resume import (
    JOIN_TASK,
    NO_INPUT,
    Join,
    Par,
    Send,
    Seq,
    Work,
    join_results,
    plan,
    to_canvas,
)

ROOT = "wf"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _runs(parsed: Workflow, states: dict[str, tuple[RunState, Any]]) -> dict[str, Run]:
    ids = step_ids(parsed, ROOT, {})
    return {
        ids[path]: Run(id=ids[path], task="t", state=state.value, result=result, finished_at=T0)
        for path, (state, result) in states.items()
    }


def _plan(
    definition: dict[str, Any], states: dict[str, tuple[RunState, Any]], retried: str
) -> tuple[Work | None, list[str], Workflow]:
    parsed = parse_workflow(definition)
    tree = view(parsed.flow, step_ids(parsed, ROOT, {}), _runs(parsed, states))
    work, sent = plan(parsed.flow, tree, retried, lambda run: run.result)
    return work, sent, parsed


def _step(parsed: Workflow, path: str) -> Step:
    return next(s for s in parsed.steps() if s.path == path)


OK, FAILED, REVOKED = RunState.SUCCESS, RunState.FAILURE, RunState.REVOKED
CHORD = workflow(
    chord([step("t.add", 1, 2), step("t.flaky", 3), step("t.add", 5, 6)], step("t.sum"))
)


def test_a_chord_member_runs_again_and_the_callback_gets_every_result() -> None:
    states = {"flow.chord[0]": (OK, 3), "flow.chord[1]": (FAILED, None), "flow.chord[2]": (OK, 11)}
    work, sent, parsed = _plan(CHORD, states, "flow.chord[1]")
    assert sent == ["flow.chord[1]", "flow.callback"]
    assert work == Seq(
        [
            Join("flow", [(1, Send(_step(parsed, "flow.chord[1]")))], [(0, 3), (2, 11)], 3),
            Send(_step(parsed, "flow.callback")),
        ]
    )


def test_a_failed_chord_callback_runs_again_with_the_header_results() -> None:
    states = {
        "flow.chord[0]": (OK, 3),
        "flow.chord[1]": (OK, 7),
        "flow.chord[2]": (OK, 11),
        "flow.callback": (FAILED, None),
    }
    work, sent, parsed = _plan(CHORD, states, "flow.callback")
    assert sent == ["flow.callback"]
    assert work == Send(_step(parsed, "flow.callback"), [3, 7, 11])


def test_a_chain_step_gets_its_upstream_result_and_the_rest_follows() -> None:
    definition = workflow(chain(step("t.add", 1, 2), step("t.flaky"), step("t.mul", 2)))
    states = {"flow.chain[0]": (OK, 3), "flow.chain[1]": (FAILED, None)}
    work, sent, parsed = _plan(definition, states, "flow.chain[1]")
    assert sent == ["flow.chain[1]", "flow.chain[2]"]
    assert work == Seq(
        [Send(_step(parsed, "flow.chain[1]"), 3), Send(_step(parsed, "flow.chain[2]"))]
    )


def test_members_revoked_by_the_stop_policy_run_again_then_the_chain_goes_on() -> None:
    definition = workflow(
        chain(group(step("t.flaky"), step("t.slow"), step("t.add", 1, 1)), step("t.sum"))
    )
    states = {
        "flow.chain[0].group[0]": (FAILED, None),
        "flow.chain[0].group[1]": (REVOKED, None),
        "flow.chain[0].group[2]": (OK, 2),
    }
    work, sent, _ = _plan(definition, states, "flow.chain[0].group[0]")
    assert sent == ["flow.chain[0].group[0]", "flow.chain[0].group[1]", "flow.chain[1]"]
    assert isinstance(work, Seq)
    join = work.items[0]
    assert isinstance(join, Join)
    assert ([i for i, _ in join.items], join.known, join.size) == ([0, 1], [(2, 2)], 3)


def test_another_failed_member_blocks_what_follows_but_not_the_retried_branch() -> None:
    definition = workflow(
        chain(group(step("t.flaky"), step("t.fail")), step("t.sum")), on_failure="continue"
    )
    states = {"flow.chain[0].group[0]": (FAILED, None), "flow.chain[0].group[1]": (FAILED, None)}
    work, sent, parsed = _plan(definition, states, "flow.chain[0].group[0]")
    assert sent == ["flow.chain[0].group[0]"]
    assert work == Par("flow.chain[0]", [Send(_step(parsed, "flow.chain[0].group[0]"))])


def test_the_canvas_feeds_the_known_input_and_names_its_ids() -> None:
    app = Celery("resume-test", set_as_current=False)
    states = {"flow.chord[0]": (OK, 3), "flow.chord[1]": (FAILED, None), "flow.chord[2]": (OK, 11)}
    work, sent, parsed = _plan(CHORD, states, "flow.chord[1]")
    assert work is not None
    gens = dict.fromkeys(sent, 1)
    ids = step_ids(parsed, ROOT, gens)
    canvas = to_canvas(app, work, ROOT, ids, {"root": ROOT, "policy": "stop"}, "flow.chord[1]#1")
    joined, callback = canvas.tasks  # a chain: (the retried member, its join), the callback
    tasks = [*joined.tasks, callback]
    assert [t.task for t in tasks] == ["t.flaky", JOIN_TASK, "t.sum"]
    assert tasks[0].options["task_id"] == step_id(ROOT, "flow.chord[1]", 1)
    assert tasks[1].kwargs == {"known": [[0, 3], [2, 11]], "positions": [1], "size": 3,
                               "single": True}  # fmt: skip
    assert tasks[2].options["task_id"] == step_id(ROOT, "flow.callback", 1)
    fed = to_canvas(app, Send(_step(parsed, "flow.callback"), [1, 2]), ROOT, ids, {}, "x")
    assert (list(fed.args), fed.immutable) == ([[1, 2]], True)
    unfed = to_canvas(app, Send(_step(parsed, "flow.callback"), NO_INPUT), ROOT, ids, {}, "x")
    assert (list(unfed.args), unfed.immutable) == ([], False)


def test_join_puts_new_results_among_the_known_ones() -> None:
    assert join_results(7, [[0, 3], [2, 11]], [1], 3, single=True) == [3, 7, 11]
    assert join_results([7, 9], [[1, 3]], [0, 2], 3, single=False) == [7, 3, 9]
    assert join_results([[1, 2]], [[0, "a"]], [1], 2, single=False) == ["a", [1, 2]]
