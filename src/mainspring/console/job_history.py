"""A job's version history: the versions listed on the job's page, one version with what it
changed and what rolling back to it would change now, and the rollback itself (operators,
CSRF-checked, confirmed on the version's page).

Everything goes through ``services.job_versions`` as ``/api/v1/jobs/{id}/versions`` does; a
rollback is a new version (nothing is erased) made under ``lock_job`` with the version the
operator looked at, so a job changed meanwhile is refused rather than silently overwritten.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from mainspring.api.deps import Db
from mainspring.console.deps import CheckedForm, CurrentReader, JobId, Operator, Reader, form_text
from mainspring.console.prefs import flash
from mainspring.console.render import render
from mainspring.db.models import Job
from mainspring.errors import ValidationError
from mainspring.services import job_versions
from mainspring.services.audit import diff
from mainspring.services.job_queries import StaleVersionError, lock_job
from mainspring.services.jobs import definition, get_job

router = APIRouter(include_in_schema=False)

VERSIONS_SHOWN = 20
VersionNo = Annotated[int, Path(ge=1, le=2**31 - 1)]


def recent_versions(db: Session, job_id: int) -> dict[str, Any]:
    """The newest versions for the job's page, and how many there are."""
    rows, total = job_versions.list_versions(db, job_id, VERSIONS_SHOWN)
    return {"versions": rows, "versions_total": total}


def _without_marker(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in ("v", "version")}


def version_page(
    request: Request,
    db: Session,
    reader: Reader,
    job: Job,
    number: int,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    row = job_versions.get_version(db, job.id, number)
    previous = job_versions.previous_version(db, row)
    current = _without_marker(job_versions.stored(definition(job)))
    context = {
        "job": job,
        "row": row,
        "previous": previous,
        "changed": job_versions.version_diff(previous, row),
        "rollback": diff(current, _without_marker(row.definition)),
        "definition": _without_marker(row.definition),
        "is_current": number == job.version,
        "error": error,
    }
    return render(request, "job_version.html", context, reader.principal, status_code)


@router.get("/jobs/{job_id:int}/versions/{number}")
def version_detail(
    request: Request, db: Db, reader: CurrentReader, job_id: JobId, number: VersionNo
) -> HTMLResponse:
    return version_page(request, db, reader, get_job(db, job_id), number)


@router.post("/jobs/{job_id:int}/versions/{number}/rollback")
def version_rollback(
    request: Request, db: Db, reader: Operator, form: CheckedForm, job_id: JobId, number: VersionNo
) -> Response:
    """Make ``number``'s definition current again, if the job is still as the page showed."""
    raw = form_text(form, "current_version")
    seen = int(raw) if raw.isdigit() and len(raw) < 10 else None
    try:
        job = lock_job(db, job_id, version=seen)
        job_versions.rollback(db, job, number, reader.actor)
    except (StaleVersionError, ValidationError) as exc:
        job = get_job(db, job_id)
        message = reader.gettext(getattr(exc, "message", str(exc)))
        return version_page(request, db, reader, job, number, message, 409)
    message = reader.gettext("Rolled back to version %(n)s, kept as version %(new)s.")
    flash(request, message % {"n": number, "new": job.version})
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)
