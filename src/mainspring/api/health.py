"""``/readyz`` (no auth) for load balancers and supervisors, ``/metrics`` for Prometheus.

``/readyz`` answers 200 when the database answers, its schema is current and the broker
answers; otherwise 503, naming each check that failed. ``/metrics`` needs a bearer token (or
any login) of any role: run counts and queue names are not for the whole network.
``/healthz`` (process alive) is served by ``api.app`` itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from mainspring.api.celery_dep import Ctx, ReleasedCaller, get_celery
from mainspring.errors import ServiceUnavailableError
from mainspring.observability.metrics import render
from mainspring.observability.status import check_broker, check_database

router = APIRouter(tags=["health"])


def _celery_or_none(request: Request) -> Any:
    try:
        return get_celery(request)
    except ServiceUnavailableError:
        return None


@router.get("/readyz", include_in_schema=False)
def readyz(request: Request, ctx: Ctx) -> JSONResponse:
    """200 ``{"status": "ready", ...}`` or 503 ``{"status": "not ready", "failed": [...]}``."""
    checks = check_database(ctx)
    checks.append(check_broker(_celery_or_none(request)))
    failed = [c.name for c in checks if not c.ok]
    body = {
        "status": "not ready" if failed else "ready",
        "failed": failed,
        "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
    }
    return JSONResponse(body, status_code=503 if failed else 200)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, ctx: Ctx, _caller: ReleasedCaller) -> Response:
    """The Prometheus text format (see ``observability.metrics`` for what each metric means)."""
    return Response(render(ctx, _celery_or_none(request)), media_type=CONTENT_TYPE_LATEST)
