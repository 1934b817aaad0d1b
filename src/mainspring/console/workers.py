"""Workers: who the recorder has seen (online or not, heartbeat age, queues, pool, load), and
remote control for operators: grow or shrink the pool, start or stop consuming a queue, and
(admins, after a confirmation page) a warm shutdown.

Commands call ``services.workers`` as ``/api/v1/workers`` does and wait ``CONTROL_TIMEOUT``
for the worker's answer; a worker that does not answer, or refuses, is a message on the
page, never an error page: it is the worker's state, not a fault of the console.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mainspring.api.celery_dep import get_celery
from mainspring.api.deps import Db, get_ctx
from mainspring.console.deps import (
    Admin,
    CheckedForm,
    CurrentReader,
    Reader,
    ReleasedAdmin,
    ReleasedOperator,
    form_text,
)
from mainspring.console.i18n import N_
from mainspring.console.prefs import flash
from mainspring.console.render import render
from mainspring.errors import ConflictError, NotFoundError, ServiceUnavailableError, ValidationError
from mainspring.services import workers as worker_service
from mainspring.services.clock import utcnow

router = APIRouter(include_in_schema=False)

CONTROL_TIMEOUT = 1.0  # seconds to wait for a worker's answer
Hostname = Annotated[str, Path(max_length=255, pattern=r"^[^\x00-\x1f\x7f/]+$")]
POOL_ACTIONS = {"grow": "pool_grow", "shrink": "pool_shrink"}
CONSUMER_ACTIONS = {"add": "add_consumer", "cancel": "cancel_consumer"}
STATUS_WORDS = (N_("online"), N_("offline"))  # shown with the ``tr`` filter


def _age_ms(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max(0.0, (now - at).total_seconds() * 1000)


@router.get("/workers")
def workers_page(request: Request, db: Db, reader: CurrentReader) -> HTMLResponse:
    """Every worker seen, by host name, online first."""
    now = utcnow()
    rows = sorted(worker_service.list_workers(db), key=lambda w: (w.status != "online", w.hostname))
    context: dict[str, Any] = {
        "workers": [(w, _age_ms(w.last_heartbeat_at, now)) for w in rows],
        "online": sum(1 for w in rows if w.status == "online"),
    }
    return render(request, "workers.html", context, reader.principal)


def _after_command(request: Request, reader: Reader, hostname: str, call: Any) -> Response:
    """Run a command; its answer, or why there is none, is a message on the workers page."""
    try:
        reply = call()
    except (ServiceUnavailableError, ConflictError, NotFoundError) as exc:
        flash(request, str(exc), "error")
    except ValidationError as exc:
        flash(request, f"{exc.field}: {reader.gettext(exc.message)}", "error")
    else:
        message = reader.gettext("%(host)s answered: %(reply)s")
        flash(request, message % {"host": hostname, "reply": reply})
    return RedirectResponse("/workers", status_code=303)


def _count(form: Any, reader: Reader) -> int:
    raw = form_text(form, "n", "1").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ValidationError("n", reader.gettext("must be a whole number from 1 to 1000"))
    return int(raw)


@router.post("/workers/{hostname}/pool/{direction}")
def worker_pool(
    request: Request,
    reader: ReleasedOperator,
    form: CheckedForm,
    hostname: Hostname,
    direction: Annotated[str, Path(pattern="^(grow|shrink)$")],
) -> Response:
    """Add or remove ``n`` pool processes."""
    ctx, app = get_ctx(request), get_celery(request)
    action = POOL_ACTIONS[direction]

    def call() -> str:
        arguments = {"n": _count(form, reader)}
        return worker_service.control_worker(
            ctx, app, reader.actor, hostname, action, arguments, CONTROL_TIMEOUT
        )

    return _after_command(request, reader, hostname, call)


@router.post("/workers/{hostname}/consumers/{verb}")
def worker_consumer(
    request: Request,
    reader: ReleasedOperator,
    form: CheckedForm,
    hostname: Hostname,
    verb: Annotated[str, Path(pattern="^(add|cancel)$")],
) -> Response:
    """Start or stop consuming the queue named in the form."""
    ctx, app = get_ctx(request), get_celery(request)
    arguments = {"queue": form_text(form, "queue", max_length=200).strip()}

    def call() -> str:
        return worker_service.control_worker(
            ctx, app, reader.actor, hostname, CONSUMER_ACTIONS[verb], arguments, CONTROL_TIMEOUT
        )

    return _after_command(request, reader, hostname, call)


@router.get("/workers/{hostname}/shutdown")
def worker_shutdown_confirm(
    request: Request, db: Db, reader: Admin, hostname: Hostname
) -> HTMLResponse:
    """The confirmation page: a shutdown is one click too far to be one click."""
    worker = worker_service.get_worker(db, hostname)
    return render(request, "worker_shutdown.html", {"worker": worker}, reader.principal)


@router.post("/workers/{hostname}/shutdown")
def worker_shutdown(
    request: Request, reader: ReleasedAdmin, form: CheckedForm, hostname: Hostname
) -> Response:
    """Warm shutdown of a worker that answers a ping; running tasks finish first."""
    ctx, app = get_ctx(request), get_celery(request)

    def call() -> str:
        worker_service.shutdown(ctx, app, reader.actor, hostname, CONTROL_TIMEOUT)
        return reader.gettext("shutdown requested")

    return _after_command(request, reader, hostname, call)
