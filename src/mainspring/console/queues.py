"""Queues: every queue Mainspring knows (configured, used by jobs, consumed by workers) with
the messages waiting in it on the broker, and purging one (admins), confirmed by typing its
name on a page of its own, as ``services.queues.purge_queue`` requires.

A broker that cannot be reached leaves the names on the page with a message (503), not an
error page: the console is most needed exactly when the broker is in trouble.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mainspring.api.celery_dep import get_celery
from mainspring.api.deps import Db, get_ctx, get_settings
from mainspring.console.deps import (
    Admin,
    CheckedForm,
    CurrentReader,
    Reader,
    ReleasedAdmin,
    form_text,
)
from mainspring.console.prefs import flash
from mainspring.console.render import render
from mainspring.errors import NotFoundError, ServiceUnavailableError, ValidationError
from mainspring.services import queues as queue_service
from mainspring.services.queues import QueueLength

router = APIRouter(include_in_schema=False)

QueueName = Annotated[str, Path(max_length=200)]


@router.get("/queues")
def queues_page(request: Request, db: Db, reader: CurrentReader) -> HTMLResponse:
    """Each known queue, its length and who consumes it."""
    known = queue_service.known_queues(db, get_settings(request))
    db.commit()  # no transaction held while the broker answers
    broker, error = None, None
    try:
        broker, lengths = queue_service.queue_lengths(get_celery(request), list(known))
    except ServiceUnavailableError as exc:
        lengths, error = [QueueLength(name, None) for name in known], str(exc)
    context: dict[str, Any] = {
        "queues": [(q, known.get(q.name, [])) for q in lengths],
        "broker": broker,
        "broker_error": error,
    }
    return render(request, "queues.html", context, reader.principal, 503 if error else 200)


def _purge_page(
    request: Request, reader: Reader, name: str, typed: str = "", error: str | None = None
) -> HTMLResponse:
    context = {"name": name, "typed": typed, "error": error}
    status = 422 if error else 200
    return render(request, "queue_purge.html", context, reader.principal, status)


@router.get("/queues/{name}/purge")
def queue_purge_confirm(request: Request, reader: Admin, name: QueueName) -> HTMLResponse:
    """The confirmation page: the admin types the queue's name to purge it."""
    queue_service.check_name(name)
    return _purge_page(request, reader, name)


@router.post("/queues/{name}/purge")
def queue_purge(
    request: Request, reader: ReleasedAdmin, form: CheckedForm, name: QueueName
) -> Response:
    """Delete every message waiting in the queue, once its name was typed again."""
    typed = form_text(form, "confirm", max_length=200)
    try:
        purged = queue_service.purge_queue(
            get_ctx(request), get_celery(request), reader.actor, name, typed
        )
    except ValidationError as exc:
        message = reader.gettext("Type the queue's name exactly to confirm the purge.")
        if exc.field != "confirm":
            message = f"{exc.field}: {reader.gettext(exc.message)}"
        return _purge_page(request, reader, name, typed, message)
    except (NotFoundError, ServiceUnavailableError) as exc:
        flash(request, str(exc), "error")
        return RedirectResponse("/queues", status_code=303)
    message = reader.gettext("Purged %(n)s messages from %(queue)s.")
    flash(request, message % {"n": purged, "queue": name})
    return RedirectResponse("/queues", status_code=303)
