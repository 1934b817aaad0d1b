"""Request dependencies for routes that talk to the broker or run several transactions.

``CeleryApp``: the web process's one Celery app (publishing, remote control, queue lengths),
built on first use and kept on ``app.state.celery``; a test or an embedding program may put
its own there first. No broker configured is a 503 that says how to set one.

``ReleasedCaller``/``ReleasedOperator``/``ReleasedAdmin``: the caller, for routes that open
their own short sessions (to commit a run before publishing it, or not to hold a lock while
they wait for a worker's reply) and never use the request's ``Db``. On SQLite every
transaction starts with ``BEGIN IMMEDIATE`` (it takes the write lock), so such a route must
not also hold the request's transaction, or it would wait for itself. Authentication has
its own short transaction (``api.auth.current_user``), so these are plain role checks.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import Depends, Request

from mainspring.api.auth import current_user, require_role
from mainspring.api.deps import ctx_dependency, get_settings
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.errors import ConfigError, ServiceUnavailableError
from mainspring.services.auth import Principal
from mainspring.services.publishing import quiet_results

_build_lock = threading.Lock()


def get_celery(request: Request) -> Any:
    """The app's Celery app, made once (thread-safe) from its settings."""
    state = request.app.state
    app = getattr(state, "celery", None)
    if app is not None:
        return app
    with _build_lock:
        app = getattr(state, "celery", None)
        if app is None:
            app = state.celery = _make(request)
    return app


def _make(request: Request) -> Any:
    from mainspring.worker.app import make_celery

    settings = get_settings(request)
    try:
        settings.resolved_broker_url  # noqa: B018 - raises when there is no broker
    except ConfigError as exc:
        raise ServiceUnavailableError(str(exc)) from None
    app = make_celery(settings)
    # The API stores each run (SENT, with its queue and time) before publishing it: a
    # task-sent event would only repeat that, at one more broker round trip per request.
    app.conf.task_send_sent_event = False
    return quiet_results(app)


# Authentication no longer uses the request's transaction (``api.auth.current_user`` looks a
# caller up in a short transaction of its own, or in the token cache), so these are the plain
# role checks; the names stay for the routes that say they never touch the request's ``Db``.
released_caller = current_user
released_operator = require_role(Role.OPERATOR)
released_admin = require_role(Role.ADMIN)


async def celery_dependency(request: Request) -> Any:
    """``get_celery`` without a thread-pool hop once the app is built."""
    app = getattr(request.app.state, "celery", None)
    return app if app is not None else get_celery(request)


CeleryApp = Annotated[Any, Depends(celery_dependency)]
Ctx = Annotated[AppContext, Depends(ctx_dependency)]
ReleasedCaller = Annotated[Principal, Depends(released_caller)]
ReleasedOperator = Annotated[Principal, Depends(released_operator)]
ReleasedAdmin = Annotated[Principal, Depends(released_admin)]
