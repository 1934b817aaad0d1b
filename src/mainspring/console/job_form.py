"""The job form: create, edit and clone a job (operators and admins).

Saving goes through ``services.jobs`` with the user as audit actor, like the API. A mistake
re-shows the form with every input kept and the message next to its field (status 422; 409
for a taken name or an edit that lost a race). The next fire times are shown below the
trigger: computed here when the page is drawn or the "Preview" button is pressed, and live
as the user types through ``POST /api/v1/jobs/preview`` (``static/app.js``).
"""

from __future__ import annotations

import zoneinfo
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from mainspring.api.deps import Db, get_settings
from mainspring.console import builtin_fields
from mainspring.console.deps import MAX_ID, CheckedForm, CurrentReader, JobId, Operator, Reader
from mainspring.console.i18n import N_
from mainspring.console.job_fields import (
    FORM_ERROR,
    TRIGGER_KINDS,
    UNITS_MS,
    Errors,
    Values,
    job_values,
    new_values,
    parse_job_form,
    service_field,
    trigger_from,
)
from mainspring.console.prefs import flash
from mainspring.console.render import render
from mainspring.core.states import MisfirePolicy, OverlapPolicy
from mainspring.errors import ConflictError, ValidationError
from mainspring.services import jobs as job_service
from mainspring.services.job_preview import preview_fires
from mainspring.services.job_queries import StaleVersionError, lock_job
from mainspring.services.workers import known_tasks, list_workers
from mainspring.worker.schemas import BUILTIN_PARAMS

router = APIRouter(include_in_schema=False)

PREVIEW_COUNT = 5
MAX_VALUE = 100_000  # characters of one posted field


@lru_cache(maxsize=1)
def _timezones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def _posted(form: FormData) -> Values:
    values: Values = {}
    for key in form:
        value = form.get(key)
        if isinstance(value, str) and len(value) <= MAX_VALUE:
            values[key] = value
    return values


def _choices(db: Session) -> dict[str, Any]:
    """What the form offers: registered task names, queues seen on workers, zones."""
    tasks = [t for t in known_tasks(db) if t not in BUILTIN_PARAMS and not t.startswith("celery.")]
    queues = sorted({q for w in list_workers(db) for q in (w.queues or [])})
    return {
        "task_names": tasks,
        "queue_names": queues,
        "timezones": _timezones(),
        "builtin_fields": builtin_fields.all_param_fields(),
        "trigger_kinds": TRIGGER_KINDS,
        "units": list(UNITS_MS),
        "misfire_policies": [p.value for p in MisfirePolicy],
        "overlap_policies": [p.value for p in OverlapPolicy],
    }


def preview(values: Values, reader: Reader) -> tuple[list[str], str | None]:
    """The next fire times of the trigger in ``values``, in the job's time zone, or why
    there are none."""
    trigger, errors = trigger_from(values, reader.gettext)
    if trigger == {"kind": "cron", "expr": ""}:
        return [], ""  # nothing typed yet: nothing to say
    if errors:
        return [], next(iter(errors.values()))
    timezone = values.get("timezone", "").strip()
    try:
        fires = preview_fires(
            trigger, timezone, PREVIEW_COUNT, name=values.get("name", "").strip() or "preview"
        )
    except ValidationError as exc:
        return [], reader.gettext(exc.message)
    tz = ZoneInfo(timezone)
    return [fire.astimezone(tz).isoformat(sep=" ", timespec="milliseconds") for fire in fires], None


def _form_page(
    request: Request,
    db: Session,
    reader: Reader,
    values: Values,
    errors: Errors | None = None,
    *,
    job_id: int | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    fires, preview_error = preview(values, reader)
    context = {
        "values": values,
        "errors": errors or {},
        "job_id": job_id,
        "action": f"/jobs/{job_id}/edit" if job_id else "/jobs/new",
        "fires": fires,
        "preview_error": preview_error,
        "preview_tz": values.get("timezone", ""),
        **_choices(db),
    }
    return render(request, "job_form.html", context, reader.principal, status_code)


@router.get("/jobs/new")
def new_job(
    request: Request,
    db: Db,
    reader: Operator,
    clone: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    """A blank form, or (``?clone=ID``) a copy of a job under a new name."""
    settings = get_settings(request)
    values = new_values(reader.prefs.timezone, settings.default_queue)
    if clone is not None:
        values = job_values(job_service.get_job(db, clone))
        values["name"] = reader.gettext("Copy of %(name)s") % {"name": values["name"]}
        values.pop("version", None)
    return _form_page(request, db, reader, values)


@router.post("/jobs/new")
def create_job(request: Request, db: Db, reader: Operator, form: CheckedForm) -> Response:
    values = _posted(form)
    spec, errors = parse_job_form(values, reader.gettext)
    if spec is None or values.get("intent") == "preview":
        return _form_page(request, db, reader, values, errors, status_code=422 if errors else 200)
    try:
        job = job_service.create_job(db, spec, reader.principal.username, audit=reader.actor)
    except (ValidationError, ConflictError) as exc:
        errors, status = _service_error(exc, values, reader)
        return _form_page(request, db, reader, values, errors, status_code=status)
    flash(request, reader.gettext("Job created."))
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.post("/jobs/preview")
def preview_json(reader: CurrentReader, form: CheckedForm) -> JSONResponse:
    """The live preview of the form (``app.js`` posts the whole form as it is typed): the
    same parsing and rules as saving, so what it shows is what the job will do."""
    fires, error = preview(_posted(form), reader)
    return JSONResponse({"fires": fires, "error": error})


@router.get("/jobs/{job_id:int}/edit")
def edit_job(request: Request, db: Db, reader: Operator, job_id: JobId) -> Response:
    values = job_values(job_service.get_job(db, job_id))
    return _form_page(request, db, reader, values, job_id=job_id)


@router.post("/jobs/{job_id:int}/edit")
def save_job(
    request: Request, db: Db, reader: Operator, form: CheckedForm, job_id: JobId
) -> Response:
    values = _posted(form)
    spec, errors = parse_job_form(values, reader.gettext)
    if spec is None or values.get("intent") == "preview":
        status = 422 if errors else 200
        return _form_page(request, db, reader, values, errors, job_id=job_id, status_code=status)
    version = int(values["version"]) if values.get("version", "").isdigit() else None
    try:
        job = lock_job(db, job_id, version=version)
        job_service.update_job(db, job, spec, audit=reader.actor)
    except (ValidationError, ConflictError) as exc:
        errors, status = _service_error(exc, values, reader)
        return _form_page(request, db, reader, values, errors, job_id=job_id, status_code=status)
    flash(request, reader.gettext("Job saved."))
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


def _service_error(exc: Exception, values: Values, reader: Reader) -> tuple[Errors, int]:
    """A service's refusal as a message next to the field it is about."""
    if isinstance(exc, ValidationError):
        field = service_field(exc.field, values.get("task_mode", ""), values.get("builtin", ""))
        message = reader.gettext(exc.message)
        if field == FORM_ERROR or exc.field.startswith(("args.", "kwargs.")):
            message = f"{exc.field}: {message}"  # say which part, e.g. kwargs.definition.steps
        return {field: message}, 422
    if isinstance(exc, StaleVersionError):
        message = N_(
            "Someone changed this job after you opened the form. Open it again to see "
            "their change, then make yours."
        )
        return {FORM_ERROR: reader.gettext(message)}, 409
    return {"name": reader.gettext(N_("a job with this name already exists"))}, 409
