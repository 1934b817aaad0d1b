"""The console's page router: jobs, the job form, runs, and the reader's own language.

``api.app`` includes ``login.router`` and this ``router``; further page modules are included
here, so adding one never touches the app factory.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from mainspring.api.auth import safe_next
from mainspring.api.deps import Db
from mainspring.console import (
    alerts,
    audit,
    config,
    dashboard,
    job_form,
    job_history,
    jobs,
    queues,
    runs,
    tokens,
    users,
    workers,
)
from mainspring.console.deps import CheckedForm, CurrentReader, form_text
from mainspring.console.i18n import LANGUAGES, match_language
from mainspring.errors import ValidationError
from mainspring.services.users import UserUpdate, get_user, update_user

router = APIRouter(include_in_schema=False)
router.include_router(job_form.router)  # before ``jobs``: /jobs/new is not a job id
router.include_router(jobs.router)
router.include_router(runs.router)
router.include_router(dashboard.router)
router.include_router(workers.router)
router.include_router(queues.router)
router.include_router(audit.router)
router.include_router(alerts.router)
router.include_router(users.router)
router.include_router(tokens.router)
router.include_router(config.router)
router.include_router(job_history.router)


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=303)


@router.post("/preferences/language")
def set_language(
    request: Request, db: Db, reader: CurrentReader, form: CheckedForm
) -> RedirectResponse:
    """Save the reader's language (empty: follow the browser) and go back to their page."""
    tag = form_text(form, "language").strip()
    code = match_language(tag)
    if tag and code is None:
        raise ValidationError("language", f"must be one of {', '.join(LANGUAGES)}")
    stored = LANGUAGES[code][0] if code else None
    user = get_user(db, reader.principal.user_id)
    update_user(db, user, UserUpdate(language=stored), reader.actor)
    return RedirectResponse(safe_next(form_text(form, "next")), status_code=303)
