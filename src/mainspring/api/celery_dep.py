"""Request dependencies for routes that talk to the broker or run several transactions.

``CeleryApp``: the web process's one Celery app (publishing, remote control, queue lengths),
built on first use and kept on ``app.state.celery``; a test or an embedding program may put
its own there first. No broker configured is a 503 that says how to set one.

``ReleasedCaller``/``ReleasedOperator``/``ReleasedAdmin``: the caller, authenticated, after
which the request's own transaction is committed and closed. On SQLite every transaction
starts with ``BEGIN IMMEDIATE`` (it takes the write lock), so a route that opens its own
short sessions (to commit a run before publishing it, or not to hold a lock while it waits
for a worker's reply) must not keep the request's transaction open, or it would wait for
itself. Such routes use ``Ctx`` sessions only and never the request's ``Db``.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import Depends, Request

from mainspring.api.auth import current_user, require_role
from mainspring.api.deps import Db, get_ctx, get_settings
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.errors import ConfigError, ServiceUnavailableError
from mainspring.services.auth import Principal

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
    return app


def _released(principal: Principal, db: Db) -> Principal:
    db.commit()
    return principal


def released_caller(principal: Annotated[Principal, Depends(current_user)], db: Db) -> Principal:
    """Any authenticated caller; the request's transaction is closed afterwards."""
    return _released(principal, db)


def released_operator(
    principal: Annotated[Principal, Depends(require_role(Role.OPERATOR))], db: Db
) -> Principal:
    return _released(principal, db)


def released_admin(
    principal: Annotated[Principal, Depends(require_role(Role.ADMIN))], db: Db
) -> Principal:
    return _released(principal, db)


CeleryApp = Annotated[Any, Depends(get_celery)]
Ctx = Annotated[AppContext, Depends(get_ctx)]
ReleasedCaller = Annotated[Principal, Depends(released_caller)]
ReleasedOperator = Annotated[Principal, Depends(released_operator)]
ReleasedAdmin = Annotated[Principal, Depends(released_admin)]
