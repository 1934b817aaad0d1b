"""What the recorder does after writing a batch of runs: link workflow steps to their
workflow run, roll finished steps up into it, and start the jobs that depend on runs that
just ended. Each part runs in a savepoint of the batch's transaction and never fails the
batch: a hook that cannot run is logged, and the batch is written all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Job, Run
from mainspring.workflows.definition import WORKFLOW_TASK

logger = logging.getLogger("mainspring.recorder")


def on_runs_written(session: Session, patches: Mapping[str, Any]) -> None:
    """Called by ``Recorder.flush`` after ``write_runs``, in the same transaction."""
    if not patches:
        return
    runs: list[Run] = []
    finished: list[Run] = []
    try:
        with session.begin_nested():
            runs = list(session.scalars(select(Run).where(Run.id.in_(list(patches)))))
            finished = link_and_roll_up(session, runs)
    except Exception:
        logger.exception("could not update workflow runs after a batch; the batch is kept")
    try:
        from mainspring.services.dependencies import start_dependents

        with session.begin_nested():
            start_dependents(session, _unique([*runs, *finished]))
    except Exception:
        logger.exception("could not start dependent jobs after a batch; the batch is kept")


def _unique(runs: list[Run]) -> list[Run]:
    return list({run.id: run for run in runs}.values())


def link_and_roll_up(session: Session, runs: list[Run]) -> list[Run]:
    """Mark the batch's workflow steps as such; finish the workflow runs whose steps are done.
    Returns the workflow runs finished now."""
    from mainspring.services.workflows import roll_up

    root_ids = {r.root_id for r in runs if r.root_id and r.root_id != r.id}
    root_ids |= {r.id for r in runs if r.task == WORKFLOW_TASK}
    if not root_ids:
        return []
    roots = {
        r.id: r
        for r in session.scalars(
            select(Run).where(Run.id.in_(list(root_ids)), Run.task == WORKFLOW_TASK)
        )
    }
    touched: dict[str, Run] = {}
    for run in runs:
        root = roots.get(run.root_id or "") if run.id not in roots else roots[run.id]
        if root is None:
            continue
        touched[root.id] = root
        if run.id != root.id:
            _link(run, root)
    session.flush()
    done = [root for root in touched.values() if roll_up(session, root)]
    for root in done:
        job = session.get(Job, root.job_id) if root.job_id is not None else None
        if job is not None and job.last_run_id in (None, root.id):
            job.last_state, job.last_run_id = root.state, root.id
    return done


def _link(step: Run, root: Run) -> None:
    if step.trigger == TriggerSource.EXTERNAL.value:
        step.trigger = TriggerSource.WORKFLOW.value
    if step.job_id is None and root.job_id is not None:
        step.job_id = root.job_id
    if step.parent_id is None:
        step.parent_id = root.id


def is_top_level(run: Run) -> bool:
    """A run that stands for its job (not a workflow step, not a broadcast copy)."""
    return run.parent_id is None and run.trigger != TriggerSource.WORKFLOW.value


def ended(run: Run) -> bool:
    return RunState(run.state).is_final and run.state != RunState.SKIPPED.value
