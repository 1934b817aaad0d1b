"""Retrying a failed step inside a group or a chord, and stopping a workflow run, with real
workers (separate processes), a recorder and a scheduler on Redis."""

from __future__ import annotations

import uuid
from pathlib import Path

import psutil
import pytest

from mainspring.core.states import RunState
from mainspring.services import workflows as wf_service
from mainspring.services.audit import Actor
from mainspring.workflows.compile import step_id
from tests.helpers import cmdline, poll
from tests.integration.test_workflows import Flow, step
from tests.integration.test_workflows import flow as flow  # the fixture

pytestmark = [pytest.mark.celery, pytest.mark.redis]


def test_a_retried_chord_member_lets_the_callback_sum_every_result(
    flow: Flow, tmp_path: Path
) -> None:
    marker = str(tmp_path / f"flaky-{uuid.uuid4().hex}")
    definition = {
        "flow": {
            "chord": [step("tasks.add", 1, 2), step("tasks.flaky", 10, marker),
                      step("tasks.add", 5, 6)],
            "callback": step("tasks.sum"),
        }
    }  # fmt: skip
    root_id, ids = flow.submit(definition)
    failed = flow.finished(root_id)
    assert failed.run.state == RunState.FAILURE.value
    assert "flow.chord[1] (tasks.flaky) ended FAILURE" in (failed.run.exception_message or "")
    new_id = wf_service.retry_step(flow.ctx, flow.app, root_id, "flow.chord[1]")
    assert new_id == step_id(root_id, "flow.chord[1]", 1)
    done = flow.finished(root_id)
    assert done.run.state == RunState.SUCCESS.value
    assert done.run.result == 3 + 10 + 11
    callback = next(c for c in done.tree.children if c.path == "flow.callback")
    assert callback.run is not None
    assert callback.run.args == [[3, 10, 11]]  # every member's result, in order
    assert callback.run.root_id == root_id
    assert [c.state for c in done.tree.children] == ["SUCCESS"] * 4
    retried = done.tree.children[1]
    assert (retried.run_id, retried.generation) == (new_id, 1)
    assert flow.runs([ids["flow.chord[1]"]])[ids["flow.chord[1]"]].state == "FAILURE"


def test_a_retried_group_member_resumes_the_chain_after_the_group(
    flow: Flow, tmp_path: Path
) -> None:
    marker = str(tmp_path / f"flaky-{uuid.uuid4().hex}")
    definition = {
        "on_failure": "continue",
        "flow": {
            "chain": [
                {"group": [step("tasks.add", 1, 1), step("tasks.flaky", 5, marker)]},
                step("tasks.sum"),
            ]
        },
    }
    root_id, ids = flow.submit(definition)
    assert flow.finished(root_id).run.state == RunState.FAILURE.value
    assert ids["flow.chain[1]"] not in flow.runs([ids["flow.chain[1]"]])  # never sent
    wf_service.retry_step(flow.ctx, flow.app, root_id, "flow.chain[0].group[1]")
    done = flow.finished(root_id)
    assert done.run.state == RunState.SUCCESS.value
    assert done.run.result == 7
    first = done.tree.children[0].children[0]
    assert (first.state, first.generation) == ("SUCCESS", 0)  # not run again


def _sleeping(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter() if marker in " ".join(cmdline(p))]


def test_stopping_a_workflow_terminates_running_steps_and_revokes_the_rest(
    flow: Flow, tmp_path: Path
) -> None:
    flow.pool.start(flow.system.env, "-P", "threads", "-c", "2", "-Q", "wf-shell",
                    "--allow-shell")  # fmt: skip
    marker = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"  # a sleep to recognise
    shell = {"task": "mainspring.shell", "kwargs": {"command": ["sleep", marker]},
             "options": {"queue": "wf-shell"}}  # fmt: skip
    definition = {"flow": {"chain": [shell, step("tasks.add", 1, 2)]}}
    root_id, ids = flow.submit(definition)
    poll(lambda: _sleeping(marker), timeout=30, what="the shell step to run")
    stopped = wf_service.stop_workflow(flow.ctx, flow.app, Actor("tester"), root_id)
    assert (stopped.state, stopped.running, stopped.pending) == ("REVOKED", 1, 1)
    poll(lambda: not _sleeping(marker), timeout=20, what="the shell step's process to end")

    def revoked() -> bool:
        runs = flow.runs(list(ids.values()))
        return len(runs) == 2 and {r.state for r in runs.values()} == {"REVOKED"}

    poll(revoked, timeout=30, what="both steps to be REVOKED")
    done = flow.finished(root_id)
    assert done.run.state == RunState.REVOKED.value
    assert done.run.reason == "workflow stopped by tester"
    assert done.tree.done
