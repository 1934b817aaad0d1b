"""Jobs as code: export the stored jobs as a document, plan a document against them (what
would be created, updated or deleted, as a diff), and apply the plan.

``export_document`` writes every job (or those a selector matches) by name with the fields at
their defaults left out, so applying an exported document unchanged is a no-op. The format
lives in ``services.jobs_document``; docs/jobs-as-code.md describes both.

Jobs that ``apply`` writes carry the tag ``managed-by:apply``; pruning (deleting jobs missing
from the document) only ever touches jobs with that tag, and only those the document's
``selector`` (the filter it was exported with) matches. Exports leave the tag out; a job in
the document that lacks it is *adopted*: the tag is its only change.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from mainspring.db.models import Job
from mainspring.errors import ValidationError
from mainspring.services import job_versions
from mainspring.services import jobs as job_service
from mainspring.services.audit import Actor
from mainspring.services.job_queries import JobFilter, count_jobs, list_jobs, lock_job
from mainspring.services.jobs_document import (
    DEFAULTS,
    DOCUMENT_VERSION,
    MANAGED_TAG,
    ORDER,
    Selector,
    dump_yaml,
    entry,
)


def export_document(session: Session, selector: Selector | None = None) -> dict[str, Any]:
    """Every job ``selector`` matches, by name, as a document ``load_document`` reads back."""
    flt = selector.to_filter() if selector else JobFilter()
    rows = list_jobs(session, limit=max(count_jobs(session, flt), 1), flt=flt)
    jobs = [entry(job_service.definition(job)) for job in sorted(rows, key=lambda j: j.name)]
    doc: dict[str, Any] = {"version": DOCUMENT_VERSION}
    if selector and selector.model_dump(exclude_none=True):
        doc["selector"] = selector.model_dump(exclude_none=True)
    doc["jobs"] = jobs
    return doc


def export_yaml(doc: dict[str, Any]) -> str:
    header = "# Mainspring jobs: mainspring apply -f FILE. Format: docs/jobs-as-code.md\n"
    return header + dump_yaml(doc)


# --- planning and applying ----------------------------------------------------------------


@dataclass
class Change:
    """What applying does to one job: create, update, adopt (only the managed tag is added),
    delete or nothing (unchanged)."""

    action: Literal["create", "update", "adopt", "delete", "unchanged"]
    name: str
    job_id: int | None = None
    version: int | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    spec: job_service.JobSpec | None = None

    @property
    def fields(self) -> list[str]:
        old, new = self.before or {}, self.after or {}
        return [k for k in ORDER if old.get(k, DEFAULTS.get(k)) != new.get(k, DEFAULTS.get(k))]


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # managed, not in the document, not pruned

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def writes(self) -> list[Change]:
        return [c for c in self.changes if c.action != "unchanged"]


def plan(
    session: Session,
    specs: list[job_service.JobSpec],
    *,
    manage: bool = True,
    prune: bool = False,
    selector: Selector | None = None,
) -> Plan:
    """Compare ``specs`` with the stored jobs. ``manage`` adds the managed tag to every job
    written; ``prune`` deletes managed jobs (matching ``selector``) that ``specs`` leave out."""
    result = Plan()
    for i, spec in enumerate(specs):
        existing = session.scalar(select(Job).where(Job.name == spec.name))
        try:
            result.changes.append(_change(spec, existing, manage))
        except ValidationError as exc:
            raise ValidationError(
                f"jobs[{i}].{exc.field}", f"{exc.message} (job {spec.name!r})"
            ) from None
    wanted = {spec.name for spec in specs}
    flt = replace(selector.to_filter() if selector else JobFilter(), tag=MANAGED_TAG)
    for job in list_jobs(session, limit=max(count_jobs(session, flt), 1), flt=flt):
        if job.name in wanted or (selector and selector.tag and selector.tag not in job.tags):
            continue
        if prune:
            before = job_service.definition(job)
            result.changes.append(Change("delete", job.name, job.id, job.version, before))
        else:
            result.kept.append(job.name)
    return result


def _change(spec: job_service.JobSpec, job: Job | None, manage: bool) -> Change:
    current = job_service.definition(job) if job is not None else None
    if manage and MANAGED_TAG not in spec.tags:
        spec = replace(spec, tags=[*spec.tags, MANAGED_TAG])
    if job is not None and current is not None:
        trig = spec.trigger
        if trig.get("kind") == job.trigger.get("kind") == "interval" and not trig.get("anchor"):
            spec = replace(spec, trigger={**trig, "anchor": job.trigger["anchor"]})
        if set(spec.tags) == set(current["tags"]):
            spec = replace(spec, tags=list(current["tags"]))
    after = normalized(spec)
    spec = replace(spec, trigger=after["trigger"])  # as planned: a new interval's anchor
    if job is None:
        return Change("create", spec.name, after=after, spec=spec)
    assert current is not None
    if after == current:
        return Change("unchanged", job.name, job.id, job.version, current, after)
    without = {**after, "tags": [t for t in after["tags"] if t != MANAGED_TAG]}
    action: Literal["update", "adopt"] = "adopt" if without == current else "update"
    return Change(action, job.name, job.id, job.version, current, after, spec)


def normalized(spec: job_service.JobSpec) -> dict[str, Any]:
    """The definition ``spec`` is stored as, computed by the same code create and update
    use, on a job that is never added to the session."""
    trigger, bounds = job_service._validate(spec)
    probe = Job()
    job_service._apply(probe, spec, trigger, bounds)
    return job_service.definition(probe)


def execute(session: Session, result: Plan, actor: Actor | None, note: str = "apply") -> None:
    """Make the planned changes in the caller's transaction; a job changed since it was
    planned is a conflict (``lock_job`` with the planned version) and nothing is kept."""
    with job_versions.noted(note):
        for change in result.changes:
            if change.action == "delete":
                job = lock_job(session, change.job_id, version=change.version)
                job_service.delete_job(session, job, audit=actor)
            elif change.action in ("update", "adopt") and change.spec is not None:
                job = lock_job(session, change.job_id, version=change.version)
                job_service.update_job(session, job, change.spec, audit=actor)
            elif change.action == "create" and change.spec is not None:
                name = actor.name if actor else None
                change.job_id = job_service.create_job(session, change.spec, name, audit=actor).id


def render(result: Plan) -> str:
    """The plan as a unified diff of each job's document entry, then a summary line."""
    out: list[str] = []
    for change in result.writes:
        old = dump_yaml(entry(change.before)) if change.before else ""
        new = dump_yaml(entry(change.after)) if change.after else ""
        if change.action == "adopt":
            old, new = old + "# not managed\n", new + f"# tags += {MANAGED_TAG}\n"
        out.append(f"{change.action} {change.name}")
        lines = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=3)
        out.extend("    " + line for line in list(lines)[2:])
    counts = ", ".join(f"{result.count(a)} to {a}" for a in ("create", "update", "adopt", "delete"))
    out.append(f"plan: {counts}, {result.count('unchanged')} unchanged")
    if result.kept:
        out.append(
            f"kept (managed, not in the document; --prune deletes them): {', '.join(result.kept)}"
        )
    return "\n".join(out)
