"""Job history: every change to a job keeps its definition as a numbered version.

``services.jobs`` calls ``record`` at each change point (create, update, patch, upsert, pause,
resume, delete) in the change's own transaction, so a change and its version commit or roll
back together. A version's number is the job's ``version`` counter after the change; a
deletion is kept as one more version, and the history outlives the job (``job_id`` becomes
NULL, ``job_name`` stays). A job created before history was kept gets a ``baseline`` version
(its definition before the first recorded change) the first time it changes.

Callers that change jobs on someone's behalf (apply, import, rollback) say so with
``noted(...)``: the note prefixes the summary of every version recorded inside it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mainspring.db.models import Job, JobVersion
from mainspring.errors import ConflictError, NotFoundError, ValidationError
from mainspring.services.audit import Actor, diff
from mainspring.services.clock import utcnow

DEFINITION_VERSION = 1
MAX_SUMMARY = 500


@dataclass(frozen=True)
class ChangeNote:
    """Why the changes in a block happen; ``action`` replaces the service's own verb."""

    note: str
    action: str | None = None


_NOTE: contextvars.ContextVar[ChangeNote | None] = contextvars.ContextVar(
    "mainspring_job_change_note", default=None
)


@contextmanager
def noted(note: str, action: str | None = None) -> Iterator[None]:
    """Label the versions recorded inside the block (e.g. ``"apply"``, ``"rollback to 3"``)."""
    token = _NOTE.set(ChangeNote(note, action))
    try:
        yield
    finally:
        _NOTE.reset(token)


def stored(definition: dict[str, Any]) -> dict[str, Any]:
    """A definition as kept in ``job_versions``: the ``JobSpec`` fields plus ``v``."""
    return {"v": DEFINITION_VERSION, **{k: v for k, v in definition.items() if k != "version"}}


def _summary(action: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    fixed = {"create": "created", "delete": "deleted", "pause": "paused", "resume": "resumed"}
    if action in fixed:
        text = fixed[action]
    else:
        changed = [k for k in diff(before, after)["after"] if k not in ("v", "version")]
        text = f"changed {', '.join(sorted(changed))}" if changed else "no change"
    note = _NOTE.get()
    return (f"{note.note}: {text}" if note else text)[:MAX_SUMMARY]


def record(
    session: Session, job: Job, action: str, before: dict[str, Any], actor: Actor | None
) -> JobVersion:
    """Keep ``job``'s definition after ``action`` (before it, for a deletion). ``before`` is
    the definition with ``version`` as it was, empty for a creation."""
    from mainspring.services.jobs import definition

    if job.id is None:
        session.flush()
    after = stored(definition(job))
    if before and not _has_history(session, job.id):
        _add(session, _baseline(job, before))
    note = _NOTE.get()
    row = JobVersion(
        job_id=job.id,
        job_name=job.name,
        version=job.version + 1 if action == "delete" else job.version,
        action=(note.action if note and note.action else action)[:16],
        definition=after,
        changed_by=actor.name if actor else (job.created_by if action == "create" else None),
        changed_at=utcnow(),
        summary=_summary(action, stored(before) if before else {}, after),
    )
    return _add(session, row)


def _has_history(session: Session, job_id: int) -> bool:
    return (
        session.scalar(select(JobVersion.id).where(JobVersion.job_id == job_id).limit(1))
        is not None
    )


def _baseline(job: Job, before: dict[str, Any]) -> JobVersion:
    """The definition a job had before history was kept; when it was set is unknown."""
    return JobVersion(
        job_id=job.id,
        job_name=before.get("name", job.name),
        version=int(before.get("version", job.version)),
        action="baseline",
        definition=stored(before),
        changed_by=job.created_by,
        changed_at=job.created_at,
        summary="baseline: the definition before version history was kept",
    )


def _add(session: Session, row: JobVersion) -> JobVersion:
    """Insert in a savepoint: two writers that both bumped the job to the same version (an
    edit that skipped ``lock_job``) end as a ConflictError, not a lost update."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise ConflictError(
            f"job {row.job_name!r} was changed by someone else at the same time; "
            "read it again and retry"
        ) from None
    return row


def list_versions(
    session: Session, job_id: int, limit: int = 50, offset: int = 0
) -> tuple[Sequence[JobVersion], int]:
    """The job's versions, newest first, and how many there are."""
    cond = JobVersion.job_id == job_id
    rows = session.scalars(
        select(JobVersion)
        .where(cond)
        .order_by(JobVersion.version.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    total = session.scalar(select(func.count(JobVersion.id)).where(cond)) or 0
    return rows, int(total)


def get_version(session: Session, job_id: int, version: int) -> JobVersion:
    row = session.scalar(
        select(JobVersion).where(JobVersion.job_id == job_id, JobVersion.version == version)
    )
    if row is None:
        raise NotFoundError(f"job {job_id} has no version {version}")
    return row


def previous_version(session: Session, row: JobVersion) -> JobVersion | None:
    """The version kept just before ``row`` (None for the first one)."""
    return session.scalar(
        select(JobVersion)
        .where(JobVersion.job_id == row.job_id, JobVersion.version < row.version)
        .order_by(JobVersion.version.desc())
        .limit(1)
    )


def version_diff(before: JobVersion | None, after: JobVersion) -> dict[str, Any]:
    """What ``after`` changed compared with ``before``: ``{"before": {...}, "after": {...}}``."""
    old = {k: v for k, v in (before.definition if before else {}).items() if k != "v"}
    new = {k: v for k, v in after.definition.items() if k != "v"}
    return diff(old, new)


def rollback(session: Session, job: Job, version: int, actor: Actor | None) -> Job:
    """Make ``version``'s definition the current one, as a new version (nothing is erased).
    Load ``job`` with ``lock_job`` so a concurrent edit cannot slip in between."""
    from mainspring.services.jobs import JobSpec, definition, update_job

    target = get_version(session, job.id, version)
    known = {f.name for f in fields(JobSpec)}
    values = {k: v for k, v in target.definition.items() if k in known}
    if values == {k: v for k, v in definition(job).items() if k in values}:
        raise ValidationError(
            "version", f"version {version} has the definition the job has now; nothing to undo"
        )
    with noted(f"rollback to version {version}", action="rollback"):
        return update_job(session, job, JobSpec(**values), audit=actor)
