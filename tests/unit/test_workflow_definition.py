"""Workflow definitions: parsing both forms, errors that name the path, the builder, the
canvas with its ids known up front, and the progress rules (pure, no services)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from celery import Celery

from mainspring.core.states import RunState
from mainspring.db.models import Run
from mainspring.errors import ValidationError
from mainspring.workflows.builder import chain, chord, group, step, workflow
from mainspring.workflows.compile import step_id, step_ids, to_canvas
from mainspring.workflows.dag import find_cycle
from mainspring.workflows.definition import Chain, Chord, Group, Step, parse_workflow
from mainspring.workflows.progress import failure_summary, final_result, view

SEED002 = workflow(chord([step("tasks.add", 1, 2), step("tasks.add", 3, 4)], step("tasks.sum")))


def test_builder_writes_a_definition_the_parser_accepts() -> None:
    parsed = parse_workflow(SEED002)
    assert isinstance(parsed.flow, Chord)
    assert [s.path for s in parsed.steps()] == ["flow.chord[0]", "flow.chord[1]", "flow.callback"]
    assert parsed.steps()[1].args == [3, 4]


def test_nested_nodes_keep_their_paths() -> None:
    flow = chain(step("a.b"), group(step("c.d"), chain(step("e.f"), step("g.h"))))
    parsed = parse_workflow(workflow(flow, on_failure="continue"))
    assert isinstance(parsed.flow, Chain)
    assert isinstance(parsed.flow.children[1], Group)
    assert parsed.steps()[-1].path == "flow.chain[1].group[1].chain[1]"
    assert parsed.on_failure.value == "continue"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (
            {"flow": {"chain": [{"task": "a.b"}, {"task": "a.c", "kwargs": []}]}},
            "flow.chain[1].kwargs",
        ),
        ({"flow": {"task": "a.b", "colour": "red"}}, "flow.colour"),
        (
            {"flow": {"chain": [{"task": "a"}, {"group": [{"chain": "x"}]}]}},
            "flow.chain[1].group[0].chain",
        ),
        ({"flow": {"task": "a", "name": "x"}, "steps": []}, "flow"),
        ({"flow": {"task": "a", "options": {"priority": 12}}}, "flow.options.priority"),
        (
            {"flow": {"group": [{"task": "a", "name": "n"}, {"task": "b", "name": "n"}]}},
            "flow.group[1].name",
        ),
        ({"flow": {"task": "mainspring.workflow"}}, "flow.task"),
        ({"v": 2, "flow": {"task": "a"}}, "v"),
        ({"steps": [{"task": "a"}]}, "steps[0].name"),
    ],
)
def test_errors_name_the_path(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_workflow(raw)
    assert err.value.field == field


def test_unknown_tasks_are_refused_when_names_are_known() -> None:
    with pytest.raises(ValidationError) as err:
        parse_workflow(SEED002, known_tasks={"tasks.add"})
    assert err.value.field == "flow.callback.task"
    parse_workflow(SEED002, known_tasks={"tasks.add", "tasks.sum"})


def test_dag_compiles_to_layers_and_refuses_cycles() -> None:
    dag = {
        "steps": [
            {"name": "report", "task": "r.report", "needs": ["load_a", "load_b"]},
            {"name": "load_a", "task": "r.load"},
            {"name": "load_b", "task": "r.load", "needs": ["load_a"]},
        ]
    }
    parsed = parse_workflow(dag)
    assert isinstance(parsed.flow, Chain)
    assert [s.name for s in parsed.steps()] == ["load_a", "load_b", "report"]
    assert all(isinstance(s, Step) and s.immutable for s in parsed.steps())
    dag["steps"][1]["needs"] = ["report"]
    with pytest.raises(ValidationError, match="cycle"):
        parse_workflow(dag)
    assert find_cycle({"a": ["b"], "b": []}) == []


def test_canvas_carries_the_step_ids_known_up_front() -> None:
    app = Celery(set_as_current=False)
    parsed = parse_workflow(workflow(chain(step("tasks.add", 1, 2), step("tasks.mul", 3))))
    ids = step_ids(parsed, "root-1", {})
    assert ids == step_ids(parsed, "root-1", {})  # stable: a redelivered launch resends them
    assert ids["flow.chain[1]"] != step_id("root-1", "flow.chain[1]", generation=1)
    canvas = to_canvas(app, parsed, "root-1")
    result = canvas.freeze()
    assert result.id == ids["flow.chain[1]"]
    headers = canvas.tasks[0].options["headers"]["mainspring_workflow"]
    assert headers["root"] == "root-1"
    assert sorted(headers["steps"]) == sorted(ids.values())


def _run(run_id: str, state: RunState, result: Any = None) -> Run:
    now = datetime.now(UTC)
    return Run(id=run_id, task="t", state=state.value, result=result, finished_at=now)


def test_progress_follows_celery_rules() -> None:
    parsed = parse_workflow(
        workflow(chain(step("a.a"), chord([step("b.b"), step("c.c")], step("d.d"))))
    )
    ids = step_ids(parsed, "r", {})
    p = [s.path for s in parsed.steps()]
    runs = {ids[p[0]]: _run(ids[p[0]], RunState.SUCCESS, 1)}
    tree = view(parsed.flow, ids, runs)
    assert (tree.state, tree.done) == ("STARTED", False)
    runs[ids[p[1]]] = _run(ids[p[1]], RunState.FAILURE)
    assert not view(parsed.flow, ids, runs).done  # the header's other member still runs
    runs[ids[p[2]]] = _run(ids[p[2]], RunState.SUCCESS, 2)
    tree = view(parsed.flow, ids, runs)
    assert (tree.done, tree.failed) == (True, True)  # the callback will never run
    assert "flow.chain[1].chord[0] (b.b) ended FAILURE" in failure_summary(tree)
    runs[ids[p[1]]] = _run(ids[p[1]], RunState.SUCCESS, 3)
    assert not view(parsed.flow, ids, runs).done
    runs[ids[p[3]]] = _run(ids[p[3]], RunState.SUCCESS, 5)
    tree = view(parsed.flow, ids, runs)
    assert (tree.state, final_result(tree)) == ("SUCCESS", 5)
