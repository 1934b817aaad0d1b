"""Job dependencies: a job starts when a run of another job ends — on ``success``, on
``failure`` (FAILURE, LOST or EXPIRED) or ``always`` (any end but SKIPPED).

Starting is exactly-once: the recorder, in the transaction that records the upstream run's
end, stores the dependent job's run as SCHEDULED (due now) with the idempotency key
``dep:<dependency id>:<upstream run id>``; a scheduler publishes it. A replayed batch or a
second recorder finds the key taken and starts nothing more.

The upstream result reaches the child as the kwarg ``upstream_result`` when the child job's
kwargs name that key (its stored value is a placeholder); the child run's options always
record ``upstream_run`` and ``upstream_job``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from mainspring.core.states import RunState, TriggerSource
from mainspring.db.models import Job, JobDependency, Run
from mainspring.errors import ConflictError, NotFoundError, ValidationError
from mainspring.services.clock import utcnow
from mainspring.services.delayed import submit_delayed
from mainspring.workflows.dag import find_cycle

logger = logging.getLogger("mainspring.services.dependencies")

UPSTREAM_RESULT = "upstream_result"


class Condition(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    ALWAYS = "always"


_FAILED = {RunState.FAILURE.value, RunState.LOST.value, RunState.EXPIRED.value}


def matches(condition: str, state: str) -> bool:
    if state == RunState.SKIPPED.value or not RunState(state).is_final:
        return False
    if condition == Condition.ALWAYS:
        return True
    if condition == Condition.SUCCESS:
        return state == RunState.SUCCESS.value
    return state in _FAILED


def list_dependencies(session: Session, job_id: int) -> list[JobDependency]:
    """The jobs ``job_id`` waits for."""
    _job(session, job_id)
    stmt = select(JobDependency).where(JobDependency.job_id == job_id).order_by(JobDependency.id)
    return list(session.scalars(stmt))


def list_dependents(session: Session, job_id: int) -> list[JobDependency]:
    """The jobs that wait for ``job_id``."""
    _job(session, job_id)
    stmt = select(JobDependency).where(JobDependency.upstream_job_id == job_id)
    return list(session.scalars(stmt.order_by(JobDependency.id)))


def add_dependency(
    session: Session, job_id: int, upstream_job_id: int, condition: str = "success"
) -> JobDependency:
    """``job_id`` starts after ``upstream_job_id`` ends with ``condition``; a cycle is
    refused. Adding an existing pair changes its condition."""
    try:
        cond = Condition(condition)
    except ValueError:
        raise ValidationError("condition", "use success, failure or always") from None
    _job(session, job_id)
    _job(session, upstream_job_id, "upstream_job_id")
    if job_id == upstream_job_id:
        raise ValidationError("upstream_job_id", "a job cannot depend on itself")
    edges: dict[str, list[str]] = {}
    for down, up in session.execute(select(JobDependency.job_id, JobDependency.upstream_job_id)):
        edges.setdefault(str(down), []).append(str(up))
    edges.setdefault(str(job_id), []).append(str(upstream_job_id))
    cycle = find_cycle(edges)
    if cycle:
        names = _names(session, [int(c) for c in cycle])
        raise ConflictError("this dependency would make a cycle: " + " -> ".join(names))
    dep = session.scalar(
        select(JobDependency).where(
            JobDependency.job_id == job_id, JobDependency.upstream_job_id == upstream_job_id
        )
    )
    if dep is None:
        dep = JobDependency(job_id=job_id, upstream_job_id=upstream_job_id)
        session.add(dep)
    dep.condition = cond.value
    session.flush()
    return dep


def remove_dependency(session: Session, job_id: int, upstream_job_id: int) -> None:
    dep = session.scalar(
        select(JobDependency).where(
            JobDependency.job_id == job_id, JobDependency.upstream_job_id == upstream_job_id
        )
    )
    if dep is None:
        raise NotFoundError(f"job {job_id} does not depend on job {upstream_job_id}")
    session.delete(dep)
    session.flush()


def _job(session: Session, job_id: int, field: str = "job_id") -> Job:
    job = session.get(Job, job_id)
    if job is None:
        if field == "job_id":
            raise NotFoundError(f"no job with id {job_id}")
        raise ValidationError(field, f"no job with id {job_id}")
    return job


def _names(session: Session, ids: list[int]) -> list[str]:
    found = dict(session.execute(select(Job.id, Job.name).where(Job.id.in_(ids))).all())
    return [str(found.get(i, i)) for i in ids]


def start_dependents(session: Session, finished_runs: Iterable[Run]) -> list[Run]:
    """Store the runs of the jobs waiting for ``finished_runs`` (those that ended and stand
    for their job); returns the runs started now."""
    from mainspring.workflows.hooks import is_top_level

    ended = [
        r
        for r in finished_runs
        if r.job_id is not None and is_top_level(r) and RunState(r.state).is_final
    ]
    if not ended:
        return []
    upstream_ids = {r.job_id for r in ended}
    deps = list(
        session.scalars(
            select(JobDependency).where(JobDependency.upstream_job_id.in_(upstream_ids))
        )
    )
    started = []
    for run in ended:
        for dep in deps:
            if dep.upstream_job_id == run.job_id and matches(dep.condition, run.state):
                child = _start(session, dep, run)
                if child is not None:
                    started.append(child)
    return started


def _start(session: Session, dep: JobDependency, upstream: Run) -> Run | None:
    key = f"dep:{dep.id}:{upstream.id}"
    if session.scalar(select(Run.id).where(Run.idempotency_key == key)) is not None:
        return None
    job = session.get(Job, dep.job_id)
    if job is None or not job.enabled:
        return None
    kwargs = dict(job.kwargs or {})
    if UPSTREAM_RESULT in kwargs:
        kwargs[UPSTREAM_RESULT] = upstream.result
    options = {
        **(job.options or {}),
        "upstream_run": upstream.id,
        "upstream_job": upstream.job_id,
    }
    run = submit_delayed(
        session,
        job.task,
        utcnow(),
        args=list(job.args or []),
        kwargs=kwargs,
        queue=job.queue,
        source=TriggerSource.DEPENDENCY,
        job=job,
        options=options,
        idempotency_key=key,
    )
    run.reason = f"after run {upstream.id} ended {upstream.state} ({dep.condition})"[:255]
    logger.info("job %s started by run %s of job %s", job.id, upstream.id, upstream.job_id)
    return run
